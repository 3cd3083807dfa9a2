//! The GX link as the engine sees it: connecting, routing messages into the model, and
//! performing the session's keepalive actions.

use std::time::{Duration, Instant};

use rumqttc::{QoS, SubscribeFilter};

use super::{Engine, MAX_GX_PAYLOAD};
use crate::gx::payload;
use crate::gx::session::Action;
use crate::gx::tls::{self, PinStore};
use crate::gx::topic::{self, GxTopic};
use crate::ha::discovery::gx_topic;
use crate::ha::notify::SetupProblem;
use crate::mqtt::{self, Link, LinkConfig, LinkError, LinkEvent};
use crate::status::BridgeStatus;

/// How long (at time scale 1) a GX that delivered data before may refuse connections
/// before it is reported as `mqtt_disabled`. A refusal means the host is up but nothing
/// listens on the MQTT port, which a reboot explains only for its first minutes.
/// NOTE: an estimate with a wide margin, not measured on a real GX's reboot.
const MQTT_OFF_AFTER: Duration = Duration::from_secs(300);

/// Where to connect for the GX, and which portal id must answer there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GxTarget {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// The adopted GX: a broker reporting another portal id is not used.
    pub portal_id: Option<String>,
}

impl GxTarget {
    pub fn label(&self) -> String {
        crate::config::HostPort { host: self.host.clone(), port: Some(self.port) }.to_string()
    }
}

