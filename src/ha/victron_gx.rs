//! Ignores Home Assistant's own discovery of the GX that this add-on bridges.
//!
//! Home Assistant's built-in `victron_gx` integration finds a GX by SSDP (manufacturer
//! `Victron Energy` with `X_MqttOnLan` `1`, per its manifest in Home Assistant 2026.11)
//! and invites the owner to add it. Accepting would create a second, duplicate set of
//! entities for the same GX. Its discovery flow takes the GX's portal id
//! (`X_VrmPortalId`) as the flow's unique id.
//!
//! So once the engine has identified the GX by its portal id, a task lists Core's
//! config flows in progress (`config_entries/flow/progress`) and ignores
//! (`config_entries/ignore_flow`) the discovery flows of handler `victron_gx` whose
//! unique id is that portal id. Core stores an ignored flow as a config entry with source
//! `ignore`, so the same GX is not offered again. The owner can undo it under Settings →
//! Devices & services → Ignored. Flows of other handlers, and `victron_gx` flows of other
//! GX devices (a neighbour's boat in a marina), are left alone.
//!
//! Home Assistant creates the flow some time after it finds the GX, and again after its
//! own restart if the owner removed the ignored entry. So each trigger (GX online, Home
//! Assistant's birth message) starts a sweep with follow-ups, and the task sweeps every
//! 10 minutes after that. A failed sweep is logged rate-limited and retried with backoff.
//! The engine only updates a `watch` value, and the task does its I/O asynchronously on
//! the same runtime, so a slow or broken Core does not delay the engine.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::ha::core_ws::{CoreWs, CoreWsError};
use crate::problems::Problems;
use crate::supervisor::Supervisor;

/// Home Assistant's integration domain for Victron GX devices.
pub const HANDLER: &str = "victron_gx";

/// Flow sources that mean Core found the device by itself. `victron_gx` uses only
/// `ssdp` in 2026.11. The others are the network discovery sources it could add.
const DISCOVERY_SOURCES: [&str; 4] = ["ssdp", "zeroconf", "dhcp", "integration_discovery"];

/// When the task sweeps, and how long one sweep may take.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Interval of the regular sweep once a GX is identified.
    pub period: Duration,
    /// Sweeps after each trigger, counted from the trigger. Core opens the flow only
    /// after it has seen the GX's SSDP answer and has finished starting, so a single
    /// sweep at the trigger could come too early.
    pub follow_ups: Vec<Duration>,
    /// First and largest delay between retries of a failed sweep.
    pub retry: (Duration, Duration),
    /// Limit of each step of a sweep: connect, login, each command.
    pub timeout: Duration,
}

impl Schedule {
    pub fn standard() -> Schedule {
        Schedule {
            period: Duration::from_secs(600),
            follow_ups: vec![
                Duration::ZERO,
                Duration::from_secs(60),
                Duration::from_secs(180),
            ],
            retry: (Duration::from_secs(10), Duration::from_secs(300)),
            timeout: Duration::from_secs(15),
        }
    }

    /// Divides every duration by `factor` (the `--time-scale` of tests). The timeout
    /// stays at 1 s or more so a loopback round trip always fits.
    pub fn scaled(factor: f64) -> Schedule {
        let standard = Schedule::standard();
        if factor <= 1.0 {
            return standard;
        }
        let s = |d: Duration| d.div_f64(factor);
        Schedule {
            period: s(standard.period),
            follow_ups: standard.follow_ups.iter().map(|d| s(*d)).collect(),
            retry: (s(standard.retry.0), s(standard.retry.1)),
            timeout: s(standard.timeout).max(Duration::from_secs(1)),
        }
    }
}

/// Decides when to sweep. Pure: the caller passes the time in and does the I/O.
#[derive(Debug)]
pub struct Planner {
    schedule: Schedule,
    follow_ups: Vec<Instant>,
    regular: Option<Instant>,
    retry_at: Option<Instant>,
    backoff: Backoff,
}

impl Planner {
    pub fn new(schedule: Schedule) -> Planner {
        let backoff = Backoff::new(schedule.retry.0, schedule.retry.1);
        Planner {
            schedule,
            follow_ups: Vec::new(),
            regular: None,
            retry_at: None,
            backoff,
        }
    }

    /// Plans the follow-up sweeps of a trigger at `now`. They replace those of earlier
    /// triggers, so a burst of triggers gives one series of sweeps.
    pub fn trigger(&mut self, now: Instant) {
        self.follow_ups = self.schedule.follow_ups.iter().map(|d| now + *d).collect();
        self.follow_ups.sort();
    }

