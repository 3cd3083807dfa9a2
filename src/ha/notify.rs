//! Persistent notifications in Home Assistant for problems the user must fix.
//!
//! The engine reports every bridge-status change to a [`Notifier`]. A status that waits
//! for the user ([`BridgeStatus::needs_user`]) becomes one persistent notification with a
//! stable id per problem (`roamcore_victron_<status>`), so a repeat replaces it instead of
//! stacking a second one. The notification is dismissed when the status clears. Without a Supervisor the
//! same words go to the log once per change.
//!
//! Reporting never blocks the engine: the wanted notice is put in a `watch` channel, which
//! holds only the newest value, so a burst of changes collapses into one, and a worker
//! task makes the HTTP calls. The add-on starts before Home Assistant Core (startup
//! `services`), so the first calls often fail with HTTP 502 from the Core proxy; the
//! worker retries with backoff until they succeed or the wanted notice changes.
//!
//! Home Assistant keeps a notification until it is dismissed or Core restarts, and an
//! add-on restart does neither. So the engine's worker starts by dismissing every fixed
//! notice id except the wanted one: a notice left by an earlier run goes once its problem
//! is fixed, even when the owner restarted the add-on to fix it.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::problems::Problems;
use crate::status::BridgeStatus;
use crate::supervisor::Supervisor;

/// Key of failed notification calls in the worker's [`Problems`] table.
const UPDATE_FAILED: &str = "notification_update";

/// One persistent notification: what the user sees in Home Assistant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Stable per problem, e.g. `roamcore_victron_mqtt_disabled`.
    pub id: String,
    pub title: String,
    /// Markdown, as Home Assistant renders it.
    pub message: String,
}

/// A call the worker makes to bring Home Assistant to the wanted notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create(Notice),
    Dismiss(String),
    /// Dismisses a notice that an earlier run may have left. Usually there is none, so
    /// this is logged at debug only.
    DismissEarlier(String),
}

/// Builds the notice for `status`, or `None` when the status needs nothing from the user.
/// `detail` is the bridge's own sentence about the case (GX address and portal id, the GX
/// devices seen, the invalid options); it becomes a paragraph of its own and may be empty.
pub fn notice_for(status: BridgeStatus, detail: &str) -> Option<Notice> {
    if !status.needs_user() {
        return None;
    }
    let detail = detail.trim();
    let (title, message) = match status {
        BridgeStatus::MqttDisabled => (
            "Victron GX: MQTT access is off",
            format!(
                "RoamCore Victron found a Victron GX, but MQTT access is switched off on \
                 it, so no values can be read.\n\n\
                 On the GX (its screen or Remote Console), open **Settings → Integrations → \
                 MQTT Access** and switch it on. On Venus OS before 3.50 the switch is under \
                 **Settings → Services**. The bridge connects by itself once MQTT is on; \
                 nothing needs restarting."
            ),
        ),
        BridgeStatus::AuthRequired => (
            "Victron GX: password needed",
            format!(
                "The Victron GX rejected RoamCore Victron's login. Its local network \
                 security profile (Secured or Weak) protects MQTT with the GX password.\n\n\
                 Open the RoamCore Victron add-on's **Configuration** tab, enter the GX \
                 password (the one for Remote Console and the GX web page) as **GX \
                 password**, switch on **Use TLS** if the profile is Secured, save and \
                 restart the add-on. The profile is shown on the GX under **Settings → \
                 General → Access & Security**."
            ),
        ),
        BridgeStatus::TlsUntrusted => (
            "Victron GX: certificate changed",
            format!(
                "The Victron GX presented a TLS certificate that differs from the one \
                 RoamCore Victron stored when it first connected, so the bridge does not \
                 trust it and stays disconnected.\n\n\
                 This is expected after a factory reset or a replacement of the GX. It can \
                 also mean that another device answers at the GX's address. If you reset or \
                 replaced the GX, switch on the add-on option **Trust the GX's new \
                 certificate** once and restart the add-on."
            ),
        ),
        BridgeStatus::MultipleGx => (
            "Victron GX: more than one found",
            format!(
                "RoamCore Victron sees more than one Victron GX on the network and will \
                 not guess which one belongs to this vehicle.\n\n\
                 Enter the portal id of yours as **GX portal id** in the RoamCore Victron \
                 add-on's **Configuration** tab, save and restart the add-on. The GX shows \
                 its portal id under **Settings → VRM**, and it is printed on its label."
            ),
        ),
        BridgeStatus::ConfigError => (
            "RoamCore Victron: invalid option",
            format!(
                "Some options of the RoamCore Victron add-on are invalid and were ignored.\n\n\
                 Correct them in the add-on's **Configuration** tab, save and restart the \
                 add-on. The add-on log names each invalid option."
            ),
        ),
        _ => return None,
    };
    let message = if detail.is_empty() { message } else { format!("{message}\n\n**What the bridge reports:** {detail}") };
    Some(Notice {
        id: format!("roamcore_victron_{}", status.as_str()),
        title: title.to_string(),
        message,
    })
}

