//! The Home Assistant Supervisor API, as seen from inside the add-on container.
//!
//! The Supervisor gives every add-on a bearer token (`SUPERVISOR_TOKEN`, or the legacy
//! `HASSIO_TOKEN`) and serves its API on `http://supervisor`. The daemon uses two things:
//!
//! * `GET /services/mqtt`: host, port and credentials of Home Assistant's broker. The
//!   Mosquitto add-on registers that service each time it starts and may change the
//!   password then, so the caller asks again after an authentication failure.
//! * The Core API proxy (`/core/api/...`, needs `homeassistant_api: true` in the manifest):
//!   persistent notifications for problems the user must fix.
//!
//! The token and the broker password never appear in logs or in `Debug` output.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::backoff::Backoff;
use crate::clock::Timings;
use crate::http::{self, HttpError, Response};
use crate::problems::Problems;

/// Base URL of the Supervisor API inside an add-on container.
pub const DEFAULT_URL: &str = "http://supervisor";

/// Timeout of one Supervisor request. The Supervisor replies from memory, but Core proxy
/// calls can take longer while Core is busy starting.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on the Supervisor API.
#[derive(Clone)]
pub struct Supervisor {
    base_url: String,
    token: String,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("base_url", &self.base_url)
            .field("token", &"***")
            .finish()
    }
}

/// Home Assistant's MQTT broker as the Supervisor describes it.
#[derive(Clone, PartialEq, Eq)]
pub struct MqttService {
    /// Usually `core-mosquitto`, the Mosquitto add-on's container name.
    pub host: String,
    pub port: u16,
    /// True when the broker expects TLS. The Mosquitto add-on reports `false` on the
    /// internal network.
    pub ssl: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// MQTT protocol version the broker offers, `3.1` or `3.1.1`.
    pub protocol: Option<String>,
}

impl std::fmt::Debug for MqttService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttService")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("ssl", &self.ssl)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("protocol", &self.protocol)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// HTTP 400 from `/services/mqtt`: no add-on provides MQTT yet, usually because
    /// Mosquitto is still starting (or is not installed).
    #[error("the Supervisor has no MQTT service yet (is the Mosquitto broker add-on installed and started?)")]
    MqttNotReady,
    /// HTTP 401 or 403: the token is wrong, or the manifest lacks the permission.
    #[error("the Supervisor rejected the request to {path} with HTTP {status}: {message}")]
    Forbidden { path: String, status: u16, message: String },
    #[error("the Supervisor answered {path} with HTTP {status}: {message}")]
    Status { path: String, status: u16, message: String },
    #[error("invalid answer from the Supervisor to {path}: {reason}")]
    InvalidResponse { path: String, reason: String },
    #[error("request to the Supervisor failed: {0}")]
    Http(#[from] HttpError),
}