    /// Returns the time of the next sweep, or `None` before the first trigger.
    pub fn next_due(&self) -> Option<Instant> {
        [
            self.follow_ups.first().copied(),
            self.regular,
            self.retry_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Records a sweep that ended at `now`. Drops the follow-ups it covered and plans
    /// the next regular sweep, plus a retry with backoff after a failure.
    pub fn finished(&mut self, now: Instant, succeeded: bool) {
        self.follow_ups.retain(|at| *at > now);
        self.regular = Some(now + self.schedule.period);
        if succeeded {
            self.retry_at = None;
            self.backoff.reset();
        } else {
            self.retry_at = Some(now + self.backoff.next_delay());
        }
    }
}

/// A config flow in progress, as `config_entries/flow/progress` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub flow_id: String,
    pub handler: String,
    /// `context.source`: `ssdp`, `zeroconf`, `reauth`, ...
    pub source: Option<String>,
    /// `context.unique_id`, which is the GX's portal id for `victron_gx`.
    pub unique_id: Option<String>,
}

/// The action for one flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Core's discovery of the GX that this add-on bridges, to be ignored.
    Ignore,
    /// A `victron_gx` discovery of a different GX, left alone and logged once.
    OtherGx,
    /// Another integration's flow, or a `victron_gx` flow that the owner started or
    /// must complete (reauth), left alone.
    Unrelated,
}

/// Reads the `result` of `config_entries/flow/progress`. Entries without a `flow_id`
/// or `handler` string are skipped.
pub fn parse_flows(result: &Value) -> Result<Vec<Flow>, String> {
    let list = result
        .as_array()
        .ok_or_else(|| format!("expected a list of flows, got {result}"))?;
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_string);
    Ok(list
        .iter()
        .filter_map(|entry| {
            let context = entry.get("context");
            Some(Flow {
                flow_id: text(entry.get("flow_id"))?,
                handler: text(entry.get("handler"))?,
                source: text(context.and_then(|c| c.get("source"))),
                unique_id: text(context.and_then(|c| c.get("unique_id"))),
            })
        })
        .collect())
}

/// Classifies `flow` for the GX with portal id `portal_id`. Portal ids are compared
/// without regard to case.
pub fn classify(flow: &Flow, portal_id: &str) -> Verdict {
    let discovered = flow
        .source
        .as_deref()
        .is_some_and(|s| DISCOVERY_SOURCES.contains(&s));
    if flow.handler != HANDLER || !discovered {
        return Verdict::Unrelated;
    }
    match &flow.unique_id {
        Some(id) if id.eq_ignore_ascii_case(portal_id) => Verdict::Ignore,
        _ => Verdict::OtherGx,
    }
}

/// Builds the title of the ignored entry, shown in Core's list of ignored integrations.
pub fn ignore_title(portal_id: &str) -> String {
    format!("Victron GX {portal_id} (bridged by the RoamCore Victron add-on)")
}

/// The engine's handle on the task. Its methods only update a `watch` value.
#[derive(Debug, Clone)]
pub struct Handle {
    triggers: watch::Sender<Triggers>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Triggers {
    portal_id: Option<String>,
    /// Counts triggers, so that a repeat with the same portal id still wakes the task.
    count: u64,
}

impl Handle {
    /// Reports that the GX with `portal_id` is connected, which starts a series of
    /// sweeps.
    pub fn gx_adopted(&self, portal_id: &str) {
        self.triggers.send_modify(|triggers| {
            triggers.portal_id = Some(portal_id.to_string());
            triggers.count += 1;
        });
    }

