//! `scripts/provision` against a fake Supervisor and Core API on 127.0.0.1 that keeps
//! state like the real ones: the first run must make every change in order, a second
//! run must make none.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::addon_fake::{Call, FakeServer, Reply};

const TOKEN: &str = "manager-token-0123";
const REPOSITORY_URL: &str = "https://github.com/roamcore/roamcore-victron";

#[derive(Debug, Clone)]
struct Addon {
    state: &'static str,
    boot: &'static str,
    auto_update: bool,
    watchdog: bool,
}

/// What the fake Supervisor and Core know.
#[derive(Debug, Default)]
struct World {
    installed: BTreeMap<String, Addon>,
    /// (slug, source) of every store repository.
    repositories: Vec<(String, String)>,
    /// Config entries: (domain, source).
    entries: Vec<(String, String)>,
    /// Flows in progress: (flow_id, handler, unique_id).
    flows: Vec<(String, String, String)>,
}

/// Computes the Supervisor's repository slug: the first 8 hex digits of SHA-1 over the URL.
fn repository_slug(url: &str) -> String {
    let digest =
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, url.to_lowercase().as_bytes());
    digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

fn our_slug() -> String {
    format!("{}_roamcore_victron", repository_slug(REPOSITORY_URL))
}

fn ok(data: Value) -> Reply {
    Reply::json(200, json!({"result": "ok", "data": data}))
}

fn error(status: u16, message: &str) -> Reply {
    Reply::json(status, json!({"result": "error", "message": message}))
}

fn handle_http(world: &Mutex<World>, call: &Call) -> Reply {
    if call.authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return error(401, "invalid token");
    }
    let mut world = world.lock().unwrap();
    let path = call.path.as_str();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();

    match (call.method.as_str(), segments.as_slice()) {
        ("GET", ["addons"]) => {
            let addons: Vec<Value> = world
                .installed
                .iter()
                .map(|(slug, addon)| json!({"slug": slug, "state": addon.state}))
                .collect();
            ok(json!({"addons": addons}))
        }
        ("GET", ["addons", slug, "info"]) => match world.installed.get(*slug) {
            Some(addon) => ok(json!({"slug": slug, "state": addon.state, "boot": addon.boot,
                                     "auto_update": addon.auto_update, "watchdog": addon.watchdog})),
            None => error(400, "App is not installed"),
        },
        ("POST", ["store", "addons", slug, "install"]) => {
            let in_store = *slug == "core_mosquitto"
                || (*slug == our_slug() && world.repositories.iter().any(|(_, s)| s == REPOSITORY_URL));
            if !in_store {
                return error(404, "App does not exist in the store");
            }
            let addon = Addon { state: "stopped", boot: "auto", auto_update: false, watchdog: false };
            world.installed.insert(slug.to_string(), addon);
            ok(json!({}))
        }
        ("POST", ["addons", slug, "start"]) => {
            let Some(addon) = world.installed.get_mut(*slug) else {
                return error(400, "App is not installed");
            };
            addon.state = "started";
            // Mosquitto announces the MQTT service; Core opens a discovered flow.
            if *slug == "core_mosquitto" && !world.entries.iter().any(|(d, _)| d == "mqtt") {
                world.flows.push(("flow-mqtt-1".into(), "mqtt".into(), "hassio".into()));
            }
            ok(json!({}))
        }
        ("POST", ["addons", slug, "options"]) => {
            let body: Value = serde_json::from_str(&call.body).unwrap();
            let Some(addon) = world.installed.get_mut(*slug) else {
                return error(400, "App is not installed");
            };
            if let Some(boot) = body.get("boot").and_then(Value::as_str) {
                addon.boot = if boot == "auto" { "auto" } else { "manual" };
            }
            if let Some(value) = body.get("auto_update").and_then(Value::as_bool) {
                addon.auto_update = value;
            }
            if let Some(value) = body.get("watchdog").and_then(Value::as_bool) {
                addon.watchdog = value;
            }
            ok(json!({}))
        }
        ("GET", ["store", "repositories"]) => {
            let list: Vec<Value> = world
                .repositories
                .iter()
                .map(|(slug, source)| json!({"slug": slug, "source": source, "name": slug}))
                .collect();
            ok(json!(list))
        }
        ("POST", ["store", "repositories"]) => {
            let body: Value = serde_json::from_str(&call.body).unwrap();
            let url = body["repository"].as_str().unwrap().to_string();
            world.repositories.push((repository_slug(&url), url));
            ok(json!({}))
        }
        ("GET", ["core", "api", "config", "config_entries", "entry?domain=mqtt"]) => {
            let entries: Vec<Value> = world
                .entries
                .iter()
                .filter(|(domain, _)| domain == "mqtt")
                .map(|(domain, source)| json!({"domain": domain, "source": source, "state": "loaded"}))
                .collect();
            Reply::json(200, json!(entries))
        }
        ("POST", ["core", "api", "config", "config_entries", "flow", flow_id]) => {
            let Some(index) = world.flows.iter().position(|(id, _, _)| id == flow_id) else {
                return Reply::json(404, json!({"message": "Invalid flow specified"}));
            };
            let (_, handler, _) = world.flows.remove(index);
            world.entries.push((handler.clone(), "hassio".into()));
            Reply::json(200, json!({"type": "create_entry", "handler": handler, "title": "Mosquitto broker"}))
        }
        _ => Reply::json(404, json!({"message": format!("no route for {} {}", call.method, path)})),
    }
}

