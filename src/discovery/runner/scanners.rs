//! The scanners of the runner: SSDP sockets and announcements, the mDNS resolver, M-SEARCH
//! pacing, and the ARP-then-sweep pass over the attached subnets.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Runner, Trace, DESCRIPTION_PACKETS, MSEARCH_INTERVAL, SWEEP_GRACE, SWEEP_TIMEOUT};
use crate::discovery::candidate::{Candidate, Method};
use crate::discovery::machine::Phase;
use crate::discovery::netif;
use crate::discovery::policy::{self, ScanMode, SubnetVerdict};
use crate::discovery::ssdp::{self, Announcement};
use crate::discovery::{mdns, sweep};

impl Runner {
    pub(super) fn start_mdns(&mut self) {
        if self.mdns.is_some() {
            return;
        }
        match mdns::Resolver::start(self.candidates_tx.clone()) {
            Ok(resolver) => self.mdns = Some(resolver),
            Err(err) => tracing::warn!(error = %err, "mDNS is unavailable; searching without it"),
        }
    }

    pub(super) fn open_ssdp(&mut self) {
        let lan = netif::lan_addrs(&self.addrs);
        if lan.is_empty() {
            return;
        }
        let sockets = std::sync::Arc::new(ssdp::Sockets::open(&lan));
        let mut tasks = Vec::new();
        for index in 0..sockets.search.len() {
            tasks.push(spawn_receiver(sockets.clone(), Some(index), self.announcements_tx.clone()));
        }
        if sockets.notify.is_some() {
            tasks.push(spawn_receiver(sockets.clone(), None, self.announcements_tx.clone()));
        }
        self.ssdp = Some(sockets);
        self.ssdp_tasks = tasks;
    }

    pub(super) fn close_ssdp(&mut self) {
        for task in self.ssdp_tasks.drain(..) {
            task.abort();
        }
        self.ssdp = None;
    }

    pub(super) fn on_announcement(&mut self, announcement: Announcement, source: IpAddr) {
        if !announcement.is_interesting() {
            return;
        }
        let host = ssdp::location_host(&announcement.location, source);
        // A GX held because MQTT access is off: simple-upnpd restarts when the owner
        // switches MQTT on, and only its description carries the new X_MqttOnLan. That
        // fetch is the one HTTP exchange allowed outside a search, at most once a minute
        // per description URL and boot id (the description cache).
        let mqtt_off_host = matches!(self.machine.phase(), Phase::MqttDisabled(h) if *h == host);
        if self.mode == Some(ScanMode::Passive) && !mqtt_off_host {
            // No HTTP while connected: the UDN in the USN carries the portal id.
            if let Some(portal) = portal_from_usn(&announcement.usn) {
                let mut candidate = Candidate::new(host, Method::Ssdp);
                candidate.portal_hint = Some(portal);
                candidate.evidence = Some("SSDP announcement with a Victron UDN".into());
                let _ = self.candidates_tx.send(candidate);
            }
            return;
        }
        if !self.descriptions.should_fetch(&announcement, Instant::now()) {
            return;
        }
        let budget = self.budget.clone();
        let found = self.candidates_tx.clone();
        let active = self.active.clone();
        tokio::spawn(async move {
            budget.take(DESCRIPTION_PACKETS).await;
            if !mqtt_off_host && !active.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            match ssdp::fetch_description(&announcement.location, Duration::from_secs(3)).await {
                Ok(description) => {
                    if let Some(candidate) = description.to_candidate(host) {
                        let _ = found.send(candidate);
                    }
                }
                Err(err) => tracing::debug!(error = %format!("{err:#}"), "SSDP description"),
            }
        });
    }

    pub(super) async fn search_step(&mut self, now: Instant) {
        if let Some((at, interval)) = self.next_msearch {
            if now >= at {
                if let Some(sockets) = &self.ssdp {
                    let interfaces = sockets.search.len() as f64;
                    self.budget.take(interfaces).await;
                    sockets.search().await;
                }
                let next = (interval * 2).min(MSEARCH_INTERVAL.1);
                self.next_msearch = Some((now + interval, next));
            }
        }

        if let Some(done) = self.sweep_done_rx.as_mut() {
            if done.try_recv().is_ok() {
                self.sweep_done_rx = None;
                self.sweep_task = None;
                self.schedule.finished(now);
            }
        }
        if self.config.scan && self.schedule.may_start(now, SWEEP_GRACE) {
            self.start_sweep(now);
        }
    }

    /// Lists each subnet that could be swept with its verdict.
    pub(super) fn sweep_plan(&self) -> Vec<(crate::config::Ipv4Net, Result<(), String>)> {
        let lan = netif::lan_addrs(&self.addrs);
        let mut plan = Vec::new();
        if self.config.subnets.is_empty() {
            for addr in &self.addrs {
                let net = addr.net();
                let verdict =
                    match policy::judge_subnet(&net, &addr.interface, self.config.large_subnets) {
                        SubnetVerdict::Sweep => Ok(()),
                        other => Err(format!("{other:?} on {}", addr.interface)),
                    };
                plan.push((net, verdict));
            }
        } else {
            for net in &self.config.subnets {
                let attached =
                    lan.iter().find(|a| a.net().contains(net.network()) && a.prefix <= net.prefix);
                let verdict = match attached {
                    None => Err("not directly attached".to_string()),
                    Some(addr) => {
                        match policy::judge_subnet(net, &addr.interface, self.config.large_subnets)
                        {
                            SubnetVerdict::Sweep => Ok(()),
                            other => Err(format!("{other:?}")),
                        }
                    }
                };
                plan.push((*net, verdict));
            }
        }
        plan
    }