/// Waits for the next GX event, or forever when there is no GX link.
pub async fn recv(link: &mut Option<Link>) -> LinkEvent {
    match link {
        Some(link) => match link.events.recv().await {
            Some(event) => event,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

impl Engine {
    /// Connects to a GX, replacing any current target.
    pub fn connect_gx(&mut self, target: GxTarget) {
        if self.gx_target.as_ref() == Some(&target) && self.gx.is_some() {
            return;
        }
        let pins = PinStore::open(&self.settings.data_dir);
        let expected_pin = target
            .portal_id
            .as_deref()
            .and_then(|portal| pins.get(portal))
            .or_else(|| pins.get(&host_pin_key(&target.host)));
        let tls = target.tls.then(|| tls::client_config(expected_pin));
        self.gx_verifier = tls.as_ref().map(|(_, verifier)| verifier.clone());

        let config = LinkConfig {
            name: "gx",
            client_id: format!("roamcore-victron-{:08x}", rand::random::<u32>()),
            host: target.host.clone(),
            port: target.port,
            username: self.settings.gx_username.clone(),
            password: self.settings.gx_password.clone(),
            tls,
            keep_alive: self.timings.mqtt_keep_alive,
            connect_timeout: self.timings.connect_timeout,
            // rumqttc closes the connection on a packet above this; our own 1 MiB limit
            // drops larger values without a reconnect. 16 MiB is FlashMQ's own maximum.
            max_incoming: 16 * 1024 * 1024,
            max_outgoing: 64 * 1024,
            last_will: None,
            reconnect: self.timings.reconnect,
            reconnect_refused_max: self.timings.reconnect_refused_max,
            auth_retry: self.timings.auth_retry,
        };

        tracing::info!(gx = %target.label(), tls = target.tls, portal_id = target.portal_id.as_deref().unwrap_or("any"), "connecting to the GX");
        self.gx_refusals.reset();
        self.status.set_gx(Some(target.label()), target.portal_id.clone());
        self.set_status(BridgeStatus::Connecting, format!("Connecting to the GX at {}.", target.label()));
        match &self.gx {
            Some(link) => link.retarget(config),
            None => self.gx = Some(mqtt::spawn(config, 64, 4096)),
        }
        self.gx_target = Some(target);
    }

    pub(super) fn on_gx_event(&mut self, event: LinkEvent) {
        let now = Instant::now();
        match event {
            LinkEvent::Connected => {
                let label = self.gx_label();
                self.problems.clear("gx_link");
                self.gx_refusals.reset();
                tracing::info!(gx = %label, "connected to the GX broker; waiting for its portal id");
                self.set_status(BridgeStatus::Validating, format!("Connected to {label}; reading the GX's portal id."));
                self.wrong_portal = None;
                let actions = self.session.connected(now);
                self.perform(actions, now);
            }
            LinkEvent::Message { topic, payload } => {
                self.stats.gx_messages += 1;
                if payload.payload.len() > MAX_GX_PAYLOAD {
                    self.stats.gx_oversized += 1;
                    crate::warn_limited!(
                        self.problems,
                        "gx_oversized",
                        now,
                        "dropped a {} byte message on {} (limit {MAX_GX_PAYLOAD} bytes)",
                        payload.payload.len(),
                        truncate(&topic, 120)
                    );
                    return;
                }
                self.on_gx_message(&topic, &payload.payload, now);
            }
            LinkEvent::Disconnected(error) => self.on_gx_disconnected(error, now),
            LinkEvent::Acked | LinkEvent::Closed => {}
        }
    }

    fn on_gx_message(&mut self, topic: &str, bytes: &[u8], now: Instant) {
        tracing::debug!(topic, bytes = bytes.len(), "GX message");
        let parsed = match topic::parse(topic) {
            Ok(parsed) => parsed,
            Err(error) => {
                crate::warn_limited!(
                    self.problems,
                    format!("topic:{error:?}"),
                    now,
                    "ignored GX topic '{}': {}",
                    truncate(topic, 120),
                    error.describe()
                );
                return;
            }
        };

        let portal = self.session.portal().map(str::to_string);
        match parsed {
            GxTopic::Value { portal: p, service: "system", instance: "0", path: "Serial" } if portal.is_none() => {
                self.on_serial(p, bytes, now);
            }
            GxTopic::Value { portal: p, service, instance, path } => {
                if portal.as_deref() != Some(p) {
                    return;
                }
                self.session.value(topic, now);
                let changes = self.model.ingest(service, instance, path, payload::parse(bytes), super::Engine::unix_now());
                if service == "system" && path == "FirmwareVersion" {
                    self.update_firmware();
                }
                if service == "platform" && topic.ends_with(crate::gx::session::MODEL_PATH) {
                    self.update_model(bytes);
                }
                self.apply(changes, now);
            }
            GxTopic::Heartbeat { portal: p } if portal.as_deref() == Some(p) => {
                let actions = self.session.heartbeat(now);
                self.perform(actions, now);
            }
            GxTopic::FullPublishCompleted { portal: p } if portal.as_deref() == Some(p) => {
                let echo = payload::completion_echo(bytes);
                let actions = self.session.full_publish_completed(echo.as_deref(), now);
                self.perform(actions, now);
            }
            _ => {}
        }
    }

    fn on_serial(&mut self, topic_portal: &str, bytes: &[u8], now: Instant) {
        let reported = match payload::parse(bytes) {
            payload::Payload::Value(value) => value.as_str().map(str::to_string),
            _ => None,
        };
        let portal = reported.unwrap_or_else(|| topic_portal.to_string());
        let expected = self.gx_target.as_ref().and_then(|t| t.portal_id.clone()).or_else(|| self.settings.portal_id.clone());
        if let Some(expected) = expected {
            if !expected.eq_ignore_ascii_case(&portal) {
                let label = self.gx_label();
                crate::warn_limited!(
                    self.problems,
                    format!("wrong_portal:{portal}"),
                    now,
                    "the broker at {label} belongs to GX {portal}, not the adopted GX {expected}; not using it"
                );
                self.wrong_portal = Some(portal.clone());
                let detail = format!(
                    "The GX at {label} has portal id {portal}, but the bridge is set to use the GX {expected}. \
                     To use this GX instead, set portal_id (--portal-id) to {portal}; otherwise point gx_host (--gx) at the GX {expected}."
                );
                let problem = SetupProblem::WrongGx { host: label, found: portal, expected };
                self.set_setup_problem(problem, detail);
                return;
            }
        }
        let actions = self.session.serial(&portal, now);
        self.perform(actions, now);
    }

    fn on_gx_disconnected(&mut self, error: LinkError, now: Instant) {
        let label = self.gx_label();
        // The portal id outlives the connection, so it cannot tell a lost link from
        // another failed attempt.
        let was_up = self.session.is_connected();
        let refused_for = self.gx_refusals.record(matches!(error, LinkError::Refused), now);
        let actions = self.session.disconnected();
        self.perform(actions, now);
        self.stats.gx_reconnects += u64::from(was_up);
        self.lan_link_down(&error, now);

        match error {
            // Discovery took the GX over (`lan_link_down`) and reports these in its own words.
            LinkError::Auth | LinkError::PinMismatch if self.lan.is_some() => {}
            LinkError::Auth => {
                self.set_status(
                    BridgeStatus::AuthRequired,
                    format!(
                        "The GX at {label} rejected the login. Set the GX's password (the one for its \
                         Remote Console and web login) in the add-on option gx_password. Retrying at most once a minute."
                    ),
                );
            }
            LinkError::PinMismatch => {
                self.set_status(
                    BridgeStatus::TlsUntrusted,
                    format!(
                        "The GX at {label} presents a different TLS certificate than the one trusted before. \
                         If the GX was reset or replaced, switch on the option gx_trust_new_certificate once \
                         (or run `roamcore-victron adopt <portal id> --repin`); otherwise another device is \
                         answering at that address."
                    ),
                );
            }
            // A GX that delivered data before (this run, or stored capabilities) and now
            // refuses is most likely rebooting; only a GX never seen gets this advice.
            // A Secured GX (the factory default) closes 1883 and serves MQTT only over TLS
            // on 8883, which is open whenever MQTT access is on. So a configured host without
            // an explicit port or TLS gets one try on 8883 before MQTT is called off.
            LinkError::Refused if !was_up && self.lan.is_none() && self.tls_fallback_open() => {
                let target = self.gx_target.clone().expect("a link has a target");
                tracing::info!(gx = %label, "port 1883 is closed; trying TLS on 8883 (the GX's Secured profile)");
                self.gx_tls_fallback = false;
                self.connect_gx(GxTarget { port: crate::config::GX_PORT_TLS, tls: true, ..target });
            }
            LinkError::Refused if !was_up && self.lan.is_none() && self.model.capabilities().is_empty() => {
                self.set_status(
                    BridgeStatus::MqttDisabled,
                    format!(
                        "Nothing accepts MQTT connections at {label}. If this is your GX, switch on MQTT: on the GX \
                         open Settings -> Integrations and turn on MQTT Access (with the Secured profile, also set \
                         gx_tls and gx_password). Otherwise check the gx_host option."
                    ),
                );
            }
            // A GX seen before that keeps refusing long after a reboot would have ended has
            // MQTT access switched off.
            LinkError::Refused
                if self.lan.is_none() && refused_for >= MQTT_OFF_AFTER.mul_f64(self.timings.throttle_scale) =>
            {
                // The retries go on, so they are still counted in the log.
                crate::warn_limited!(self.problems, "gx_link", now, "cannot connect to the GX at {label}: {}", error.describe());
                self.set_status(
                    BridgeStatus::MqttDisabled,
                    format!(
                        "The GX at {label} has refused MQTT connections for more than {} minutes, longer than a \
                         reboot takes, so MQTT access is probably off. On the GX open Settings -> Integrations and \
                         turn on MQTT Access (with the Secured profile, also set gx_tls and gx_password). \
                         Otherwise check the gx_host option.",
                        MQTT_OFF_AFTER.as_secs() / 60
                    ),
                );
            }
            // The status line is the one log line for a loss, so it carries the cause.
            other if was_up => {
                self.set_status(
                    BridgeStatus::Connecting,
                    format!("The bridge lost the GX at {label}: {}. Reconnecting.", other.describe()),
                );
            }
            other => {
                crate::warn_limited!(self.problems, "gx_link", now, "cannot connect to the GX at {label}: {}", other.describe());
                self.set_status(BridgeStatus::Connecting, format!("Reconnecting to the GX at {label}: {}.", other.describe()));
            }
        }
    }

    /// Carries out what the session asked for.
    pub(super) fn perform(&mut self, actions: Vec<Action>, now: Instant) {
        for action in actions {
            match action {
                Action::Subscribe(topics) => {
                    let filters = topics.into_iter().map(|t| SubscribeFilter::new(t, QoS::AtMostOnce));
                    if let Some(link) = &self.gx {
                        if link.client.try_subscribe_many(filters).is_err() {
                            tracing::warn!("GX request queue full; subscription delayed to the next reconnect");
                        }
                    }
                }
                Action::Keepalive(body) => {
                    let Some(portal) = self.session.portal() else { continue };
                    let keepalive = topic::keepalive_topic(portal);
                    tracing::debug!(topic = %keepalive, payload = %body, "keepalive");
                    if let Some(link) = &self.gx {
                        let _ = link.client.try_publish(keepalive, QoS::AtMostOnce, false, body.into_bytes());
                    }
                }
                Action::Portal(portal) => self.on_portal(portal),
                Action::SnapshotBegin => self.model.begin_snapshot(),
                Action::SnapshotEnd => {
                    let changes = self.model.end_snapshot(super::Engine::unix_now());
                    self.apply(changes, now);
                    self.forget_unseen(now);
                    self.model.registry.save();
                }
                Action::Online => self.gx_came_online(now),
                Action::Offline(reason) => self.gx_went_offline(reason),
                Action::NoSerial if self.wrong_portal.is_some() => {}
                Action::NoSerial => {
                    let label = self.gx_label();
                    self.set_status(
                        BridgeStatus::Validating,
                        format!(
                            "Connected to {label}, but it has not sent a Victron portal id: it is not a Victron GX, \
                             or the GX is still starting. Check gx_host if this lasts."
                        ),
                    );
                    tracing::warn!(
                        gx = %self.gx_label(),
                        "connected, but no N/+/system/0/Serial after {:?}: this broker is not a GX, or the GX is still starting; waiting",
                        self.timings.gx_serial_wait
                    );
                }
            }
        }
    }

    fn on_portal(&mut self, portal: String) {
        tracing::info!(gx = %self.gx_label(), portal_id = %portal, "GX identified; requesting a full publish");
        if self.last_portal.as_ref().is_some_and(|last| *last != portal) {
            // Another GX was adopted: its devices are new; entity ids stay the same.
            tracing::info!(old = ?self.last_portal, new = %portal, "a different GX; forgetting the old GX's devices");
            let changes = self.model.clear_gx(super::Engine::unix_now());
            self.apply(changes, Instant::now());
        }
        self.last_portal = Some(portal.clone());
        // An adoption requested with `roamcore-victron adopt` is done once that GX answers.
        if crate::commands::adopt::pending(&self.settings.data_dir).as_deref() == Some(portal.as_str()) {
            let _ = std::fs::remove_file(self.settings.data_dir.join(crate::commands::adopt::FILE_NAME));
        }
        self.status.set_gx(None, Some(portal.clone()));
        if let Some(target) = self.gx_target.clone() {
            if target.tls {
                self.pin_certificate(&target, &portal);
            }
        }
        self.publish_status();
    }

    /// Trust on first use: pins the certificate the GX just presented.
    fn pin_certificate(&mut self, target: &GxTarget, portal: &str) {
        let Some(fingerprint) = self.current_tls_observed() else { return };
        if let Some(verifier) = &self.gx_verifier {
            verifier.pin(fingerprint);
        }
        let mut pins = PinStore::open(&self.settings.data_dir);
        let by_portal = pins.pin(portal, &fingerprint);
        let by_host = pins.pin(&host_pin_key(&target.host), &fingerprint);
        match (by_portal, by_host) {
            (Ok(true), _) => tracing::info!(
                portal_id = portal,
                sha256 = %tls::format_fingerprint(&fingerprint),
                "pinned the GX's TLS certificate"
            ),
            (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "cannot store the GX certificate pin"),
            _ => {}
        }
    }

    fn gx_came_online(&mut self, now: Instant) {
        self.gx_online = true;
        self.lan_link_up();
        self.publish_retained(gx_topic(), b"online".to_vec());
        // Every state must now be the GX's current value, whatever the throttle published
        // before the gap.
        self.throttle.reset_all();
        self.offer_all(now);
        let label = self.gx_label();
        let portal = self.session.portal().unwrap_or("?").to_string();
        self.set_status(BridgeStatus::Connected, format!("Connected to the GX {portal} at {label}."));
        self.publish_status();
        if let (Some(task), Some(portal)) = (&self.victron_gx, self.session.portal()) {
            task.gx_adopted(portal);
        }
    }

    fn gx_went_offline(&mut self, reason: &'static str) {
        if !self.gx_online && self.status.link() != BridgeStatus::Connected {
            return;
        }
        self.gx_online = false;
        self.publish_retained(gx_topic(), b"offline".to_vec());
        let label = self.gx_label();
        // Without a stale session the connection dropped, and `on_gx_disconnected` sets
        // the status right after this with the link error as the cause.
        if self.session.is_stale() {
            self.set_status(BridgeStatus::Stale, format!("The GX at {label} stopped sending data ({reason}); asking it to resend everything."));
        }
        self.publish_status();
    }

    /// Takes the GX's model name from `platform/0/Device/Model`: printable text of at
    /// most 64 characters, else ignored.
    fn update_model(&mut self, bytes: &[u8]) {
        let payload::Payload::Value(value) = payload::parse(bytes) else {
            return;
        };
        let Some(model) = value.as_str().map(str::trim) else {
            return;
        };
        if model.is_empty() || model.chars().count() > 64 || model.chars().any(char::is_control) {
            return;
        }
        if self.status.gx_model().as_deref() != Some(model) {
            self.status.set_model(Some(model.to_string()), None);
            self.remember_model();
            self.publish_status();
        }
    }

    /// Saves the GX's model with the entities, so the next start shows it at once.
    pub(super) fn remember_model(&mut self) {
        let model = self.status.gx_model();
        if model.is_some() && self.model.registry.stored.gx_model != model {
            self.model.registry.stored.gx_model = model;
            self.model.registry.mark_dirty();
        }
    }

    fn update_firmware(&mut self) {
        let version = self.model.gx.system().and_then(|s| s.number("FirmwareVersion"));
        if let Some(firmware) = version.and_then(super::status::format_firmware) {
            self.status.set_model(None, Some(firmware));
        }
    }

    /// Applies `forget_after_days` once the GX's full publish has refreshed what it still
    /// has (never before, or a van stored for weeks would lose every entity), and again at
    /// most once a day.
    fn forget_unseen(&mut self, now: Instant) {
        let days = self.settings.forget_after_days;
        if days == 0 || self.last_forget.is_some_and(|at| now.duration_since(at) < std::time::Duration::from_secs(86_400)) {
            return;
        }
        self.last_forget = Some(now);
        let cutoff = super::Engine::unix_now().saturating_sub(u64::from(days) * 86_400);
        let forgotten = self.model.registry.forget_before(cutoff);
        if !forgotten.is_empty() {
            tracing::info!(days, entities = ?forgotten, "forgetting entities whose source was not seen recently");
            self.publish_discovery();
        }
    }

    /// True while a configured host may still be tried over TLS on 8883.
    fn tls_fallback_open(&self) -> bool {
        self.gx_tls_fallback
            && self.model.capabilities().is_empty()
            && self.gx_target.as_ref().is_some_and(|t| !t.tls && t.port == crate::config::GX_PORT_PLAIN)
    }

    /// Allows one switch from 1883 to TLS on 8883 for a configured host given without a
    /// port or TLS setting.
    pub fn allow_tls_fallback(&mut self) {
        self.gx_tls_fallback = true;
    }

    pub(super) fn gx_label(&self) -> String {
        self.gx_target.as_ref().map(GxTarget::label).unwrap_or_else(|| "?".into())
    }

    fn current_tls_observed(&self) -> Option<tls::Fingerprint> {
        self.gx_verifier.as_ref().and_then(|v| v.observed())
    }
}

fn host_pin_key(host: &str) -> String {
    format!("host:{host}")
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}
