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

pub use super::notice::{notice_for, notice_ids, Notice, SetupProblem};

/// Key of failed notification calls in the worker's [`Problems`] table.
const UPDATE_FAILED: &str = "notification_update";

/// A call the worker makes to bring Home Assistant to the wanted notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create(Notice),
    Dismiss(String),
    /// Dismisses a notice that an earlier run may have left. Usually there is none, so
    /// this is logged at debug only.
    DismissEarlier(String),
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
    /// The bridge has reached the GX or found a problem: what an earlier run showed can
    /// now be judged. Until then a left-over notice stays, so a problem that persists
    /// across a restart does not see its notice vanish and come back.
    settled: bool,
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
        if status == BridgeStatus::Connected {
            self.connected();
        }
        self.show(notice_for(status, detail));
    }

    /// Reports that the bridge reached the GX: notices an earlier run left can go.
    pub fn connected(&self) {
        self.wanted.send_if_modified(|wanted| !std::mem::replace(&mut wanted.settled, true));
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
        if wanted.settled || wanted.notice.is_some() {
            actions.extend(plan_earlier(&earlier, wanted.notice.as_ref()));
        }

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
