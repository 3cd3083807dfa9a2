//! mDNS: resolves `venus.local`, the host name Avahi announces on every GX, and
//! `venus-<serial>.local`, the alias newer Venus OS builds add.
//!
//! mdns-sd (0.21) does not recover after an interface goes down and up, and binds
//! container bridges (`docker0`, `hassio`, `veth*`) unless they are disabled. So the daemon is
//! created with those interfaces disabled, dropped whenever the host's addresses change,
//! and created anew. It runs only while searching; while connected nothing is queried.

use std::net::IpAddr;

use mdns_sd::{HostnameResolutionEvent, IfKind, IfPredicate, ServiceDaemon};
use tokio::sync::mpsc;

use super::candidate::{Candidate, Method};

/// Host names tried on every search. Avahi renames the second GX on a LAN to
/// `venus-2.local`.
pub const DEFAULT_NAMES: [&str; 2] = ["venus.local.", "venus-2.local."];

/// A running mDNS daemon with its hostname queries.
pub struct Resolver {
    daemon: ServiceDaemon,
    names: Vec<String>,
    found: mpsc::UnboundedSender<Candidate>,
}

/// Builds the fully qualified mDNS name for a GX serial (`HQ2234ABCDE` -> `venus-hq2234abcde.local.`).
pub fn name_for_serial(serial: &str) -> String {
    format!("venus-{}.local.", serial.to_ascii_lowercase())
}

impl Resolver {
    /// Starts the daemon on the LAN interfaces (IPv4 only) and queries the default names.
    pub fn start(found: mpsc::UnboundedSender<Candidate>) -> anyhow::Result<Resolver> {
        let daemon = ServiceDaemon::new()
            .map_err(|e| anyhow::anyhow!("starting the mDNS daemon failed: {e}"))?;
        let skip =
            IfPredicate::new(|interface| super::policy::is_container_interface(&interface.name));
        let disable = daemon
            .disable_interface(IfKind::Predicate(skip))
            .and_then(|_| daemon.disable_interface(IfKind::IPv6))
            .and_then(|_| daemon.disable_interface(IfKind::LoopbackV4));
        if let Err(err) = disable {
            let _ = daemon.shutdown();
            anyhow::bail!("disabling container interfaces in mDNS failed: {err}");
        }
        let mut resolver = Resolver { daemon, names: Vec::new(), found };
        for name in DEFAULT_NAMES {
            resolver.resolve(name);
        }
        Ok(resolver)
    }

    /// Queries `name` (ending in `.local.`) until the resolver stops; each address found
    /// becomes a candidate.
    pub fn resolve(&mut self, name: &str) {
        if self.names.iter().any(|n| n == name) {
            return;
        }
        let receiver = match self.daemon.resolve_hostname(name, None) {
            Ok(receiver) => receiver,
            Err(err) => {
                tracing::debug!(name, error = %err, "mDNS query failed");
                return;
            }
        };
        self.names.push(name.to_string());
        let found = self.found.clone();
        let label = name.trim_end_matches('.').to_string();
        tokio::spawn(async move {
            while let Ok(event) = receiver.recv_async().await {
                let HostnameResolutionEvent::AddressesFound(_, addrs) = event else { continue };
                for addr in addrs {
                    let ip: IpAddr = addr.to_ip_addr();
                    if !ip.is_ipv4() {
                        continue;
                    }
                    tracing::debug!(name = %label, %ip, "mDNS response");
                    let mut candidate = Candidate::new(ip, Method::Mdns);
                    candidate.evidence = Some(format!("mDNS name {label}"));
                    if found.send(candidate).is_err() {
                        return;
                    }
                }
            }
        });
    }

    /// Stops the daemon and its thread.
    pub fn stop(self) {
        if let Err(err) = self.daemon.shutdown() {
            tracing::debug!(error = %err, "mDNS daemon was already stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_names() {
        assert_eq!(name_for_serial("HQ2234ABCDE"), "venus-hq2234abcde.local.");
    }
}
