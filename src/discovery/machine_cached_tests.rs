//! Unit tests of the adopted GX's last known address: tries with backoff while the GX
//! is away, with scanning on or off, a status that stays put while the GX link is down,
//! and waits divided by the time scale.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::adoption::Adoption;
use super::candidate::{Candidate, Method, Outcome};
use super::machine::{Action, Machine, MachineConfig, Phase};
use super::machine_tests::{config, gx, ip, statuses, used, validate_next, GX_A};
use super::{DiscoveryEvent, LinkReport};
use crate::status::BridgeStatus;

fn adopted_at(host: IpAddr) -> Adoption {
    Adoption {
        portal_id: GX_A.into(),
        host,
        port: 1883,
        tls: false,
        model: None,
        firmware: None,
    }
}

/// Ticks the machine once a second over `seconds` (counted from `t0`) and ends every
/// validation with `outcome`. Returns the seconds at which a validation started and every
/// status emitted.
fn run_tries(
    machine: &mut Machine,
    t0: Instant,
    seconds: std::ops::Range<u64>,
    outcome: &Outcome,
) -> (Vec<u64>, Vec<BridgeStatus>) {
    let mut tries = Vec::new();
    let mut emitted = Vec::new();
    for s in seconds {
        let now = t0 + Duration::from_secs(s);
        emitted.extend(statuses(&machine.on_tick(now)));
        let (candidate, actions) = machine.next_validation(now);
        emitted.extend(statuses(&actions));
        if let Some(candidate) = candidate {
            tries.push(s);
            emitted.extend(statuses(&machine.on_outcome(
                &candidate,
                outcome.clone(),
                now,
            )));
        }
    }
    (tries, emitted)
}

#[test]
fn scan_off_adopted_address_retried() {
    let t0 = Instant::now();
    let config = MachineConfig {
        scan: false,
        ..config()
    };
    let (mut machine, actions) = Machine::new(config, Some(adopted_at(ip(20))), None, t0);
    assert_eq!(statuses(&actions), vec![BridgeStatus::Searching]);

    // Nothing listens yet: the GX is still off.
    let (host, actions) = validate_next(&mut machine, Outcome::PortsClosed, t0);
    assert_eq!(host, ip(20));
    assert_eq!(
        statuses(&actions),
        vec![BridgeStatus::Validating, BridgeStatus::Searching]
    );

    let (tries, emitted) = run_tries(&mut machine, t0, 1..300, &Outcome::PortsClosed);
    assert!(tries.len() >= 8, "tries at {tries:?}");
    let gaps: Vec<u64> = tries.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g <= 31),
        "at most 30 s apart: {gaps:?}"
    );
    assert!(gaps.windows(2).all(|w| w[1] >= w[0]), "gaps grow: {gaps:?}");
    assert!(emitted.is_empty(), "a retry changes no status: {emitted:?}");

    // The GX is up: the next try adopts it again.
    let (tries, _) = run_tries(&mut machine, t0, 300..340, &gx(GX_A));
    assert_eq!(tries.len(), 1, "{tries:?}");
    assert!(matches!(machine.phase(), Phase::Connecting(e) if e.host == ip(20)));
}

#[test]
fn adopted_broker_without_serial_retried() {
    let t0 = Instant::now();
    let config = MachineConfig {
        scan: false,
        ..config()
    };
    let (mut machine, _) = Machine::new(config, Some(adopted_at(ip(20))), None, t0);

    // The GX's broker runs, but dbus-flashmq has not published the Serial yet.
    let (_, actions) = validate_next(&mut machine, Outcome::NotGx { port: 1883 }, t0);
    assert_eq!(used(&actions), None);
    assert_eq!(machine.phase(), &Phase::Searching);

    let (tries, _) = run_tries(&mut machine, t0, 1..20, &Outcome::NotGx { port: 1883 });
    assert!(tries.len() >= 3, "tried again at {tries:?}");
    let now = t0 + Duration::from_secs(40);
    machine.on_tick(now);
    let (_, actions) = validate_next(&mut machine, gx(GX_A), now);
    assert_eq!(used(&actions).as_deref(), Some(GX_A));
}

#[test]
fn other_broker_wait_follows_time_scale() {
    let t0 = Instant::now();
    let config = MachineConfig {
        time_scale: 10.0,
        ..config()
    };
    let (mut machine, _) = Machine::new(config, None, None, t0);
    machine.on_candidate(Candidate::new(ip(5), Method::Sweep), t0);
    validate_next(&mut machine, Outcome::NotGx { port: 1883 }, t0);

    // 1800 s in production, 180 s at time scale 10.
    let before = t0 + Duration::from_secs(170);
    machine.on_candidate(Candidate::new(ip(5), Method::Sweep), before);
    assert!(machine.next_validation(before).0.is_none());
    let after = t0 + Duration::from_secs(181);
    machine.on_candidate(Candidate::new(ip(5), Method::Sweep), after);
    assert_eq!(
        machine.next_validation(after).0.map(|c| c.host),
        Some(ip(5))
    );
}