/// A `config_error` that comes from where the options point the bridge, not from an
/// invalid value. Each case has its own notice under the `config_error` id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupProblem {
    /// The broker at `host` belongs to the GX `found`, but the bridge is set to use the
    /// GX `expected` (the `portal_id` option, or the GX adopted before).
    WrongGx { host: String, found: String, expected: String },
    /// Scanning is off and no GX address is set or remembered, so there is no GX to use.
    NoGxToFind,
}

impl SetupProblem {
    /// Builds the notice for this problem. Its text names everything the owner needs, so
    /// no detail paragraph is added.
    pub fn notice(&self) -> Notice {
        let (title, message) = match self {
            SetupProblem::WrongGx { host, found, expected } => (
                "Victron GX: a different GX answers",
                format!(
                    "The Victron GX at {host} has portal id **{found}**, but RoamCore Victron \
                     is set to use the GX with portal id **{expected}**, so it does not read \
                     this one.\n\n\
                     If the GX at {host} is yours (for example a replacement), enter \
                     **{found}** as **GX portal id** in the RoamCore Victron add-on's \
                     **Configuration** tab. Otherwise set **GX address** to the address of \
                     the GX {expected}. Then save and restart the add-on."
                ),
            ),
            SetupProblem::NoGxToFind => (
                "Victron GX: no address and no search",
                "**Search the network** is switched off and no **GX address** is set, so \
                 RoamCore Victron has no GX to connect to.\n\n\
                 In the RoamCore Victron add-on's **Configuration** tab, enter the GX's \
                 address (for example 192.168.1.20 or venus.local) as **GX address**, or \
                 switch **Search the network** back on. Then save and restart the add-on."
                    .to_string(),
            ),
        };
        Notice {
            id: format!("roamcore_victron_{}", BridgeStatus::ConfigError.as_str()),
            title: title.to_string(),
            message,
        }
    }
}

/// Returns the id of every notice that [`notice_for`] can build, one per status that
/// waits for the user.
pub fn notice_ids() -> Vec<String> {
    BridgeStatus::ALL
        .into_iter()
        .filter(|status| status.needs_user())
        .map(|status| format!("roamcore_victron_{}", status.as_str()))
        .collect()
}

/// Lists the dismissals of the notices an earlier run may have left (`earlier`), except
/// the `wanted` one, which [`plan`] creates instead.
pub fn plan_earlier(earlier: &[String], wanted: Option<&Notice>) -> Vec<Action> {
    earlier
        .iter()
        .filter(|id| wanted.is_none_or(|notice| notice.id != **id))
        .map(|id| Action::DismissEarlier(id.clone()))
        .collect()
}