    pub(super) fn start_sweep(&mut self, now: Instant) {
        let own: Vec<Ipv4Addr> = self.addrs.iter().map(|a| a.addr).collect();
        let ignore = self.config.ignore.clone();
        let mut targets = Vec::new();
        let mut nets = Vec::new();
        for (net, verdict) in self.sweep_plan() {
            match verdict {
                Ok(()) => {
                    let hosts = policy::sweep_targets(&net, &own);
                    self.emit_trace(Trace::SweepStarted {
                        subnet: net.to_string(),
                        hosts: hosts.len(),
                    });
                    nets.push(net);
                    targets.extend(hosts);
                }
                Err(reason) => {
                    // A subnet the user listed is worth a warning; the automatic ones are not.
                    let configured = self.config.subnets.contains(&net);
                    if configured && self.skipped_subnets.insert(net.to_string()) {
                        tracing::warn!(subnet = %net, %reason, "a subnet in scan_subnets is not swept: it is not directly attached to this host (or is larger than /24 without scan_large_subnets)");
                    } else {
                        tracing::debug!(subnet = %net, %reason, "subnet not swept");
                    }
                    self.emit_trace(Trace::SweepSkipped { subnet: net.to_string(), reason });
                }
            }
        }
        targets.retain(|ip| !ignore.contains(&IpAddr::V4(*ip)));
        self.schedule.started(now);
        let budget = self.budget.clone();
        let found = self.candidates_tx.clone();
        let trace = self.trace.clone();
        let lan: Vec<String> =
            netif::lan_addrs(&self.addrs).into_iter().map(|a| a.interface).collect();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        self.sweep_done_rx = Some(done_rx);
        self.sweep_task = Some(tokio::spawn(async move {
            let started = Instant::now();
            // The neighbour table first: known hosts cost no ARP, Victron's MACs first.
            let neighbours: Vec<_> = crate::discovery::arp::read()
                .into_iter()
                .filter(|n| lan.contains(&n.interface) && nets.iter().any(|net| net.contains(n.ip)))
                .collect();
            let mut answered = 0;
            for neighbour in &neighbours {
                if neighbour.is_victron() {
                    let mut candidate =
                        Candidate::new(IpAddr::V4(neighbour.ip), Method::ArpVictron);
                    candidate.evidence = Some("MAC address in Victron's block C0:61:9A:B".into());
                    let _ = found.send(candidate);
                }
            }
            let known: Vec<Ipv4Addr> =
                neighbours.iter().filter(|n| !n.is_victron()).map(|n| n.ip).collect();
            answered += sweep::sweep(
                known.clone(),
                Method::Arp,
                budget.clone(),
                SWEEP_TIMEOUT,
                found.clone(),
            )
            .await;
            let rest: Vec<Ipv4Addr> =
                targets.into_iter().filter(|ip| !neighbours.iter().any(|n| n.ip == *ip)).collect();
            answered += sweep::sweep(rest, Method::Sweep, budget, SWEEP_TIMEOUT, found).await;
            let elapsed = started.elapsed();
            tracing::debug!(answered, ?elapsed, "sweep finished");
            if let Some(trace) = trace {
                let _ = trace.send(Trace::SweepFinished { answered, elapsed });
            }
            let _ = done_tx.send(());
        }));
    }
}

/// Extracts the portal id from a simple-upnpd USN (`uuid:com.victronenergy.ccgx.C0:61:9A:B0:D0:E1::...`).
pub fn portal_from_usn(usn: &str) -> Option<String> {
    let rest = usn.split("com.victronenergy.ccgx.").nth(1)?;
    let udn = rest.split("::").next()?;
    let portal: String = udn.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    crate::config::validate_portal_id(&portal).ok().map(|_| portal)
}

pub(super) fn spawn_receiver(
    sockets: std::sync::Arc<ssdp::Sockets>,
    index: Option<usize>,
    tx: mpsc::UnboundedSender<(Announcement, IpAddr)>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let socket = match index {
            Some(i) => &sockets.search[i].1,
            None => sockets.notify.as_ref().expect("checked by the caller"),
        };
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            if let Some(announcement) = ssdp::parse_message(&buf[..n]) {
                if tx.send((announcement, from.ip())).is_err() {
                    return;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn portal_id_from_usn() {
        let usn =
            "uuid:com.victronenergy.ccgx.C0:61:9A:B0:D0:E1::urn:schemas-upnp-org:device:Basic:1";
        assert_eq!(portal_from_usn(usn).as_deref(), Some("c0619ab0d0e1"));
        assert_eq!(portal_from_usn("uuid:1234::upnp:rootdevice"), None);
    }
}
