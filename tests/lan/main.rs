//! Discovery on a test LAN of network namespaces: the simulated GX, a decoy broker and a
//! second GX in their own namespaces, `roamcore-victron discover` in another. Needs root
//! and `ip netns`; each test prints why and passes without checking when they are
//! missing. Nothing outside the namespaces a test creates is ever scanned.

mod capture;
mod gx;
mod net;
mod scenarios;
