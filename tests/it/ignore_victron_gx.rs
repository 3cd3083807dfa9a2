//! The daemon ignores Home Assistant's own `victron_gx` discovery of the GX it bridges,
//! through a fake Core WebSocket API behind a fake Supervisor, with the simulated GX on
//! a real Mosquitto. Timers run 10 times faster (`--time-scale 10`): follow-up sweeps
//! 0, 6 and 18 s after a trigger, retries from 1 s, a 1.5 s step timeout.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roamcore_victron::sim::capture::Capture;
use roamcore_victron::sim::{SimConfig, SimHandle, Simulator};
use rumqttc::QoS;
use serde_json::{json, Value};

use crate::addon_fake::{Call, FakeServer, Reply};
use crate::support::daemon::Daemon;
use crate::support::mosquitto::Mosquitto;
use crate::support::observer::Observer;

const TOKEN: &str = "addon-token-ws-42";
const PORTAL: &str = "c0619ab0d0e1";
const OTHER_PORTAL: &str = "48e7da7f0a11";
const SCALE: &str = "10";
const DISCOVERY_TOPIC: &str = "homeassistant/device/roamcore_victron/config";
const IGNORED_LOG: &str = "ignored Home Assistant's victron_gx discovery of this GX";
const FAILED_LOG: &str = "cannot check Home Assistant for a duplicate victron_gx discovery";

/// How one WebSocket session of the fake Core behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Healthy,
    /// The Supervisor returns HTTP 502 for the upgrade, as it does while Core is down.
    Refused,
    /// Upgrades, then never sends `auth_required`.
    Silent,
    /// Rejects the login, as for an add-on without `homeassistant_api`.
    AuthInvalid,
    /// Sends a text message that is not JSON.
    Garbage,
    /// Returns `success: false` for the flow listing.
    CommandFails,
}

/// State of the fake Core.
#[derive(Debug)]
struct Core {
    /// Flows in progress, as `config_entries/flow/progress` lists them.
    flows: Vec<Value>,
    /// Ignored flows: (flow_id, unique_id, title).
    ignored: Vec<(String, String, String)>,
    /// Behaviour of the coming sessions in order, and `Healthy` once the queue is empty.
    coming: VecDeque<Behaviour>,
    current: Behaviour,
    /// When a `Silent` session sent its (missing) greeting.
    silent_since: Option<Instant>,
}

fn discovered_flow(flow_id: &str, handler: &str, source: &str, unique_id: &str) -> Value {
    json!({
        "flow_id": flow_id, "handler": handler, "step_id": "confirm",
        "context": {"source": source, "unique_id": unique_id,
                    "title_placeholders": {"name": "Cerbo GX"}},
    })
}