    /// Reports Home Assistant's birth message. Core has restarted and runs its discovery
    /// again, so this starts a series of sweeps, but only once a GX is identified.
    pub fn core_restarted(&self) {
        self.triggers.send_modify(|triggers| triggers.count += 1);
    }
}

/// Starts the task on the current tokio runtime with the standard schedule.
pub fn spawn(supervisor: Supervisor) -> Handle {
    spawn_with(supervisor, Schedule::standard())
}

/// Starts the task with `schedule`. It ends when the last [`Handle`] is dropped.
pub fn spawn_with(supervisor: Supervisor, schedule: Schedule) -> Handle {
    let (triggers, receiver) = watch::channel(Triggers::default());
    tokio::spawn(run(supervisor, schedule, receiver));
    Handle { triggers }
}

async fn run(supervisor: Supervisor, schedule: Schedule, mut receiver: watch::Receiver<Triggers>) {
    let timeout = schedule.timeout;
    let mut planner = Planner::new(schedule);
    let mut portal_id: Option<String> = None;
    let mut seen = Seen::default();
    let mut problems = Problems::new(Duration::from_secs(600));

    loop {
        let due = planner.next_due();
        let wait = async {
            match due {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = receiver.changed() => {
                if changed.is_err() {
                    return;
                }
                let triggers = receiver.borrow_and_update().clone();
                if triggers.portal_id.is_some() {
                    portal_id = triggers.portal_id;
                    planner.trigger(Instant::now());
                }
            }
            () = wait => {
                let Some(portal) = portal_id.as_deref() else { continue };
                let result = sweep(&supervisor, portal, timeout, &mut seen).await;
                let now = Instant::now();
                match result {
                    Ok(()) => {
                        if problems.clear("sweep") {
                            tracing::info!("Home Assistant's config flows can be read again");
                        }
                        planner.finished(now, true);
                    }
                    Err(err) => {
                        crate::warn_limited!(
                            problems,
                            "sweep",
                            now,
                            "cannot check Home Assistant for a duplicate victron_gx discovery of \
                             the GX ({err}); will retry"
                        );
                        planner.finished(now, false);
                    }
                }
            }
        }
    }
}

/// Flow ids already handled, so each is ignored and logged once. Only ids still listed
/// by Core are kept, which bounds the sets.
#[derive(Debug, Default)]
struct Seen {
    ignored: HashSet<String>,
    other_gx: HashSet<String>,
}

/// Runs one sweep: logs in, lists the flows, ignores ours and logs out.
async fn sweep(
    supervisor: &Supervisor,
    portal_id: &str,
    timeout: Duration,
    seen: &mut Seen,
) -> Result<(), CoreWsError> {
    let mut ws = CoreWs::through_supervisor(supervisor, timeout).await?;
    let result = handle_flows(&mut ws, portal_id, seen).await;
    ws.close().await;
    result
}

async fn handle_flows(
    ws: &mut CoreWs,
    portal_id: &str,
    seen: &mut Seen,
) -> Result<(), CoreWsError> {
    let listed = ws
        .request(json!({"type": "config_entries/flow/progress"}))
        .await?;
    let flows = parse_flows(&listed).map_err(|reason| CoreWsError::Protocol {
        url: ws.url().to_string(),
        reason,
    })?;
    let ids: HashSet<&str> = flows.iter().map(|flow| flow.flow_id.as_str()).collect();
    seen.ignored.retain(|id| ids.contains(id.as_str()));
    seen.other_gx.retain(|id| ids.contains(id.as_str()));

    for flow in &flows {
        match classify(flow, portal_id) {
            Verdict::Unrelated => {}
            Verdict::OtherGx => {
                if seen.other_gx.insert(flow.flow_id.clone()) {
                    tracing::info!(
                        flow_id = %flow.flow_id,
                        flow_portal_id = flow.unique_id.as_deref().unwrap_or(""),
                        portal_id,
                        "leaving Home Assistant's victron_gx discovery of another GX alone: \
                         this add-on bridges a different one"
                    );
                }
            }
            Verdict::Ignore if seen.ignored.contains(&flow.flow_id) => {
                tracing::debug!(flow_id = %flow.flow_id, "victron_gx flow still listed after it was ignored");
            }
            Verdict::Ignore => ignore(ws, flow, portal_id, seen).await?,
        }
    }
    Ok(())
}

async fn ignore(
    ws: &mut CoreWs,
    flow: &Flow,
    portal_id: &str,
    seen: &mut Seen,
) -> Result<(), CoreWsError> {
    let command = json!({
        "type": "config_entries/ignore_flow",
        "flow_id": flow.flow_id,
        "title": ignore_title(portal_id),
    });
    match ws.request(command).await {
        Ok(_) => {
            seen.ignored.insert(flow.flow_id.clone());
            tracing::info!(
                flow_id = %flow.flow_id,
                portal_id,
                source = flow.source.as_deref().unwrap_or(""),
                "ignored Home Assistant's victron_gx discovery of this GX: adding it would \
                 create a second, duplicate set of Victron entities (undo under Settings → \
                 Devices & services → Ignored)"
            );
            Ok(())
        }
        // The owner or Core finished the flow between the listing and now.
        Err(CoreWsError::Command { code, .. }) if code == "not_found" => {
            tracing::debug!(flow_id = %flow.flow_id, "victron_gx flow ended before it could be ignored");
            Ok(())
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests;