fn handle_ws(world: &Mutex<World>, text: &str) -> Vec<String> {
    if text.is_empty() {
        return vec![json!({"type": "auth_required", "ha_version": "2026.11.0"}).to_string()];
    }
    let message: Value = serde_json::from_str(text).expect("client sends JSON");
    let mut world = world.lock().unwrap();
    let id = message["id"].clone();
    let reply = match message["type"].as_str().unwrap_or("") {
        "auth" if message["access_token"] == TOKEN => json!({"type": "auth_ok"}),
        "auth" => json!({"type": "auth_invalid", "message": "Invalid access token"}),
        "config_entries/flow/progress" => {
            let flows: Vec<Value> = world
                .flows
                .iter()
                .map(|(flow_id, handler, unique_id)| {
                    json!({"flow_id": flow_id, "handler": handler, "step_id": "confirm",
                           "context": {"source": "discovered", "unique_id": unique_id}})
                })
                .collect();
            json!({"id": id, "type": "result", "success": true, "result": flows})
        }
        "config_entries/ignore_flow" => {
            let flow_id = message["flow_id"].as_str().unwrap();
            match world.flows.iter().position(|(id, _, _)| id == flow_id) {
                Some(index) => {
                    let (_, handler, _) = world.flows.remove(index);
                    world.entries.push((handler, "ignore".into()));
                    json!({"id": id, "type": "result", "success": true, "result": null})
                }
                None => json!({"id": id, "type": "result", "success": false,
                               "error": {"code": "not_found", "message": "Config entry not found"}}),
            }
        }
        other => json!({"id": id, "type": "result", "success": false,
                        "error": {"code": "unknown_command", "message": other}}),
    };
    vec![reply.to_string()]
}

fn start_fake(world: Arc<Mutex<World>>) -> FakeServer {
    let http_world = world.clone();
    FakeServer::start(
        Arc::new(move |call: &Call| handle_http(&http_world, call)),
        Some(Arc::new(move |text: &str| handle_ws(&world, text))),
    )
}

struct Run {
    success: bool,
    stderr: String,
}