/// Lists the calls that turn the `shown` notice into the `wanted` one: dismiss a notice
/// that is no longer wanted, create a new or changed one, nothing when they are equal.
pub fn plan(shown: Option<&Notice>, wanted: Option<&Notice>) -> Vec<Action> {
    match (shown, wanted) {
        (None, None) => Vec::new(),
        (Some(old), None) => vec![Action::Dismiss(old.id.clone())],
        (None, Some(new)) => vec![Action::Create(new.clone())],
        (Some(old), Some(new)) if old == new => Vec::new(),
        (Some(old), Some(new)) if old.id == new.id => vec![Action::Create(new.clone())],
        (Some(old), Some(new)) => vec![Action::Dismiss(old.id.clone()), Action::Create(new.clone())],
    }
}

/// The engine's handle for reporting status changes. Its methods never wait.
#[derive(Debug, Clone)]
pub struct Notifier {
    wanted: watch::Sender<Wanted>,
}

/// Retry, logging and start options of the notifier's worker.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// First and largest delay between attempts of a failed call.
    pub retry: (Duration, Duration),
    /// Interval of the repeat-count line while calls keep failing.
    pub problem_summary: Duration,
    /// Dismissal of every other notice id once Core accepts calls, for the notices that an
    /// earlier run may have left.
    pub dismiss_earlier: bool,
}

/// The notice the engine wants shown, and a counter that forces a re-send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Wanted {
    notice: Option<Notice>,
    refresh: u64,
}

impl Notifier {
    /// Starts the worker task on the current tokio runtime. With `supervisor` = `None`
    /// (not running as an add-on) notices are only logged. `retry` is the first and
    /// largest delay between attempts of a failed call. Notices of an earlier run are
    /// left alone, and failures are counted every 10 minutes.
    pub fn spawn(supervisor: Option<Supervisor>, retry: (Duration, Duration)) -> Notifier {
        let options = WorkerOptions {
            retry,
            problem_summary: Duration::from_secs(600),
            dismiss_earlier: false,
        };
        Notifier::spawn_with(supervisor, options)
    }

    /// Starts the worker task like [`Notifier::spawn`], with all of its options.
    pub fn spawn_with(supervisor: Option<Supervisor>, options: WorkerOptions) -> Notifier {
        let (wanted, receiver) = watch::channel(Wanted::default());
        tokio::spawn(run_worker(supervisor, receiver, options));
        Notifier { wanted }
    }

    /// Reports the current bridge status. Cheap and non-blocking; call it on every change
    /// (repeats with the same words cost nothing).
    pub fn status_changed(&self, status: BridgeStatus, detail: &str) {
        self.show(notice_for(status, detail));
    }

    /// Reports the notice to show, or `None` for none, like [`Notifier::status_changed`]
    /// for a notice built elsewhere (a [`SetupProblem`]).
    pub fn show(&self, notice: Option<Notice>) {
        self.wanted.send_if_modified(|wanted| {
            if wanted.notice == notice {
                return false;
            }
            wanted.notice = notice;
            true
        });
    }

    /// Sends the current notice again. Home Assistant keeps persistent notifications in
    /// memory only, so call this after Core restarts (its MQTT birth message).
    pub fn refresh(&self) {
        self.wanted.send_modify(|wanted| wanted.refresh += 1);
    }
}

