//! Timers and reports from the GX link: the settle window before adoption, checks of
//! held hosts, tries of the last known address, and what the link tells discovery.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{Action, Machine, Phase};
use crate::discovery::adoption::Adoption;
use crate::discovery::candidate::{Candidate, Method};
use crate::discovery::LinkReport;

impl Machine {
    /// Advances timers: adoption after the settle window, checks of held hosts, and
    /// tries of the last known address while searching.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if matches!(self.phase, Phase::Validating(_)) {
            return actions;
        }

        if self.phase == Phase::Searching && !self.unadopted.is_empty() {
            let first = self.first_gx_at.unwrap_or(now);
            let queue_done = !self.queue.iter().any(|c| self.may_validate(c, now));
            let waited = now >= first + self.config.settle;
            let waited_long = now >= first + self.config.settle * 4;
            if (waited && queue_done) || waited_long {
                self.settle(&mut actions);
                return actions;
            }
        }

        if let Some(at) = self.hold_retry_at {
            if now >= at {
                let held = match self.phase {
                    Phase::MqttDisabled(h) | Phase::AuthRequired(h) | Phase::TlsUntrusted(h) => {
                        Some(h)
                    }
                    _ => None,
                };
                self.hold_retry_at = None;
                if let Some(host) = held {
                    let candidate = self.held_candidate(host);
                    self.retry_at.remove(&host);
                    self.push(candidate, now);
                    let wait = match self.phase {
                        Phase::AuthRequired(_) => self.config.auth_retry,
                        Phase::TlsUntrusted(_) => self.wait(300),
                        _ => self.config.recheck,
                    };
                    self.hold_retry_at = Some(now + wait);
                }
            }
        }

        if self.phase == Phase::Searching {
            if let Some((at, tries)) = self.cached_retry {
                if now >= at {
                    self.queue_cached(now);
                    let delay = self.retry_delay(tries + 1);
                    self.cached_retry = Some((now + delay, tries + 1));
                }
            }
        }
        actions
    }

    /// Returns what is known about a held host. The adopted GX's address keeps its portal
    /// id, so a check of it is never mistaken for an unrelated broker.
    fn held_candidate(&self, host: IpAddr) -> Candidate {
        if let Some(known) = self.known.get(&host) {
            return known.clone();
        }
        self.cached_candidate()
            .filter(|c| c.host == host)
            .unwrap_or_else(|| Candidate::new(host, Method::Cached))
    }

    pub(super) fn retry_delay(&self, tries: u32) -> Duration {
        let (first, max) = self.config.retry;
        first.saturating_mul(1u32 << tries.min(16)).min(max)
    }

    /// Takes a report from the GX link.
    pub fn on_link(&mut self, report: LinkReport, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match report {
            LinkReport::Connected(endpoint) => {
                let adoption = Adoption::from_endpoint(&endpoint);
                if self.adopted.as_ref() != Some(&adoption) {
                    actions.push(Action::Persist(adoption.clone()));
                    self.adopted = Some(adoption);
                }
                self.phase = Phase::Connected(endpoint);
                self.resume = Phase::Searching;
                self.queue.clear();
            }
            LinkReport::Lost => {
                // A hold already checks the host on its own timer and keeps the status
                // the user must act on.
                if self.is_holding() {
                    return actions;
                }
                // The engine logs the loss, and the status line shows what follows.
                let last = self.adopted.as_ref().map(|a| a.host);
                tracing::debug!(last = ?last, "the GX link was lost; searching again, last address first");
                self.phase = Phase::Searching;
                self.resume = Phase::Searching;
                self.start_cached_retry(now);
                self.emit_status(&mut actions);
            }
            LinkReport::AuthFailed => {
                if let Some(host) = self.current_host() {
                    self.rejected_at.insert(host, now);
                    self.phase = Phase::AuthRequired(host);
                    self.hold_retry_at = Some(now + self.config.auth_retry);
                    self.emit_status(&mut actions);
                }
            }
            LinkReport::TlsUntrusted => {
                if let Some(host) = self.current_host() {
                    self.phase = Phase::TlsUntrusted(host);
                    self.hold_retry_at = Some(now + self.wait(300));
                    self.emit_status(&mut actions);
                }
            }
        }
        actions
    }

    fn is_holding(&self) -> bool {
        let phase = match &self.phase {
            Phase::Validating(_) => &self.resume,
            phase => phase,
        };
        matches!(phase, Phase::MqttDisabled(_) | Phase::AuthRequired(_) | Phase::TlsUntrusted(_))
    }

    pub(super) fn current_host(&self) -> Option<IpAddr> {
        match &self.phase {
            Phase::Connected(e) | Phase::Connecting(e) => Some(e.host),
            _ => self.adopted.as_ref().map(|a| a.host),
        }
    }
}