fn run_provision(fake: &FakeServer) -> Run {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/provision");
    let output = Command::new("bash")
        .arg(&script)
        .env("SUPERVISOR_TOKEN", TOKEN)
        .env("SUPERVISOR_URL", fake.url())
        .env("REPOSITORY_URL", REPOSITORY_URL)
        .env("MQTT_FLOW_WAIT", "10")
        .env_remove("CORE_API_URL")
        .env_remove("CORE_WS_URL")
        .env_remove("CORE_TOKEN")
        .output()
        .expect("run scripts/provision with bash");
    Run {
        success: output.status.success(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Selects the calls that change something: every POST, and WebSocket requests other than
/// the login and the flow listing.
fn changes(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|call| match call.method.as_str() {
            "POST" => Some(call.line()),
            "WS" => {
                let message: Value = serde_json::from_str(&call.body).ok()?;
                match message["type"].as_str()? {
                    "auth" | "config_entries/flow/progress" => None,
                    other => Some(format!("WS {other} {}", message["flow_id"].as_str().unwrap_or(""))),
                }
            }
            _ => None,
        })
        .collect()
}

fn fresh_box() -> World {
    World {
        repositories: vec![("core".into(), "core".into()), ("local".into(), "local".into())],
        // Home Assistant's own Victron integration has already found the GX by SSDP.
        flows: vec![("flow-victron-1".into(), "victron_gx".into(), "c0619ab0d0e1".into())],
        ..World::default()
    }
}

#[test]
fn provision_fresh_box_then_idempotent() {
    let world = Arc::new(Mutex::new(fresh_box()));
    let fake = start_fake(world.clone());
    let slug = our_slug();

    let first = run_provision(&fake);
    assert!(first.success, "first run failed:\n{}", first.stderr);
    assert_eq!(
        changes(&fake.calls()),
        vec![
            "POST /store/addons/core_mosquitto/install".to_string(),
            "POST /addons/core_mosquitto/start".to_string(),
            "POST /core/api/config/config_entries/flow/flow-mqtt-1".to_string(),
            "POST /store/repositories".to_string(),
            format!("POST /store/addons/{slug}/install"),
            format!("POST /addons/{slug}/options"),
            format!("POST /addons/{slug}/start"),
            "WS config_entries/ignore_flow flow-victron-1".to_string(),
        ],
        "stderr:\n{}",
        first.stderr
    );

    {
        let world = world.lock().unwrap();
        let ours = &world.installed[&slug];
        assert_eq!(ours.state, "started");
        assert_eq!(ours.boot, "auto");
        assert!(ours.auto_update);
        assert!(ours.watchdog);
        assert_eq!(world.installed["core_mosquitto"].state, "started");
        assert!(world.entries.contains(&("mqtt".into(), "hassio".into())));
        assert!(world.entries.contains(&("victron_gx".into(), "ignore".into())));
        assert!(world.flows.is_empty(), "{:?}", world.flows);
    }

    // Every HTTP call carries the token. The WebSocket sends it in its auth message
    // instead, so its upgrade request and messages are skipped here.
    for call in fake.calls().iter().filter(|c| c.method != "WS" && !c.path.ends_with("/websocket")) {
        assert_eq!(call.authorization.as_deref(), Some(&*format!("Bearer {TOKEN}")), "{}", call.line());
    }

    fake.clear_calls();
    let second = run_provision(&fake);
    assert!(second.success, "second run failed:\n{}", second.stderr);
    assert_eq!(changes(&fake.calls()), Vec::<String>::new(), "stderr:\n{}", second.stderr);
    assert!(second.stderr.contains("nothing changed"), "{}", second.stderr);
}

#[test]
fn provision_partial_box_changes_only_missing() {
    // Mosquitto and the MQTT integration exist; our add-on is installed but stopped,
    // with watchdog on and auto-update off.
    let mut world = fresh_box();
    world.flows.clear();
    world.installed.insert(
        "core_mosquitto".into(),
        Addon { state: "started", boot: "auto", auto_update: false, watchdog: false },
    );
    world.entries.push(("mqtt".into(), "hassio".into()));
    world.repositories.push((repository_slug(REPOSITORY_URL), REPOSITORY_URL.into()));
    world
        .installed
        .insert(our_slug(), Addon { state: "stopped", boot: "manual", auto_update: false, watchdog: true });
    let world = Arc::new(Mutex::new(world));
    let fake = start_fake(world.clone());

    let run = run_provision(&fake);
    assert!(run.success, "{}", run.stderr);
    let slug = our_slug();
    assert_eq!(
        changes(&fake.calls()),
        vec![format!("POST /addons/{slug}/options"), format!("POST /addons/{slug}/start")]
    );
    let options = fake
        .calls()
        .into_iter()
        .find(|c| c.path.ends_with("/options"))
        .map(|c| serde_json::from_str::<Value>(&c.body).unwrap())
        .unwrap();
    assert_eq!(options, json!({"boot": "auto", "auto_update": true}), "only what differs is sent");
}

#[test]
fn provision_rejects_missing_token() {
    let world = Arc::new(Mutex::new(fresh_box()));
    let fake = start_fake(world);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/provision");
    let output = Command::new("bash")
        .arg(&script)
        .env_remove("SUPERVISOR_TOKEN")
        .env("SUPERVISOR_URL", fake.url())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(fake.calls().is_empty(), "no call without a token");
}

#[test]
fn provision_stops_on_wrong_token() {
    let world = Arc::new(Mutex::new(fresh_box()));
    let fake = start_fake(world.clone());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/provision");
    let output = Command::new("bash")
        .arg(&script)
        .env("SUPERVISOR_TOKEN", "wrong")
        .env("SUPERVISOR_URL", fake.url())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(!stderr.contains("wrong"), "the token must not be printed: {stderr}");
    assert_eq!(changes(&fake.calls()), Vec::<String>::new());
}