fn handle_ws(core: &Mutex<Core>, text: &str) -> Vec<String> {
    let mut core = core.lock().unwrap();
    if text.is_empty() {
        return match core.current {
            Behaviour::Silent => {
                core.silent_since = Some(Instant::now());
                vec![]
            }
            Behaviour::Garbage => vec!["<html>502 Bad Gateway</html>".into()],
            _ => vec![json!({"type": "auth_required", "ha_version": "2026.11.0"}).to_string()],
        };
    }
    let message: Value = serde_json::from_str(text).expect("the daemon sends JSON");
    let id = message["id"].clone();
    let failure = |code: &str, text: &str| {
        json!({"id": id, "type": "result", "success": false,
               "error": {"code": code, "message": text}})
    };
    let reply = match message["type"].as_str().unwrap_or("") {
        "auth" if core.current == Behaviour::AuthInvalid || message["access_token"] != TOKEN => {
            json!({"type": "auth_invalid", "message": "Invalid access"})
        }
        "auth" => json!({"type": "auth_ok", "ha_version": "2026.11.0"}),
        "config_entries/flow/progress" if core.current == Behaviour::CommandFails => {
            failure("unauthorized", "Unauthorized")
        }
        "config_entries/flow/progress" => {
            json!({"id": id, "type": "result", "success": true, "result": core.flows})
        }
        "config_entries/ignore_flow" => {
            let (Some(flow_id), Some(title)) =
                (message["flow_id"].as_str(), message["title"].as_str())
            else {
                return vec![
                    failure("invalid_format", "flow_id and title are required").to_string()
                ];
            };
            match core
                .flows
                .iter()
                .position(|flow| flow["flow_id"] == flow_id)
            {
                Some(index) => {
                    let flow = core.flows.remove(index);
                    let unique_id = flow["context"]["unique_id"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    core.ignored
                        .push((flow_id.to_string(), unique_id, title.to_string()));
                    json!({"id": id, "type": "result", "success": true, "result": null})
                }
                None => failure("not_found", "Config entry not found"),
            }
        }
        other => failure("unknown_command", other),
    };
    vec![reply.to_string()]
}

/// Starts the fake Supervisor. WebSocket sessions play `coming` in order, and
/// notification calls get HTTP 200.
fn start_core(flows: Vec<Value>, coming: &[Behaviour]) -> (FakeServer, Arc<Mutex<Core>>) {
    let core = Arc::new(Mutex::new(Core {
        flows,
        ignored: Vec::new(),
        coming: coming.iter().copied().collect(),
        current: Behaviour::Healthy,
        silent_since: None,
    }));
    let (for_ws, for_check) = (core.clone(), core.clone());
    let server = FakeServer::start_checked(
        Arc::new(|call: &Call| match call.path.as_str() {
            "/core/websocket" => Reply {
                status: 502,
                body: "502: Bad Gateway".into(),
            },
            _ => Reply::json(200, json!([])),
        }),
        Some(Arc::new(move |text: &str| handle_ws(&for_ws, text))),
        Some(Arc::new(move |_call: &Call| {
            let mut core = for_check.lock().unwrap();
            core.current = core.coming.pop_front().unwrap_or(Behaviour::Healthy);
            core.current != Behaviour::Refused
        })),
    );
    (server, core)
}

struct Rig {
    _gx: Mosquitto,
    _ha: Mosquitto,
    _data: tempfile::TempDir,
    _sim: SimHandle,
    daemon: Daemon,
    ha_side: Observer,
}

/// Starts the simulated GX and the daemon against `supervisor`. With `token` = `None`
/// the daemon runs without a Supervisor, though `SUPERVISOR_URL` still points at it.
/// Returns once the bridge reports `connected`.
async fn rig(supervisor: &FakeServer, token: Option<&str>) -> Rig {
    let gx = Mosquitto::start();
    let ha = Mosquitto::start();
    let data = tempfile::tempdir().unwrap();
    let options = data.path().join("options.json");
    std::fs::write(&options, "{}").unwrap();
    let ha_side = Observer::connect(ha.port, &[]).await;

    let mut config = SimConfig::new(gx.host_port(), Capture::load("boat").unwrap());
    config.portal_id = Some(PORTAL.into());
    config.time_scale = SCALE.parse().unwrap();
    config.reconnect_delay = Duration::from_millis(200);
    let sim = Simulator::spawn(config);
    assert!(
        sim.wait_connected(Duration::from_secs(10)).await,
        "simulated GX did not connect"
    );

    let (gx_address, ha_address) = (gx.host_port(), ha.host_port());
    let data_dir = data.path().to_str().unwrap().to_string();
    let url = supervisor.url();
    let options = options.to_str().unwrap().to_string();
    let mut env = vec![
        ("SUPERVISOR_URL", url.as_str()),
        ("ROAMCORE_OPTIONS", options.as_str()),
    ];
    if let Some(token) = token {
        env.push(("SUPERVISOR_TOKEN", token));
    }
    let args = [
        "run",
        "--gx",
        &gx_address,
        "--ha-broker",
        &ha_address,
        "--data-dir",
        &data_dir,
        "--time-scale",
        SCALE,
    ];
    let daemon = Daemon::start(&args, &env);
    let connected = ha_side
        .wait_for(
            "roamcore/victron/bridge_status/state",
            "connected",
            Duration::from_secs(20),
        )
        .await;
    assert!(connected, "bridge not connected:\n{}", daemon.log_text());
    Rig {
        _gx: gx,
        _ha: ha,
        _data: data,
        _sim: sim,
        daemon,
        ha_side,
    }
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
async fn wait(timeout: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

/// Returns the WebSocket commands of type `kind` that the fake received.
fn commands(server: &FakeServer, kind: &str) -> Vec<Value> {
    server
        .calls()
        .iter()
        .filter(|call| call.method == "WS")
        .filter_map(|call| serde_json::from_str::<Value>(&call.body).ok())
        .filter(|message| message["type"] == kind)
        .collect()
}

fn upgrade_attempts(server: &FakeServer) -> usize {
    server
        .calls()
        .iter()
        .filter(|c| c.method == "GET" && c.path == "/core/websocket")
        .count()
}

fn log_count(daemon: &Daemon, needle: &str) -> usize {
    daemon
        .lines()
        .iter()
        .filter(|line| line.contains(needle))
        .count()
}

async fn publish_birth(observer: &Observer) {
    observer
        .client
        .publish("homeassistant/status", QoS::AtLeastOnce, false, "online")
        .await
        .unwrap();
}

#[tokio::test]
async fn ignores_own_gx_discovery_once() {
    let flows = vec![
        discovered_flow("flow-victron-1", "victron_gx", "ssdp", PORTAL),
        discovered_flow("flow-mqtt-1", "mqtt", "hassio", "core_mosquitto"),
        discovered_flow("flow-victron-other", "victron_gx", "ssdp", OTHER_PORTAL),
    ];
    let (server, core) = start_core(flows, &[]);
    let rig = rig(&server, Some(TOKEN)).await;

    let ignored = wait(Duration::from_secs(20), || {
        !core.lock().unwrap().ignored.is_empty()
    })
    .await;
    assert!(
        ignored,
        "our flow was not ignored:\n{}",
        rig.daemon.log_text()
    );
    // The follow-up sweep 6 s after the trigger lists again and must not ignore twice.
    let listed_twice = wait(Duration::from_secs(15), || {
        commands(&server, "config_entries/flow/progress").len() >= 2
    })
    .await;
    assert!(
        listed_twice,
        "no follow-up sweep:\n{}",
        rig.daemon.log_text()
    );

    let ignores = commands(&server, "config_entries/ignore_flow");
    assert_eq!(ignores.len(), 1, "{ignores:?}");
    assert_eq!(ignores[0]["flow_id"], "flow-victron-1");
    let title = ignores[0]["title"].as_str().unwrap();
    assert!(
        title.contains(PORTAL),
        "title without the portal id: {title}"
    );
    {
        let core = core.lock().unwrap();
        assert_eq!(core.ignored[0].1, PORTAL);
        let left: Vec<&str> = core
            .flows
            .iter()
            .map(|f| f["flow_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            left,
            ["flow-mqtt-1", "flow-victron-other"],
            "other flows must stay"
        );
    }
    let auth = commands(&server, "auth");
    assert!(
        auth.iter().all(|m| m["access_token"] == TOKEN),
        "login without the add-on token"
    );
    assert_eq!(
        log_count(&rig.daemon, IGNORED_LOG),
        1,
        "{}",
        rig.daemon.log_text()
    );
    assert_eq!(
        log_count(&rig.daemon, "discovery of another GX alone"),
        1,
        "{}",
        rig.daemon.log_text()
    );
    assert!(
        !rig.daemon.log_text().contains(TOKEN),
        "the token leaked into the log"
    );

    // Core restarts and offers the GX again (say the owner removed the ignored entry):
    // its birth message triggers a sweep at once, long before the next planned one.
    core.lock().unwrap().flows.push(discovered_flow(
        "flow-victron-2",
        "victron_gx",
        "ssdp",
        PORTAL,
    ));
    publish_birth(&rig.ha_side).await;
    let again = wait(Duration::from_secs(4), || {
        core.lock().unwrap().ignored.len() >= 2
    })
    .await;
    assert!(
        again,
        "the birth message did not trigger a sweep:\n{}",
        rig.daemon.log_text()
    );
    let ignores = commands(&server, "config_entries/ignore_flow");
    assert_eq!(ignores.len(), 2, "{ignores:?}");
    assert_eq!(ignores[1]["flow_id"], "flow-victron-2");
    assert_eq!(log_count(&rig.daemon, IGNORED_LOG), 2);
    assert_eq!(
        log_count(&rig.daemon, "discovery of another GX alone"),
        1,
        "logged once per flow"
    );
}

#[tokio::test]
async fn without_supervisor_calls_nothing() {
    let flows = vec![discovered_flow(
        "flow-victron-1",
        "victron_gx",
        "ssdp",
        PORTAL,
    )];
    let (server, core) = start_core(flows, &[]);
    let rig = rig(&server, None).await;

    publish_birth(&rig.ha_side).await;
    // Longer than the first two sweeps of a supervised run (0 and 6 s at this scale).
    tokio::time::sleep(Duration::from_secs(7)).await;

    assert_eq!(
        server.calls().len(),
        0,
        "calls without a Supervisor: {:?}",
        server.calls()
    );
    assert!(core.lock().unwrap().ignored.is_empty());
    assert_eq!(
        log_count(&rig.daemon, "victron_gx"),
        0,
        "{}",
        rig.daemon.log_text()
    );
}

#[tokio::test]
async fn survives_broken_core_and_retries() {
    use Behaviour::*;
    let flows = vec![discovered_flow(
        "flow-victron-1",
        "victron_gx",
        "ssdp",
        PORTAL,
    )];
    let (server, core) = start_core(
        flows,
        &[Refused, Silent, AuthInvalid, Garbage, CommandFails],
    );
    let rig = rig(&server, Some(TOKEN)).await;

    // While a session hangs, the engine still handles Home Assistant's birth message.
    let silent = wait(Duration::from_secs(15), || {
        core.lock().unwrap().silent_since.is_some()
    })
    .await;
    assert!(silent, "no silent session:\n{}", rig.daemon.log_text());
    let since = core.lock().unwrap().silent_since.unwrap();
    let before = rig.ha_side.count(DISCOVERY_TOPIC);
    publish_birth(&rig.ha_side).await;
    let republished = wait(Duration::from_secs(3), || {
        rig.ha_side.count(DISCOVERY_TOPIC) > before
    })
    .await;
    assert!(
        republished,
        "no republish after the birth message:\n{}",
        rig.daemon.log_text()
    );
    let reacted_after = since.elapsed();
    assert!(
        reacted_after < Duration::from_millis(1400),
        "republish came {reacted_after:?} after the session started hanging; the login \
         timeout is 1.5 s, so the engine may have waited for it"
    );

    let ignored = wait(Duration::from_secs(40), || {
        !core.lock().unwrap().ignored.is_empty()
    })
    .await;
    assert!(ignored, "never recovered:\n{}", rig.daemon.log_text());
    assert!(
        upgrade_attempts(&server) >= 6,
        "{} upgrade attempts",
        upgrade_attempts(&server)
    );
    assert_eq!(commands(&server, "config_entries/ignore_flow").len(), 1);
    assert!(
        core.lock().unwrap().coming.is_empty(),
        "not every broken session was played"
    );

    let log = rig.daemon.log_text();
    assert_eq!(
        log_count(&rig.daemon, FAILED_LOG),
        1,
        "failures must be rate-limited:\n{log}"
    );
    assert!(
        log.contains("502"),
        "the first failure names the HTTP status:\n{log}"
    );
    assert!(
        log.contains("Home Assistant's config flows can be read again"),
        "{log}"
    );
    assert_eq!(log_count(&rig.daemon, IGNORED_LOG), 1);
    let connected = rig
        .ha_side
        .wait_for(
            "roamcore/victron/bridge_status/state",
            "connected",
            Duration::from_secs(5),
        )
        .await;
    assert!(connected, "the bridge lost the GX:\n{log}");
}
