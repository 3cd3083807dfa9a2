//! Unit tests that drive the discovery state machine with scripted candidates, outcomes
//! and link reports, and a clock they advance by hand.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::adoption::Adoption;
use super::candidate::{Candidate, Method, Outcome};
use super::machine::{Action, Machine, MachineConfig, Phase};
use super::policy::ScanMode;
use super::{DiscoveryEvent, LinkReport};
use crate::status::BridgeStatus;

pub(super) const GX_A: &str = "c0619ab0d0e1";
pub(super) const GX_B: &str = "c0619ab88ee0";

pub(super) fn config() -> MachineConfig {
    MachineConfig {
        scan: true,
        wanted: None,
        password_given: false,
        auth_retry: Duration::from_secs(60),
        settle: Duration::from_secs(5),
        recheck: Duration::from_secs(30),
        retry: (Duration::from_secs(1), Duration::from_secs(30)),
        time_scale: 1.0,
    }
}

pub(super) fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 168, 1, last])
}

pub(super) fn ssdp(last: u8, portal: &str, mqtt_on: bool) -> Candidate {
    let mut candidate = Candidate::new(ip(last), Method::Ssdp);
    candidate.portal_hint = Some(portal.into());
    candidate.mqtt_on_lan = Some(mqtt_on);
    candidate.model = Some("Cerbo GX".into());
    candidate.evidence = Some("SSDP announcement by Victron Energy".into());
    candidate
}

pub(super) fn gx(portal: &str) -> Outcome {
    Outcome::Gx { portal_id: portal.into(), port: 1883, tls: false, fingerprint: None }
}

pub(super) fn statuses(actions: &[Action]) -> Vec<BridgeStatus> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(DiscoveryEvent::Status { status, .. }) => Some(*status),
            _ => None,
        })
        .collect()
}

pub(super) fn used(actions: &[Action]) -> Option<String> {
    actions.iter().find_map(|a| match a {
        Action::Emit(DiscoveryEvent::Use(endpoint)) => Some(endpoint.portal_id.clone()),
        _ => None,
    })
}

