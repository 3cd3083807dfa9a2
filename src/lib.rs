//! RoamCore Victron: a bridge from a Victron GX device (Cerbo GX, Venus OS) to Home
//! Assistant.
//!
//! # Data path
//!
//! ```text
//!  discovery ──► gx::link ──► model::normalise ──► throttle ──► ha::publisher
//!  (find the GX)  (GX MQTT,    (Venus topics to      (interval,   (MQTT Discovery,
//!                 keepalive)   canonical entities)   deadband,    availability,
//!                                                    debounce)    retained states)
//! ```
//!
//! * [`discovery`] finds the GX on the LAN (SSDP, mDNS, ARP table, a rate-limited sweep and
//!   port probes) and proves a candidate is a GX by reading its retained
//!   `N/<portal>/system/0/Serial` over MQTT.
//! * [`gx`] holds the GX side: topic and payload parsing, the pure keepalive/staleness state
//!   machine ([`gx::session`]) and the I/O loop around it ([`gx::link`]).
//! * [`model`] turns raw Venus values into the canonical RoamCore entities. The entity
//!   table in [`model::catalogue`] is plain data; everything else (docs, discovery
//!   payloads, tests) is derived from it.
//! * [`throttle`] decides when a new value is worth a publish.
//! * [`ha`] publishes to Home Assistant's broker: one device-based discovery message,
//!   availability topics and retained states.
//! * [`engine`] owns the model and the throttle and connects the two MQTT links; it is the
//!   one task that sees every event.
//!
//! Around them: [`config`] merges flags, environment and the add-on options file; [`store`]
//! keeps what must survive a restart in the data directory; [`supervisor`] talks to the
//! Home Assistant Supervisor; [`sim`] is a simulated GX that replays real captures.
//!
//! Everything runs on one single-threaded tokio runtime: the bridge handles at most a few
//! thousand messages per second in a van, and one thread keeps memory and wake-ups low.

pub mod backoff;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod discovery;
pub mod engine;
pub mod gx;
pub mod ha;
pub mod health;
pub mod http;
pub mod logging;
pub mod model;
pub mod mqtt;
pub mod problems;
pub mod sim;
pub mod status;
pub mod store;
pub mod supervisor;
pub mod throttle;
