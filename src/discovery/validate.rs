//! Validation: an MQTT handshake that proves a candidate is a GX.
//!
//! A GX's broker contains exactly one retained message, `N/<portal>/system/0/Serial` with
//! `{"value": "<portal>"}`: dbus-flashmq retains only that item and publishes it even
//! without a keepalive, and the older dbus-mqtt kept it after expiry. So: connect,
//! subscribe `N/+/system/0/Serial`, wait a few seconds for a retained message. A broker
//! without one (Home Assistant's own Mosquitto, for one) is not a GX.
//!
//! 1883 is tried first, then 8883 with TLS. The TLS certificate is checked against the
//! pin stored for the expected portal id; with no pin yet, any certificate is accepted
//! and its fingerprint returned, to be pinned on adoption (trust on first use).

use std::net::IpAddr;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS};
use rumqttc::{TlsConfiguration, Transport};

use super::candidate::{Candidate, Outcome};
use super::sweep::{probe_port, PortState};
use crate::config::{GX_PORT_PLAIN, GX_PORT_TLS};
use crate::gx::tls::{self, Fingerprint};

pub const SERIAL_FILTER: &str = "N/+/system/0/Serial";

#[derive(Debug, Clone)]
pub struct ValidateConfig {
    pub username: Option<String>,
    pub password: Option<String>,
    /// Only 8883 with TLS (the user asked for TLS; never send credentials in plain text).
    pub tls_only: bool,
    /// TCP connect plus CONNACK.
    pub connect_timeout: Duration,
    /// Wait for the retained Serial after CONNACK.
    pub serial_wait: Duration,
}

/// Reads the portal id from a Serial message: the topic's portal segment and the JSON
/// `value` must agree.
pub fn parse_serial(topic: &str, payload: &[u8]) -> Option<String> {
    let mut parts = topic.split('/');
    let (Some("N"), Some(portal), Some("system"), Some("0"), Some("Serial"), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let json: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let value = json.get("value")?.as_str()?;
    (value.eq_ignore_ascii_case(portal) && crate::config::validate_portal_id(portal).is_ok())
        .then(|| portal.to_ascii_lowercase())
}

/// Lists the ports to try, in order, with their TLS flag.
fn attempts(candidate: &Candidate, tls_only: bool) -> Vec<(u16, bool)> {
    if let Some(port) = candidate.port {
        return vec![(port, tls_only || port == GX_PORT_TLS)];
    }
    if tls_only {
        vec![(GX_PORT_TLS, true)]
    } else {
        vec![(GX_PORT_PLAIN, false), (GX_PORT_TLS, true)]
    }
}

/// Validates `candidate`. `pin` is the pinned certificate of the portal id the caller
/// expects there (adopted, or announced by SSDP), if any.
pub async fn validate(
    candidate: &Candidate,
    config: &ValidateConfig,
    pin: Option<Fingerprint>,
    expected_portal: Option<&str>,
) -> Outcome {
    let mut any_answer = false;
    for (port, use_tls) in attempts(candidate, config.tls_only) {
        match probe_port(candidate.host, port, config.connect_timeout).await {
            PortState::Open => {}
            PortState::Closed => {
                any_answer = true;
                continue;
            }
            PortState::Silent => continue,
        }
        let outcome = handshake(candidate.host, port, use_tls, config, pin, expected_portal).await;
        tracing::debug!(host = %candidate.host, port, tls = use_tls, outcome = outcome.label(), "MQTT handshake");
        return outcome;
    }
    // Silence on both ports means "closed" only when the host is known to be alive: a
    // refused connect, or an SSDP announcement saying MQTT access is off. Otherwise the
    // host may have gone (a GX whose address changed), which is not a reason to hold.
    if any_answer || candidate.mqtt_on_lan == Some(false) {
        Outcome::PortsClosed
    } else {
        Outcome::Unreachable
    }
}

async fn handshake(
    host: IpAddr,
    port: u16,
    use_tls: bool,
    config: &ValidateConfig,
    pin: Option<Fingerprint>,
    expected_portal: Option<&str>,
) -> Outcome {
    let client_id = format!("roamcore-probe-{:08x}", rand::random::<u32>());
    let mut options = MqttOptions::new(client_id, host.to_string(), port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_clean_session(true);
    options.set_max_packet_size(64 * 1024, 64 * 1024);
    if let Some(password) = &config.password {
        // FlashMQ on Venus treats an empty user name as anonymous and ignores the name
        // otherwise, so any non-empty name carries the password.
        let username = config.username.clone().unwrap_or_else(|| "roamcore".to_string());
        options.set_credentials(username, password.clone());
    } else if let Some(username) = &config.username {
        options.set_credentials(username.clone(), String::new());
    }
    let verifier = if use_tls {
        let (tls_config, verifier) = tls::client_config(pin);
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls_config)));
        Some(verifier)
    } else {
        None
    };

    let (client, mut eventloop) = AsyncClient::new(options, 10);
    eventloop.network_options.set_connection_timeout(config.connect_timeout.as_secs().max(1));
    let result = tokio::time::timeout(
        config.connect_timeout + config.serial_wait,
        wait_for_serial(&client, &mut eventloop, config),
    )
    .await;
    // A clean DISCONNECT only on a live connection: polling a failed event loop would
    // dial again, and a second rejected login counts against FlashMQ's rate limit.
    if matches!(result, Ok(Ok(_))) {
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
    }

    let observed = verifier.as_ref().and_then(|v| v.observed());
    let pin_mismatch = matches!((pin, observed), (Some(p), Some(o)) if p != o);
    match result {
        Ok(Ok(Some(portal_id))) => {
            Outcome::Gx { portal_id, port, tls: use_tls, fingerprint: observed }
        }
        Ok(Ok(None)) => Outcome::NotGx { port },
        Ok(Err(Refusal::Login)) => Outcome::LoginRejected { port, tls: use_tls },
        Ok(Err(Refusal::Other)) | Err(_) if pin_mismatch => Outcome::TlsUntrusted {
            port,
            portal_id: expected_portal.unwrap_or("unknown").to_string(),
            fingerprint: observed,
        },
        Ok(Err(Refusal::Other)) => Outcome::NotGx { port },
        Ok(Err(Refusal::NoConnack)) | Err(_) => Outcome::NoConnack { port },
    }
}