async fn run_worker(
    supervisor: Option<Supervisor>,
    mut receiver: watch::Receiver<Wanted>,
    options: WorkerOptions,
) {
    let mut shown: Option<Notice> = None;
    let mut refreshed = 0u64;
    let mut backoff = Backoff::new(options.retry.0, options.retry.1);
    let mut problems = Problems::new(options.problem_summary);
    let mut failures = 0u64;
    // Without a Supervisor there is no Home Assistant to clean up.
    let mut earlier = if options.dismiss_earlier && supervisor.is_some() {
        notice_ids()
    } else {
        Vec::new()
    };

    loop {
        let wanted = receiver.borrow_and_update().clone();
        let mut changes = plan(shown.as_ref(), wanted.notice.as_ref());
        if changes.is_empty() && wanted.refresh != refreshed {
            if let Some(notice) = &wanted.notice {
                changes.push(Action::Create(notice.clone()));
            }
        }
        // The wanted notice first: it is what the owner needs to see.
        let mut actions = changes;
        actions.extend(plan_earlier(&earlier, wanted.notice.as_ref()));

        let mut failed = false;
        for action in &actions {
            if let Err(err) = perform(supervisor.as_ref(), action).await {
                failures += 1;
                crate::warn_limited!(
                    problems,
                    UPDATE_FAILED,
                    Instant::now(),
                    "cannot update the notification in Home Assistant ({}): {err}; retrying",
                    action_name(action)
                );
                failed = true;
                break;
            }
            match action {
                Action::Create(notice) => {
                    earlier.retain(|id| *id != notice.id);
                    shown = Some(notice.clone());
                }
                Action::Dismiss(_) => shown = None,
                Action::DismissEarlier(id) => earlier.retain(|earlier_id| earlier_id != id),
            }
        }

        if failed {
            // Retry after a delay, or at once when the engine wants something else.
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => continue,
                changed = receiver.changed() => if changed.is_err() { return } else { continue },
            }
        }
        if failures > 0 {
            tracing::info!(
                failed_calls = failures,
                "notification update in Home Assistant succeeded after failed attempts"
            );
            problems.clear(UPDATE_FAILED);
            failures = 0;
        }
        backoff.reset();
        refreshed = wanted.refresh;
        if receiver.changed().await.is_err() {
            return;
        }
    }
}

fn action_name(action: &Action) -> String {
    match action {
        Action::Create(notice) => format!("create {}", notice.id),
        Action::Dismiss(id) | Action::DismissEarlier(id) => format!("dismiss {id}"),
    }
}

async fn perform(
    supervisor: Option<&Supervisor>,
    action: &Action,
) -> Result<(), crate::supervisor::SupervisorError> {
    match (supervisor, action) {
        (Some(supervisor), Action::Create(notice)) => {
            supervisor.create_notification(&notice.id, &notice.title, &notice.message).await?;
            tracing::info!(notification_id = %notice.id, "notification created in Home Assistant");
        }
        (Some(supervisor), Action::Dismiss(id)) => {
            supervisor.dismiss_notification(id).await?;
            tracing::info!(notification_id = %id, "notification dismissed in Home Assistant");
        }
        (None, Action::Create(notice)) => {
            tracing::warn!(
                notification_id = %notice.id,
                "{}: {}",
                notice.title,
                one_line(&notice.message)
            );
        }
        (Some(supervisor), Action::DismissEarlier(id)) => {
            supervisor.dismiss_notification(id).await?;
            tracing::debug!(notification_id = %id, "notification of an earlier run dismissed, if any");
        }
        (None, Action::Dismiss(id)) => {
            tracing::info!(notification_id = %id, "problem solved");
        }
        (None, Action::DismissEarlier(_)) => {}
    }
    Ok(())
}

