//! A GX the daemon finds but cannot use: MQTT access off, or a password required. The
//! user reads the fix in the bridge status and, under a Supervisor, in a persistent
//! notification.

use std::time::{Duration, Instant};

use crate::addon_fake::{Call, FakeServer};
use crate::daemon::{fake_supervisor, service_calls, Site, GX, STATUS, TOKEN};
use crate::gx::{self, GX_A};

/// Time scale 1. MQTT access off: SSDP announces `X_MqttOnLan=0`, and 1883 and 8883
/// are closed. Then the owner switches MQTT on, and the notification is dismissed.
#[test]
fn daemon_mqtt_disabled_notifies() {
    skip_unless_lan!();
    const TIME_SCALE: f64 = 1.0;
    let mut site = Site::new(87);
    let gx_host = site.lan.host("gx", 20);
    let dir = site.dir.path().to_path_buf();
    let presence = gx::sim_lan(
        &mut site.lan,
        &gx_host,
        GX_A,
        &["--mqtt-on-lan", "0", "--web", "login"],
    );
    let supervisor = fake_supervisor(&site.host.ns);
    let url = supervisor.url();
    let env = [
        ("SUPERVISOR_TOKEN", TOKEN),
        ("SUPERVISOR_URL", url.as_str()),
    ];

    let daemon = site.start_daemon(TIME_SCALE, &[], &env);
    let status = site
        .watcher
        .wait(daemon.started, Duration::from_secs(30), STATUS, |p| {
            p == "mqtt_disabled"
        });
    let Some(status) = status else {
        panic!(
            "no mqtt_disabled:\n{}\n{}",
            site.watcher.dump(),
            daemon.log_tail()
        );
    };
    let status_after = status.at.duration_since(daemon.started);
    site.watcher.collect(Duration::from_secs(1));
    let attributes = site.watcher.attributes();
    let detail = attributes["detail"].as_str().unwrap();
    assert!(detail.contains(&gx_host.addr.to_string()), "{detail}");
    assert!(detail.contains("Settings -> Integrations"), "{detail}");
    assert!(detail.contains("MQTT Access"), "{detail}");

    let deadline = daemon.started + Duration::from_secs(30);
    let created = wait_calls(&supervisor, "persistent_notification/create", deadline);
    let Some((call, body)) = created.first().cloned() else {
        panic!(
            "no notification:\n{:?}\n{}",
            supervisor.calls(),
            daemon.log_tail()
        );
    };
    let notified_after = daemon.started.elapsed();
    assert_eq!(
        call.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(body["notification_id"], "roamcore_victron_mqtt_disabled");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("MQTT Access"), "{message}");
    assert!(message.contains(&gx_host.addr.to_string()), "{message}");
    assert!(
        notified_after < Duration::from_secs(30),
        "notification after {notified_after:?}"
    );

    // The owner switches MQTT access on: a broker with values, and SSDP announces it.
    site.lan.stop(presence);
    gx::broker(&mut site.lan, &gx_host, &dir, None);
    gx::simulator(&mut site.lan, &gx_host, &dir, GX_A, None, TIME_SCALE);
    gx::sim_lan(&mut site.lan, &gx_host, GX_A, &["--web", "login"]);
    let switched_on = Instant::now();
    let soc = site.wait_soc(switched_on, Duration::from_secs(60));
    let Some(soc) = soc else {
        panic!(
            "not bridged after MQTT was switched on:\n{}\n{}",
            site.watcher.dump(),
            daemon.log_tail()
        );
    };
    let bridged_after = soc.at.duration_since(switched_on);
    // The restarted SSDP server's description has X_MqttOnLan=1, so the GX is checked at
    // once, not at the next 30 s recheck.
    assert!(
        bridged_after < Duration::from_secs(20),
        "bridged {bridged_after:?} after MQTT was switched on"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    // The notices of the other problems are dismissed too, in case an earlier run left
    // one; look for this one's.
    let dismissed = loop {
        let calls = service_calls(&supervisor, "persistent_notification/dismiss");
        let ours = calls.into_iter().find(|(_, body)| body["notification_id"] == "roamcore_victron_mqtt_disabled");
        if ours.is_some() || Instant::now() >= deadline {
            break ours;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        dismissed.is_some(),
        "the notification was not dismissed:\n{:?}",
        supervisor.calls()
    );
    let online = site
        .watcher
        .wait(switched_on, Duration::from_secs(20), GX, |p| p == "online");
    assert!(
        online.is_some(),
        "{}\n{}",
        site.watcher.dump(),
        daemon.log_tail()
    );

    let peak = site.assert_scan_limits();
    eprintln!(
        "daemon mqtt_disabled: status after {:.1} s, notification after {:.1} s; bridged {:.1} s \
         after MQTT was switched on; scan peak {peak} packets/s",
        status_after.as_secs_f64(),
        notified_after.as_secs_f64(),
        bridged_after.as_secs_f64()
    );
}

/// Time scale 1, so the minute between logins is real. The GX's broker requires a
/// password; the daemon has none for 125 s, then gets it after a restart.
#[test]
fn daemon_auth_required_one_login_per_minute() {
    skip_unless_lan!();
    const TIME_SCALE: f64 = 1.0;
    let mut site = Site::new(88);
    let gx_host = site.lan.host("gx", 20);
    let dir = site.dir.path().to_path_buf();
    let flags = ["--web", "login", "--notify-interval", "5"];
    gx::live_gx(
        &mut site.lan,
        &gx_host,
        &dir,
        GX_A,
        Some("secret"),
        TIME_SCALE,
        &flags,
    );
    let supervisor = fake_supervisor(&site.host.ns);
    let url = supervisor.url();
    let env = [
        ("SUPERVISOR_TOKEN", TOKEN),
        ("SUPERVISOR_URL", url.as_str()),
    ];

    let daemon = site.start_daemon(TIME_SCALE, &[], &env);
    let status = site
        .watcher
        .wait(daemon.started, Duration::from_secs(30), STATUS, |p| {
            p == "auth_required"
        });
    let Some(status) = status else {
        panic!(
            "no auth_required:\n{}\n{}",
            site.watcher.dump(),
            daemon.log_tail()
        );
    };
    let status_after = status.at.duration_since(daemon.started);
    site.watcher.collect(Duration::from_secs(1));
    let detail = site.watcher.attributes()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("password"), "{detail}");
    assert!(detail.contains("gx_password"), "{detail}");
    let deadline = daemon.started + Duration::from_secs(30);
    let created = wait_calls(&supervisor, "persistent_notification/create", deadline);
    let Some((_, body)) = created.first().cloned() else {
        panic!(
            "no notification:\n{:?}\n{}",
            supervisor.calls(),
            daemon.log_tail()
        );
    };
    assert_eq!(body["notification_id"], "roamcore_victron_auth_required");

    let watched = Duration::from_secs(125);
    site.watcher
        .collect(watched.saturating_sub(daemon.started.elapsed()));
    let statuses = site.watcher.between(STATUS, status.at, Instant::now());
    assert!(
        statuses.iter().all(|m| m.payload == "auth_required"),
        "{}",
        site.watcher.dump()
    );
    site.lan.terminate(daemon.index);

    // Mosquitto logs each rejected CONNECT as "Sending CONNACK to <client> (0, 5)" (or
    // 4), with the unix time first. The simulator's own login is accepted.
    let log = std::fs::read_to_string(gx::log_path(&dir, &gx_host)).unwrap();
    let rejected: Vec<u64> = log
        .lines()
        .filter(|l| {
            l.contains("Sending CONNACK") && (l.ends_with("(0, 5)") || l.ends_with("(0, 4)"))
        })
        .map(|l| l.split(':').next().unwrap().trim().parse().unwrap())
        .collect();
    assert!(!rejected.is_empty(), "no login attempt seen:\n{log}");
    assert!(
        rejected.len() <= 3,
        "{} logins in 125 s: {rejected:?}",
        rejected.len()
    );
    for pair in rejected.windows(2) {
        assert!(
            pair[1] - pair[0] >= 59,
            "logins {} s apart: {rejected:?}",
            pair[1] - pair[0]
        );
    }
    assert!(
        !site.data().join("discovery.json").exists(),
        "nothing adopted without a login"
    );

    // With the password, the same GX is bridged.
    let with_password = site.start_daemon(TIME_SCALE, &["--gx-password", "secret"], &[]);
    let soc = site.wait_soc(with_password.started, Duration::from_secs(30));
    let Some(soc) = soc else {
        panic!(
            "not bridged with the password:\n{}\n{}",
            site.watcher.dump(),
            with_password.log_tail()
        );
    };
    let bridged_after = soc.at.duration_since(with_password.started);
    let online = site
        .watcher
        .wait(with_password.started, Duration::from_secs(20), GX, |p| {
            p == "online"
        });
    assert!(
        online.is_some(),
        "{}\n{}",
        site.watcher.dump(),
        with_password.log_tail()
    );
    assert_eq!(site.watcher.attributes()["portal_id"], GX_A);

    let peak = site.assert_scan_limits();
    let gaps: Vec<u64> = rejected.windows(2).map(|p| p[1] - p[0]).collect();
    eprintln!(
        "daemon auth_required: status after {:.1} s, {} rejected logins in 125 s {gaps:?} s apart; \
         with the password, first entity after {:.1} s; scan peak {peak} packets/s",
        status_after.as_secs_f64(),
        rejected.len(),
        bridged_after.as_secs_f64()
    );
}

/// Waits until the fake Supervisor has recorded a call of `service`, or `deadline`.
fn wait_calls(
    supervisor: &FakeServer,
    service: &str,
    deadline: Instant,
) -> Vec<(Call, serde_json::Value)> {
    loop {
        let calls = service_calls(supervisor, service);
        if !calls.is_empty() || Instant::now() >= deadline {
            return calls;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