enum Refusal {
    Login,
    NoConnack,
    Other,
}

/// Polls until the retained Serial arrives (`Some`), the wait after CONNACK ends
/// (`None`), or the connection fails.
async fn wait_for_serial(
    client: &AsyncClient,
    eventloop: &mut rumqttc::EventLoop,
    config: &ValidateConfig,
) -> Result<Option<String>, Refusal> {
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let event = match deadline {
            Some(at) => match tokio::time::timeout_at(at, eventloop.poll()).await {
                Ok(event) => event,
                Err(_) => return Ok(None),
            },
            None => eventloop.poll().await,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if client.try_subscribe(SERIAL_FILTER, QoS::AtMostOnce).is_err() {
                    return Err(Refusal::Other);
                }
                deadline = Some(tokio::time::Instant::now() + config.serial_wait);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) if publish.retain => {
                if let Some(portal) = parse_serial(&publish.topic, &publish.payload) {
                    return Ok(Some(portal));
                }
            }
            Ok(_) => {}
            Err(ConnectionError::ConnectionRefused(
                ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
            )) => return Err(Refusal::Login),
            Err(ConnectionError::ConnectionRefused(_)) => return Err(Refusal::Other),
            Err(ConnectionError::NetworkTimeout) => return Err(Refusal::NoConnack),
            Err(err) => {
                tracing::debug!(error = %err, "MQTT validation connection failed");
                return Err(if deadline.is_some() { Refusal::Other } else { Refusal::NoConnack });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_topic_and_value_must_agree() {
        let topic = "N/c0619ab0d0e1/system/0/Serial";
        assert_eq!(
            parse_serial(topic, br#"{"value":"c0619ab0d0e1"}"#).as_deref(),
            Some("c0619ab0d0e1")
        );
        assert_eq!(
            parse_serial(topic, br#"{"value": "C0619AB0D0E1"}"#).as_deref(),
            Some("c0619ab0d0e1")
        );
        assert_eq!(parse_serial(topic, br#"{"value":"c0619ab88ee0"}"#), None);
        assert_eq!(parse_serial(topic, b""), None);
        assert_eq!(parse_serial(topic, b"1"), None);
        assert_eq!(
            parse_serial("N/c0619ab0d0e1/system/0/Serial/x", br#"{"value":"c0619ab0d0e1"}"#),
            None
        );
        assert_eq!(parse_serial("N/+/system/0/Serial", br#"{"value":"+"}"#), None);
    }

    #[test]
    fn port_order() {
        let mut candidate =
            Candidate::new("10.0.0.2".parse().unwrap(), super::super::candidate::Method::Sweep);
        assert_eq!(attempts(&candidate, false), vec![(1883, false), (8883, true)]);
        assert_eq!(attempts(&candidate, true), vec![(8883, true)]);
        candidate.port = Some(1884);
        assert_eq!(attempts(&candidate, false), vec![(1884, false)]);
    }
}