/// Validates the adopted address at `t0` and reports the link connected.
fn connected(config: MachineConfig, t0: Instant) -> Machine {
    let (mut machine, _) = Machine::new(config, Some(adopted_at(ip(20))), None, t0);
    let (_, actions) = validate_next(&mut machine, gx(GX_A), t0);
    let endpoint = actions
        .iter()
        .find_map(|a| match a {
            Action::Emit(DiscoveryEvent::Use(e)) => Some(e.clone()),
            _ => None,
        })
        .expect("the adopted GX is used");
    machine.on_link(LinkReport::Connected(endpoint), t0);
    machine
}

#[test]
fn link_loss_keeps_auth_required() {
    let t0 = Instant::now();
    let mut machine = connected(
        MachineConfig {
            scan: false,
            ..config()
        },
        t0,
    );

    // The owner sets a password on the GX: the link's login is rejected.
    let t1 = t0 + Duration::from_secs(100);
    let actions = machine.on_link(LinkReport::AuthFailed, t1);
    assert_eq!(statuses(&actions), vec![BridgeStatus::AuthRequired]);

    // The engine also reports the link lost; the hold and its status stay.
    let actions = machine.on_link(LinkReport::Lost, t1 + Duration::from_secs(30));
    assert!(statuses(&actions).is_empty(), "{actions:?}");
    assert_eq!(machine.phase(), &Phase::AuthRequired(ip(20)));

    // The check a minute later still carries the adopted GX's portal id.
    let now = t1 + Duration::from_secs(61);
    machine.on_tick(now);
    let (candidate, actions) = machine.next_validation(now);
    assert!(statuses(&actions).is_empty(), "{actions:?}");
    let candidate = candidate.expect("the held address is checked again");
    assert_eq!(candidate.portal_hint.as_deref(), Some(GX_A));
    let rejected = Outcome::LoginRejected {
        port: 1883,
        tls: false,
    };
    let actions = machine.on_outcome(&candidate, rejected, now);
    assert!(statuses(&actions).is_empty(), "{actions:?}");
    assert_eq!(machine.phase(), &Phase::AuthRequired(ip(20)));
}

#[test]
fn link_loss_status_stays_searching() {
    let t0 = Instant::now();
    let mut machine = connected(
        MachineConfig {
            scan: false,
            ..config()
        },
        t0,
    );

    let t1 = t0 + Duration::from_secs(100);
    let actions = machine.on_link(LinkReport::Lost, t1);
    assert_eq!(statuses(&actions), vec![BridgeStatus::Searching]);

    // Every try of the last address, the first one included, keeps `searching`.
    let seconds = 100..400;
    let (tries, emitted) = run_tries(&mut machine, t0, seconds, &Outcome::Unreachable);
    assert!(tries.len() >= 8, "tries at {tries:?}");
    assert!(emitted.is_empty(), "{emitted:?}");
}

#[test]
fn adopted_address_with_gx_signs_mqtt_off() {
    let t0 = Instant::now();
    let mut machine = connected(
        MachineConfig {
            scan: false,
            ..config()
        },
        t0,
    );
    let t1 = t0 + Duration::from_secs(100);
    machine.on_link(LinkReport::Lost, t1);

    // MQTT ports closed, and the runner's probes found the GX's web page there.
    let (candidate, _) = machine.next_validation(t1);
    let mut candidate = candidate.expect("the last address is tried");
    assert_eq!(candidate.method, Method::Cached);
    candidate.evidence = Some("web page redirects to the GX GUI".into());
    let actions = machine.on_outcome(&candidate, Outcome::PortsClosed, t1);
    assert_eq!(statuses(&actions), vec![BridgeStatus::MqttDisabled]);
    assert_eq!(machine.phase(), &Phase::MqttDisabled(ip(20)));

    // Checks every 30 s keep the evidence (no new probes) and the status.
    let mut checks = 0;
    for s in 101..400 {
        let now = t0 + Duration::from_secs(s);
        assert!(statuses(&machine.on_tick(now)).is_empty());
        let (candidate, actions) = machine.next_validation(now);
        assert!(statuses(&actions).is_empty(), "{actions:?}");
        if let Some(candidate) = candidate {
            checks += 1;
            assert!(
                candidate.evidence.is_some(),
                "check at {s} s without evidence"
            );
            let actions = machine.on_outcome(&candidate, Outcome::PortsClosed, now);
            assert!(statuses(&actions).is_empty(), "{actions:?}");
        }
    }
    assert!((9..=11).contains(&checks), "{checks} checks in 300 s");

    // MQTT access is switched on again: the next check uses the GX.
    let (tries, _) = run_tries(&mut machine, t0, 400..440, &gx(GX_A));
    assert_eq!(tries.len(), 1, "{tries:?}");
    assert!(matches!(machine.phase(), Phase::Connecting(e) if e.host == ip(20)));
}