/// Removes Markdown emphasis and line breaks from a message, for a log line.
fn one_line(message: &str) -> String {
    message.replace("**", "").split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_status_has_a_notice() {
        for status in BridgeStatus::ALL {
            let notice = notice_for(status, "10.0.0.5, portal c0619ab0d0e1");
            assert_eq!(notice.is_some(), status.needs_user(), "{status}");
            if let Some(notice) = notice {
                assert_eq!(notice.id, format!("roamcore_victron_{}", status.as_str()));
                assert!(notice.message.contains("10.0.0.5"), "{status}: detail missing");
                assert!(!notice.title.is_empty());
            }
        }
    }

    #[test]
    fn notice_without_detail_reads_cleanly() {
        let notice = notice_for(BridgeStatus::MqttDisabled, "").unwrap();
        assert!(notice.message.starts_with("RoamCore Victron found a Victron GX, but"));
        let notice = notice_for(BridgeStatus::ConfigError, " ").unwrap();
        assert!(notice.message.contains("were ignored.\n"), "{}", notice.message);
    }

    #[test]
    fn plan_cases() {
        let a = notice_for(BridgeStatus::MqttDisabled, "x").unwrap();
        let a2 = notice_for(BridgeStatus::MqttDisabled, "y").unwrap();
        let b = notice_for(BridgeStatus::AuthRequired, "x").unwrap();

        assert_eq!(plan(None, None), vec![]);
        assert_eq!(plan(None, Some(&a)), vec![Action::Create(a.clone())]);
        assert_eq!(plan(Some(&a), Some(&a)), vec![]);
        assert_eq!(plan(Some(&a), Some(&a2)), vec![Action::Create(a2.clone())]);
        assert_eq!(plan(Some(&a), None), vec![Action::Dismiss(a.id.clone())]);
        assert_eq!(
            plan(Some(&a), Some(&b)),
            vec![Action::Dismiss(a.id.clone()), Action::Create(b.clone())]
        );
    }

    #[test]
    fn wrong_gx_notice_names_both_portals() {
        let problem = SetupProblem::WrongGx {
            host: "192.0.2.10:1883".into(),
            found: "c0619ab0d0e1".into(),
            expected: "c0619ab0aaaa".into(),
        };
        let notice = problem.notice();
        assert_eq!(notice.id, "roamcore_victron_config_error");
        assert!(!notice.title.contains("invalid"), "{}", notice.title);
        assert!(notice.message.contains("192.0.2.10:1883"), "{}", notice.message);
        assert!(notice.message.contains("**c0619ab0d0e1**"), "{}", notice.message);
        assert!(notice.message.contains("**c0619ab0aaaa**"), "{}", notice.message);
        assert!(notice.message.contains("**GX portal id**"), "{}", notice.message);
        assert!(!notice.message.contains("ignored"), "{}", notice.message);
    }

    #[test]
    fn no_gx_notice_names_both_options() {
        let notice = SetupProblem::NoGxToFind.notice();
        assert_eq!(notice.id, "roamcore_victron_config_error");
        assert!(!notice.title.contains("invalid"), "{}", notice.title);
        assert!(notice.message.contains("**GX address**"), "{}", notice.message);
        assert!(notice.message.contains("**Search the network**"), "{}", notice.message);
        assert!(!notice.message.contains("ignored"), "{}", notice.message);
    }

    #[test]
    fn notice_ids_cover_user_statuses() {
        let ids = notice_ids();
        assert_eq!(ids.len(), 5, "{ids:?}");
        for status in BridgeStatus::ALL.into_iter().filter(|status| status.needs_user()) {
            let notice = notice_for(status, "").unwrap();
            assert!(ids.contains(&notice.id), "{} missing from {ids:?}", notice.id);
        }
    }

    #[test]
    fn plan_earlier_keeps_wanted() {
        let earlier = notice_ids();
        let wanted = notice_for(BridgeStatus::AuthRequired, "x").unwrap();

        let all = plan_earlier(&earlier, None);
        assert_eq!(all.len(), earlier.len());
        assert!(all.contains(&Action::DismissEarlier("roamcore_victron_mqtt_disabled".into())));

        let others = plan_earlier(&earlier, Some(&wanted));
        assert_eq!(others.len(), earlier.len() - 1);
        assert!(!others.contains(&Action::DismissEarlier(wanted.id.clone())));

        assert_eq!(plan_earlier(&[], Some(&wanted)), vec![]);
    }

    #[test]
    fn one_line_strips_markdown() {
        assert_eq!(one_line("a **b**\n\nc  d"), "a b c d");
    }
}
