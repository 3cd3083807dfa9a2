//! The Supervisor client and the notifier against a fake Supervisor on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roamcore_victron::clock::Timings;
use roamcore_victron::ha::notify::Notifier;
use roamcore_victron::status::BridgeStatus;
use roamcore_victron::supervisor::{Supervisor, SupervisorError};
use serde_json::json;

use crate::addon_fake::{Call, FakeServer, Reply};

fn mqtt_ok() -> Reply {
    Reply::json(
        200,
        json!({"result": "ok", "data": {"host": "127.0.0.1", "port": "18830", "ssl": false,
               "username": "addons", "password": "pw-from-supervisor", "protocol": "3.1.1",
               "addon": "core_mosquitto"}}),
    )
}

fn not_enabled() -> Reply {
    Reply::json(400, json!({"result": "error", "message": "Service not enabled"}))
}

#[tokio::test(flavor = "current_thread")]
async fn mqtt_service_distinguishes_not_ready() {
    let fake = FakeServer::start(Arc::new(|_: &Call| not_enabled()), None);
    let supervisor = Supervisor::new(&fake.url(), "token-1");

    let err = supervisor.mqtt_service().await.unwrap_err();
    assert!(matches!(err, SupervisorError::MqttNotReady), "{err:?}");

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].line(), "GET /services/mqtt");
    assert_eq!(calls[0].authorization.as_deref(), Some("Bearer token-1"));
}

#[tokio::test(flavor = "current_thread")]
async fn mqtt_service_forbidden_is_not_not_ready() {
    let reply = || Reply::json(403, json!({"result": "error", "message": "No access"}));
    let fake = FakeServer::start(Arc::new(move |_: &Call| reply()), None);
    let supervisor = Supervisor::new(&fake.url(), "token-1");

    let err = supervisor.mqtt_service().await.unwrap_err();
    assert!(matches!(err, SupervisorError::Forbidden { status: 403, .. }), "{err:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn wait_mqtt_service_retries_while_400() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let fake = FakeServer::start(
        Arc::new(move |_: &Call| {
            if counter.fetch_add(1, Ordering::SeqCst) < 3 {
                not_enabled()
            } else {
                mqtt_ok()
            }
        }),
        None,
    );
    let supervisor = Supervisor::new(&fake.url(), "token-1");
    let timings = Timings::scaled(20.0);

    let started = Instant::now();
    let service = tokio::time::timeout(Duration::from_secs(10), supervisor.wait_mqtt_service(&timings))
        .await
        .expect("wait_mqtt_service did not return within 10 s");

    assert_eq!(attempts.load(Ordering::SeqCst), 4, "three 400 answers, then success");
    assert_eq!(service.port, 18830, "port given as a string");
    assert_eq!(service.password.as_deref(), Some("pw-from-supervisor"));
    // Three backoff delays of at least 0.8 x (50, 100, 200) ms at time scale 20.
    assert!(started.elapsed() >= Duration::from_millis(280), "{:?}", started.elapsed());
}

/// A fake Core proxy whose first `fail_first` notification calls answer 502, as while
/// Home Assistant Core is still starting.
fn core_proxy(fail_first: usize) -> FakeServer {
    let seen = Arc::new(AtomicUsize::new(0));
    FakeServer::start(
        Arc::new(move |call: &Call| {
            if !call.path.starts_with("/core/api/services/persistent_notification/") {
                return Reply::json(404, json!({"message": "not found"}));
            }
            if seen.fetch_add(1, Ordering::SeqCst) < fail_first {
                return Reply { status: 502, body: "Bad Gateway".into() };
            }
            Reply::json(200, json!([]))
        }),
        None,
    )
}

async fn wait_for_calls(fake: &FakeServer, count: usize) -> Vec<Call> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let calls = fake.calls();
        if calls.len() >= count || Instant::now() > deadline {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn body(call: &Call) -> serde_json::Value {
    serde_json::from_str(&call.body).expect("notification body is JSON")
}

#[tokio::test(flavor = "current_thread")]
async fn notifier_creates_then_dismisses() {
    let fake = core_proxy(0);
    let notifier = Notifier::spawn(
        Some(Supervisor::new(&fake.url(), "token-2")),
        (Duration::from_millis(20), Duration::from_millis(100)),
    );

    notifier.status_changed(BridgeStatus::Searching, "");
    notifier.status_changed(BridgeStatus::MqttDisabled, "192.0.2.10, portal c0619ab0d0e1");
    let calls = wait_for_calls(&fake, 1).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].line(), "POST /core/api/services/persistent_notification/create");
    assert_eq!(calls[0].authorization.as_deref(), Some("Bearer token-2"));
    let create = body(&calls[0]);
    assert_eq!(create["notification_id"], "roamcore_victron_mqtt_disabled");
    assert!(create["message"].as_str().unwrap().contains("MQTT Access"));
    assert!(create["message"].as_str().unwrap().contains("192.0.2.10"));

    // The same status again changes nothing.
    notifier.status_changed(BridgeStatus::MqttDisabled, "192.0.2.10, portal c0619ab0d0e1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.calls().len(), 1);

    notifier.status_changed(BridgeStatus::Connected, "");
    let calls = wait_for_calls(&fake, 2).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1].line(), "POST /core/api/services/persistent_notification/dismiss");
    assert_eq!(body(&calls[1])["notification_id"], "roamcore_victron_mqtt_disabled");
}

#[tokio::test(flavor = "current_thread")]
async fn notifier_retries_until_core_answers() {
    let fake = core_proxy(2);
    let notifier = Notifier::spawn(
        Some(Supervisor::new(&fake.url(), "token-3")),
        (Duration::from_millis(20), Duration::from_millis(100)),
    );

    notifier.status_changed(BridgeStatus::AuthRequired, "192.0.2.10");
    let calls = wait_for_calls(&fake, 3).await;
    assert_eq!(calls.len(), 3, "two 502 answers, then success: {calls:?}");
    for call in &calls {
        assert_eq!(body(call)["notification_id"], "roamcore_victron_auth_required");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.calls().len(), 3, "no calls after the success");
}

#[tokio::test(flavor = "current_thread")]
async fn notifier_coalesces_a_burst() {
    let fake = core_proxy(0);
    let notifier = Notifier::spawn(
        Some(Supervisor::new(&fake.url(), "token-4")),
        (Duration::from_millis(20), Duration::from_millis(100)),
    );

    // All of these happen before the worker task runs, so only the last one counts.
    notifier.status_changed(BridgeStatus::MqttDisabled, "a");
    notifier.status_changed(BridgeStatus::AuthRequired, "b");
    notifier.status_changed(BridgeStatus::MultipleGx, "c0619ab0d0e1, c0619ab0d0e2");
    let calls = wait_for_calls(&fake, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let calls = if fake.calls().len() > calls.len() { fake.calls() } else { calls };
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(body(&calls[0])["notification_id"], "roamcore_victron_multiple_gx");

    notifier.refresh();
    let calls = wait_for_calls(&fake, 2).await;
    assert_eq!(calls.len(), 2, "refresh sends the notice again: {calls:?}");
    assert_eq!(body(&calls[1])["notification_id"], "roamcore_victron_multiple_gx");
}