/// Returns the sentence of the last status in `actions`.
pub(super) fn detail(actions: &[Action]) -> String {
    actions
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::Emit(DiscoveryEvent::Status { detail, .. }) => Some(detail.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Validates the next queued candidate with `outcome`; returns the actions.
pub(super) fn validate_next(machine: &mut Machine, outcome: Outcome, now: Instant) -> (IpAddr, Vec<Action>) {
    let (candidate, mut actions) = machine.next_validation(now);
    let candidate = candidate.expect("a candidate is queued");
    actions.extend(machine.on_outcome(&candidate, outcome, now));
    (candidate.host, actions)
}

#[test]
fn starts_searching() {
    let t0 = Instant::now();
    let (machine, actions) = Machine::new(config(), None, None, t0);
    assert_eq!(statuses(&actions), vec![BridgeStatus::Searching]);
    assert_eq!(machine.scan_mode(), ScanMode::Active);
}

#[test]
fn single_gx_adopted_after_settle() {
    let t0 = Instant::now();
    let (mut machine, _) = Machine::new(config(), None, None, t0);
    machine.on_candidate(ssdp(20, GX_A, true), t0);

    let (host, actions) = validate_next(&mut machine, gx(GX_A), t0);
    assert_eq!(host, ip(20));
    assert_eq!(used(&actions), None, "no adoption before the settle window");

    assert_eq!(used(&machine.on_tick(t0 + Duration::from_secs(2))), None);
    let actions = machine.on_tick(t0 + Duration::from_secs(5));
    assert_eq!(used(&actions).as_deref(), Some(GX_A));
    assert!(actions.iter().any(|a| matches!(a, Action::Persist(p) if p.portal_id == GX_A)));
    assert!(matches!(machine.phase(), Phase::Connecting(_)));
    assert_eq!(machine.scan_mode(), ScanMode::Passive);
}

#[test]
fn two_gx_at_first_start_adopt_none() {
    let t0 = Instant::now();
    let (mut machine, _) = Machine::new(config(), None, None, t0);
    machine.on_candidate(ssdp(20, GX_A, true), t0);
    machine.on_candidate(ssdp(21, GX_B, true), t0);
    validate_next(&mut machine, gx(GX_A), t0);
    validate_next(&mut machine, gx(GX_B), t0 + Duration::from_secs(1));

    let actions = machine.on_tick(t0 + Duration::from_secs(6));
    assert_eq!(used(&actions), None);
    assert_eq!(statuses(&actions), vec![BridgeStatus::MultipleGx]);
    let text = detail(&actions);
    assert!(text.contains(GX_A), "{text}");
    assert!(text.contains(GX_B), "{text}");
    assert!(text.contains("portal_id"), "{text}");
    assert!(!actions.iter().any(|a| matches!(a, Action::Persist(_))));
    assert_eq!(machine.phase(), &Phase::MultipleGx);

    // Nothing changes later either.
    assert_eq!(used(&machine.on_tick(t0 + Duration::from_secs(600))), None);
}

#[test]
fn portal_option_picks_one_of_two() {
    let t0 = Instant::now();
    let config = MachineConfig { wanted: Some(GX_B.into()), ..config() };
    let (mut machine, _) = Machine::new(config, None, None, t0);
    machine.on_candidate(ssdp(20, GX_A, true), t0);
    machine.on_candidate(ssdp(21, GX_B, true), t0);

    let (_, actions) = validate_next(&mut machine, gx(GX_A), t0);
    assert_eq!(used(&actions), None);
    assert!(actions.iter().any(
        |a| matches!(a, Action::Emit(DiscoveryEvent::OthersSeen(o)) if o[0].portal_id == GX_A)
    ));
    let (_, actions) = validate_next(&mut machine, gx(GX_B), t0);
    assert_eq!(used(&actions).as_deref(), Some(GX_B), "the named GX is used at once");
}

#[test]
fn adopted_gx_only_at_any_address() {
    let t0 = Instant::now();
    let adopted = Adoption {
        portal_id: GX_A.into(),
        host: ip(20),
        port: 1883,
        tls: false,
        model: None,
        firmware: None,
    };
    let (mut machine, _) = Machine::new(config(), Some(adopted), None, t0);

    // The cached address now belongs to another GX: reported, never used.
    let (host, actions) = validate_next(&mut machine, gx(GX_B), t0);
    assert_eq!(host, ip(20), "the cached address is tried first");
    assert_eq!(used(&actions), None);
    assert!(actions.iter().any(|a| matches!(a, Action::Emit(DiscoveryEvent::OthersSeen(_)))));

    // The adopted GX at a new address is used at once, and the address is stored.
    machine.on_candidate(ssdp(33, GX_A, true), t0);
    let (_, actions) = validate_next(&mut machine, gx(GX_A), t0);
    assert_eq!(used(&actions).as_deref(), Some(GX_A));
    assert!(actions.iter().any(|a| matches!(a, Action::Persist(p) if p.host == ip(33))));
}

#[test]
fn second_gx_while_connected_is_reported_not_validated() {
    let t0 = Instant::now();
    let (mut machine, _) = Machine::new(config(), None, None, t0);
    machine.on_candidate(ssdp(20, GX_A, true), t0);
    validate_next(&mut machine, gx(GX_A), t0);
    let actions = machine.on_tick(t0 + Duration::from_secs(5));
    let endpoint = actions
        .iter()
        .find_map(|a| match a {
            Action::Emit(DiscoveryEvent::Use(e)) => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    machine.on_link(LinkReport::Connected(endpoint), t0 + Duration::from_secs(6));
    assert_eq!(machine.scan_mode(), ScanMode::Passive);

    let actions = machine.on_candidate(ssdp(21, GX_B, true), t0 + Duration::from_secs(7));
    assert!(actions.iter().any(|a| matches!(a, Action::Emit(DiscoveryEvent::OthersSeen(o)) if o[0].portal_id == GX_B && !o[0].confirmed)));
    assert!(
        machine.next_validation(t0 + Duration::from_secs(8)).0.is_none(),
        "no probes while connected"
    );
    let again = machine.on_candidate(ssdp(21, GX_B, true), t0 + Duration::from_secs(9));
    assert!(again.is_empty(), "reported once: {again:?}");
}

#[test]
fn plain_broker_is_never_a_gx() {
    let t0 = Instant::now();
    let (mut machine, _) = Machine::new(config(), None, None, t0);
    machine.on_candidate(Candidate::new(ip(5), Method::Sweep), t0);
    let (_, actions) = validate_next(&mut machine, Outcome::NotGx { port: 1883 }, t0);
    assert_eq!(used(&actions), None);
    assert_eq!(machine.phase(), &Phase::Searching);

    // Found again by the next sweep: not checked again for a long while.
    machine.on_candidate(Candidate::new(ip(5), Method::Sweep), t0 + Duration::from_secs(120));
    assert!(machine.next_validation(t0 + Duration::from_secs(120)).0.is_none());
}

#[test]
fn mqtt_off_holds_until_switched_on() {
    let t0 = Instant::now();
    let (mut machine, _) = Machine::new(config(), None, None, t0);
    machine.on_candidate(ssdp(20, GX_A, false), t0);
    let (_, actions) = validate_next(&mut machine, Outcome::PortsClosed, t0);
    assert_eq!(statuses(&actions), vec![BridgeStatus::Validating, BridgeStatus::MqttDisabled]);
    let text = detail(&actions);
    assert!(text.contains("192.168.1.20"), "{text}");
    assert!(text.contains(GX_A), "{text}");
    assert!(text.contains("Settings -> Integrations"), "{text}");
    assert!(text.contains("MQTT Access"), "{text}");
    assert_eq!(machine.scan_mode(), ScanMode::Passive);

    // The user switches MQTT on: simple-upnpd restarts and announces X_MqttOnLan=1.
    machine.on_candidate(ssdp(20, GX_A, true), t0 + Duration::from_secs(10));
    machine.on_tick(t0 + Duration::from_secs(10));
    let (_, actions) = validate_next(&mut machine, gx(GX_A), t0 + Duration::from_secs(11));
    assert!(
        statuses(&actions).is_empty() || !statuses(&actions).contains(&BridgeStatus::MqttDisabled)
    );
    let actions = machine.on_tick(t0 + Duration::from_secs(16));
    assert_eq!(used(&actions).as_deref(), Some(GX_A));
}

#[test]
fn auth_required_retries_once_a_minute() {
    let t0 = Instant::now();
    let (mut machine, _) = Machine::new(config(), None, None, t0);
    machine.on_candidate(ssdp(20, GX_A, true), t0);
    let (_, actions) =
        validate_next(&mut machine, Outcome::LoginRejected { port: 8883, tls: true }, t0);
    assert_eq!(statuses(&actions), vec![BridgeStatus::Validating, BridgeStatus::AuthRequired]);
    assert!(detail(&actions).contains("gx_password"));

    // Announcements and ticks within the minute do not cause another login.
    for s in 1..60 {
        let now = t0 + Duration::from_secs(s);
        machine.on_candidate(ssdp(20, GX_A, true), now);
        machine.on_tick(now);
        assert!(machine.next_validation(now).0.is_none(), "login attempt at {s} s");
    }
    let now = t0 + Duration::from_secs(60);
    machine.on_tick(now);
    let (candidate, _) = machine.next_validation(now);
    assert_eq!(candidate.map(|c| c.host), Some(ip(20)));
    let actions = machine.on_outcome(
        &ssdp(20, GX_A, true),
        Outcome::LoginRejected { port: 8883, tls: true },
        now,
    );
    assert!(statuses(&actions).is_empty(), "status unchanged: {actions:?}");
    assert_eq!(machine.phase(), &Phase::AuthRequired(ip(20)));
}

#[test]
fn rejected_login_without_gx_signs_is_ignored() {
    let t0 = Instant::now();
    let (mut machine, _) = Machine::new(config(), None, None, t0);
    machine.on_candidate(Candidate::new(ip(7), Method::Sweep), t0);
    let (_, actions) =
        validate_next(&mut machine, Outcome::LoginRejected { port: 1883, tls: false }, t0);
    assert!(!statuses(&actions).contains(&BridgeStatus::AuthRequired));
    assert_eq!(machine.phase(), &Phase::Searching);
}

#[test]
fn tls_untrusted_holds() {
    let t0 = Instant::now();
    let (mut machine, _) = Machine::new(config(), None, None, t0);
    machine.on_candidate(ssdp(20, GX_A, true), t0);
    let outcome = Outcome::TlsUntrusted { port: 8883, portal_id: GX_A.into(), fingerprint: None };
    let (_, actions) = validate_next(&mut machine, outcome, t0);
    assert_eq!(statuses(&actions), vec![BridgeStatus::Validating, BridgeStatus::TlsUntrusted]);
    assert!(detail(&actions).contains("adopt"));
    assert!(machine.next_validation(t0 + Duration::from_secs(60)).0.is_none());
}

#[test]
fn lost_link_searches_last_address_first_with_backoff() {
    let t0 = Instant::now();
    let adopted = Adoption {
        portal_id: GX_A.into(),
        host: ip(20),
        port: 1883,
        tls: false,
        model: None,
        firmware: None,
    };
    let (mut machine, _) = Machine::new(config(), Some(adopted), None, t0);
    let (_, actions) = validate_next(&mut machine, gx(GX_A), t0);
    let endpoint = actions
        .iter()
        .find_map(|a| match a {
            Action::Emit(DiscoveryEvent::Use(e)) => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    machine.on_link(LinkReport::Connected(endpoint), t0);

    let actions = machine.on_link(LinkReport::Lost, t0 + Duration::from_secs(10));
    assert_eq!(statuses(&actions), vec![BridgeStatus::Searching]);
    assert_eq!(machine.scan_mode(), ScanMode::Active);
    let (candidate, _) = machine.next_validation(t0 + Duration::from_secs(10));
    assert_eq!(candidate.as_ref().map(|c| c.method), Some(Method::Cached));
    machine.on_outcome(&candidate.unwrap(), Outcome::Unreachable, t0 + Duration::from_secs(11));

    // Tries of the last address back off: 1 s, 2 s, 4 s, ... up to 30 s.
    let mut tries = Vec::new();
    for s in 11..200u64 {
        let now = t0 + Duration::from_secs(s);
        machine.on_tick(now);
        if let (Some(c), _) = machine.next_validation(now) {
            tries.push(s);
            machine.on_outcome(&c, Outcome::Unreachable, now);
        }
    }
    assert!(tries.len() >= 3, "{tries:?}");
    let gaps: Vec<u64> = tries.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g <= 61), "{gaps:?}");
    assert!(gaps.windows(2).all(|w| w[1] >= w[0]), "gaps grow: {gaps:?}");
}

#[test]
fn lost_gx_new_address_tried_first() {
    let t0 = Instant::now();
    let adopted = Adoption {
        portal_id: GX_A.into(),
        host: ip(20),
        port: 1883,
        tls: false,
        model: None,
        firmware: None,
    };
    let (mut machine, _) = Machine::new(config(), Some(adopted), None, t0);
    let (_, actions) = validate_next(&mut machine, gx(GX_A), t0);
    let endpoint = actions
        .iter()
        .find_map(|a| match a {
            Action::Emit(DiscoveryEvent::Use(e)) => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    machine.on_link(LinkReport::Connected(endpoint), t0);

    // After a router reboot nothing replies at the old address, so each try of it waits
    // out a connect timeout. Meanwhile the GX replies to an M-SEARCH from its new address.
    let t10 = t0 + Duration::from_secs(10);
    machine.on_link(LinkReport::Lost, t10);
    let (old, _) = machine.next_validation(t10);
    let old = old.expect("the old address is tried at once");
    assert_eq!(old.host, ip(20));
    machine.on_candidate(ssdp(45, GX_A, true), t10 + Duration::from_secs(1));
    machine.on_outcome(&old, Outcome::Unreachable, t10 + Duration::from_secs(5));

    // The next try of the old address is due, but the announced address goes first.
    let now = t10 + Duration::from_secs(6);
    machine.on_tick(now);
    let (next, _) = machine.next_validation(now);
    assert_eq!(next.as_ref().map(|c| c.host), Some(ip(45)));
    let actions = machine.on_outcome(&next.unwrap(), gx(GX_A), now);
    assert_eq!(used(&actions).as_deref(), Some(GX_A));
}

#[test]
fn link_auth_failure_holds_auth_required() {
    let t0 = Instant::now();
    let adopted = Adoption {
        portal_id: GX_A.into(),
        host: ip(20),
        port: 8883,
        tls: true,
        model: None,
        firmware: None,
    };
    let (mut machine, _) = Machine::new(config(), Some(adopted), None, t0);
    validate_next(&mut machine, gx(GX_A), t0);
    let actions = machine.on_link(LinkReport::AuthFailed, t0 + Duration::from_secs(1));
    assert_eq!(statuses(&actions), vec![BridgeStatus::AuthRequired]);
    assert!(machine.next_validation(t0 + Duration::from_secs(30)).0.is_none());
    machine.on_tick(t0 + Duration::from_secs(61));
    assert!(machine.next_validation(t0 + Duration::from_secs(61)).0.is_some());
}

#[test]
fn scan_off_only_configured_host() {
    let t0 = Instant::now();
    let config = MachineConfig { scan: false, ..config() };
    let mut configured = Candidate::new(ip(50), Method::Configured);
    configured.port = Some(1883);
    let (mut machine, _) = Machine::new(config, None, Some(configured), t0);
    assert_eq!(machine.scan_mode(), ScanMode::Off);
    let (host, _) = validate_next(&mut machine, gx(GX_A), t0);
    assert_eq!(host, ip(50));
    let actions = machine.on_tick(t0 + Duration::from_secs(5));
    assert_eq!(used(&actions).as_deref(), Some(GX_A));
}

#[test]
fn tls_gx_is_pinned_on_adoption() {
    let t0 = Instant::now();
    let (mut machine, _) = Machine::new(config(), None, None, t0);
    machine.on_candidate(ssdp(20, GX_A, true), t0);
    let fingerprint = crate::gx::tls::fingerprint(b"cert");
    let outcome = Outcome::Gx {
        portal_id: GX_A.into(),
        port: 8883,
        tls: true,
        fingerprint: Some(fingerprint),
    };
    validate_next(&mut machine, outcome, t0);
    let actions = machine.on_tick(t0 + Duration::from_secs(5));
    assert!(actions.iter().any(|a| matches!(a, Action::Pin { portal_id, fingerprint: f } if portal_id == GX_A && *f == fingerprint)));
}

#[test]
fn cached_address_closed_is_not_mqtt_off() {
    let t0 = Instant::now();
    let adopted = Adoption { portal_id: GX_A.into(), host: ip(20), port: 1883, tls: false, model: None, firmware: None };
    let (mut machine, _) = Machine::new(config(), Some(adopted), None, t0);

    // Another device now has the GX's old address and refuses MQTT.
    let (host, actions) = validate_next(&mut machine, Outcome::PortsClosed, t0);
    assert_eq!(host, ip(20));
    assert!(!statuses(&actions).contains(&BridgeStatus::MqttDisabled), "{actions:?}");
    assert_eq!(machine.phase(), &Phase::Searching);
    assert_eq!(machine.scan_mode(), ScanMode::Active);

    // The GX announces itself at its new address and is used there.
    machine.on_candidate(ssdp(44, GX_A, true), t0 + Duration::from_secs(2));
    let (_, actions) = validate_next(&mut machine, gx(GX_A), t0 + Duration::from_secs(3));
    assert_eq!(used(&actions).as_deref(), Some(GX_A));
}