impl Supervisor {
    /// Builds a handle from the add-on environment: the token from `SUPERVISOR_TOKEN`
    /// (or `HASSIO_TOKEN`), the URL from `SUPERVISOR_URL` or [`DEFAULT_URL`]. Returns
    /// `None` outside an add-on, where no token is set.
    pub fn from_env() -> Option<Supervisor> {
        let token = ["SUPERVISOR_TOKEN", "HASSIO_TOKEN"]
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .map(|value| value.trim().to_string())
            .find(|value| !value.is_empty())?;
        let base_url = std::env::var("SUPERVISOR_URL")
            .ok()
            .filter(|url| !url.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        Some(Supervisor::new(&base_url, &token))
    }

    pub fn new(base_url: &str, token: &str) -> Supervisor {
        Supervisor {
            base_url: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Returns the add-on's token, for the Core WebSocket API, which takes it inside its `auth`
    /// message instead of a header. Never log it.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Asks once for Home Assistant's broker (`GET /services/mqtt`).
    pub async fn mqtt_service(&self) -> Result<MqttService, SupervisorError> {
        let path = "/services/mqtt";
        let response = self.get(path).await?;
        if response.status == 400 {
            return Err(SupervisorError::MqttNotReady);
        }
        let data = supervisor_data(path, &response)?;
        parse_mqtt_service(path, &data)
    }

    /// Asks for Home Assistant's broker until the Supervisor has one, with backoff
    /// between attempts (the reconnect delays of `timings`). Waits forever: an add-on
    /// with `mqtt:need` is useless without the broker, and the Supervisor restarts us
    /// only if we exit. A failure is logged once, then counted once per
    /// `timings.problem_summary` (10 minutes unscaled) while it lasts.
    pub async fn wait_mqtt_service(&self, timings: &Timings) -> MqttService {
        let mut backoff = Backoff::new(timings.reconnect.0, timings.reconnect.1);
        let mut problems = Problems::new(timings.problem_summary);
        let started = Instant::now();
        loop {
            match self.mqtt_service().await {
                Ok(service) => {
                    tracing::info!(
                        host = %service.host,
                        port = service.port,
                        ssl = service.ssl,
                        username = service.username.as_deref().unwrap_or(""),
                        waited_s = started.elapsed().as_secs(),
                        "Home Assistant's MQTT broker found through the Supervisor"
                    );
                    return service;
                }
                Err(SupervisorError::MqttNotReady) => {
                    crate::warn_limited!(
                        problems,
                        "mqtt_not_ready",
                        Instant::now(),
                        "waiting for Home Assistant's MQTT broker: no MQTT broker add-on is \
                         running. Install and start the Mosquitto broker add-on; the bridge \
                         continues by itself once it runs"
                    );
                }
                Err(err) => {
                    crate::warn_limited!(
                        problems,
                        "mqtt_service_error",
                        Instant::now(),
                        "cannot ask the Supervisor for Home Assistant's MQTT broker ({err}); \
                         retrying"
                    );
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Creates or replaces the persistent notification `notification_id` in Home
    /// Assistant, through the Supervisor's Core API proxy.
    pub async fn create_notification(
        &self,
        notification_id: &str,
        title: &str,
        message: &str,
    ) -> Result<(), SupervisorError> {
        let body = json!({
            "notification_id": notification_id,
            "title": title,
            "message": message,
        });
        self.call_core_service("persistent_notification/create", &body).await
    }

    /// Removes the persistent notification `notification_id`. Home Assistant reports no
/// error when none exists.
    pub async fn dismiss_notification(&self, notification_id: &str) -> Result<(), SupervisorError> {
        let body = json!({ "notification_id": notification_id });
        self.call_core_service("persistent_notification/dismiss", &body).await
    }

    async fn call_core_service(&self, service: &str, body: &Value) -> Result<(), SupervisorError> {
        let path = format!("/core/api/services/{service}");
        let url = format!("{}{path}", self.base_url);
        let auth = self.authorization();
        let response =
            http::post_json(&url, &[("Authorization", auth.as_str())], body, REQUEST_TIMEOUT).await?;
        match response.status {
            200..=299 => Ok(()),
            status => Err(status_error(&path, status, &response)),
        }
    }

    async fn get(&self, path: &str) -> Result<Response, SupervisorError> {
        let url = format!("{}{path}", self.base_url);
        let auth = self.authorization();
        Ok(http::get(&url, &[("Authorization", auth.as_str())], REQUEST_TIMEOUT).await?)
    }

    fn authorization(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

/// Unwraps the Supervisor's envelope `{"result": "ok", "data": {...}}`.
fn supervisor_data(path: &str, response: &Response) -> Result<Value, SupervisorError> {
    if !(200..=299).contains(&response.status) {
        return Err(status_error(path, response.status, response));
    }
    let invalid = |reason: String| SupervisorError::InvalidResponse { path: path.to_string(), reason };
    let envelope: Value =
        serde_json::from_slice(&response.body).map_err(|e| invalid(format!("not JSON: {e}")))?;
    match envelope.get("result").and_then(Value::as_str) {
        Some("ok") => {}
        other => return Err(invalid(format!("result is {other:?}, expected \"ok\""))),
    }
    envelope.get("data").cloned().ok_or_else(|| invalid("no 'data' object".into()))
}

fn status_error(path: &str, status: u16, response: &Response) -> SupervisorError {
    let message = error_message(response);
    match status {
        401 | 403 => SupervisorError::Forbidden { path: path.to_string(), status, message },
        _ => SupervisorError::Status { path: path.to_string(), status, message },
    }
}

/// Extracts the `message` of a Supervisor error envelope, or else the start of the body.
fn error_message(response: &Response) -> String {
    let parsed: Option<Value> = serde_json::from_slice(&response.body).ok();
    if let Some(message) = parsed.as_ref().and_then(|v| v.get("message")).and_then(Value::as_str) {
        return message.to_string();
    }
    let text = response.text();
    let text = text.trim();
    if text.chars().count() > 200 {
        format!("{}...", text.chars().take(200).collect::<String>())
    } else {
        text.to_string()
    }
}

/// Reads the `data` object of `/services/mqtt`. `port` arrives as a number from the
/// Supervisor's schema, but its documentation calls it a string, so both are accepted.
fn parse_mqtt_service(path: &str, data: &Value) -> Result<MqttService, SupervisorError> {
    let invalid = |reason: &str| SupervisorError::InvalidResponse {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    let host = data
        .get("host")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid("'host' is missing or empty"))?
        .to_string();
    let port = match data.get("port") {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
        _ => None,
    }
    .filter(|p| *p > 0)
    .ok_or_else(|| invalid("'port' is missing or not a port number 1-65535"))?;
    let ssl = match data.get("ssl") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "true" | "True" | "1"),
        Some(_) => return Err(invalid("'ssl' is not a boolean")),
    };
    let text = |key: &str| {
        data.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Ok(MqttService {
        host,
        port,
        ssl,
        username: text("username"),
        password: text("password"),
        protocol: text("protocol"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> Response {
        Response { status, headers: Vec::new(), body: body.as_bytes().to_vec() }
    }

    #[test]
    fn mqtt_service_port_as_number_or_string() {
        for port in [json!(1883), json!("1883")] {
            let data = json!({"host": "core-mosquitto", "port": port, "ssl": false,
                              "username": "addons", "password": "pw", "protocol": "3.1.1",
                              "addon": "core_mosquitto"});
            let service = parse_mqtt_service("/services/mqtt", &data).unwrap();
            assert_eq!(service.host, "core-mosquitto");
            assert_eq!(service.port, 1883);
            assert!(!service.ssl);
            assert_eq!(service.username.as_deref(), Some("addons"));
            assert_eq!(service.password.as_deref(), Some("pw"));
            assert_eq!(service.protocol.as_deref(), Some("3.1.1"));
        }
    }

    #[test]
    fn mqtt_service_rejects_bad_fields() {
        let bad = [
            json!({"port": 1883}),
            json!({"host": "", "port": 1883}),
            json!({"host": "h", "port": 0}),
            json!({"host": "h", "port": "x"}),
            json!({"host": "h", "port": 70000}),
            json!({"host": "h", "port": 1883, "ssl": 3}),
        ];
        for data in bad {
            assert!(parse_mqtt_service("/services/mqtt", &data).is_err(), "{data}");
        }
    }

    #[test]
    fn mqtt_service_debug_hides_password() {
        let data = json!({"host": "h", "port": 1883, "password": "s3cret-pw"});
        let service = parse_mqtt_service("/services/mqtt", &data).unwrap();
        let shown = format!("{service:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn supervisor_debug_hides_token() {
        let supervisor = Supervisor::new("http://supervisor/", "tok-123456");
        let shown = format!("{supervisor:?}");
        assert!(!shown.contains("tok-123456"), "{shown}");
        assert_eq!(supervisor.base_url(), "http://supervisor");
    }

    #[test]
    fn envelope_errors() {
        let path = "/services/mqtt";
        assert!(supervisor_data(path, &response(200, r#"{"result":"ok","data":{"a":1}}"#)).is_ok());
        assert!(matches!(
            supervisor_data(path, &response(200, r#"{"result":"error","message":"x"}"#)),
            Err(SupervisorError::InvalidResponse { .. })
        ));
        assert!(matches!(
            supervisor_data(path, &response(200, "not json")),
            Err(SupervisorError::InvalidResponse { .. })
        ));
        match supervisor_data(path, &response(403, r#"{"result":"error","message":"No access"}"#)) {
            Err(SupervisorError::Forbidden { status, message, .. }) => {
                assert_eq!(status, 403);
                assert_eq!(message, "No access");
            }
            other => panic!("expected Forbidden, got {other:?}"),
        }
        match supervisor_data(path, &response(500, "boom")) {
            Err(SupervisorError::Status { status, message, .. }) => {
                assert_eq!(status, 500);
                assert_eq!(message, "boom");
            }
            other => panic!("expected Status, got {other:?}"),
        }
    }
}
