//! Discovery on a test LAN of network namespaces: the simulated GX, a decoy broker and a
//! second GX in their own namespaces, and `roamcore-victron discover` or the daemon
//! itself (`run` without `--gx`, with Home Assistant's broker in its namespace) in
//! another. Needs root and `ip netns`; each test prints why and passes without checking
//! when they are missing. Nothing outside the namespaces a test creates is ever scanned.
//!
//! The tests wait on timers and the network, not on the CPU, so this binary runs 8 at a
//! time unless `--test-threads` or `RUST_TEST_THREADS` sets another number. By default
//! the harness runs as many as there are cores. On the 2-core development machine the
//! whole binary took 162 s with 8 and 418 s with 2.

/// Returns early, with the reason on stderr, when the LAN tests cannot run here.
macro_rules! skip_unless_lan {
    () => {
        if let Some(reason) = crate::net::skip_reason() {
            eprintln!("skipped: {reason}");
            return;
        }
    };
}

// The fake Supervisor of the add-on tests; these tests use part of it.
#[allow(dead_code)]
#[path = "../it/addon_fake.rs"]
mod addon_fake;
mod bridge_adoption;
mod bridge_found;
mod bridge_problems;
mod bridge_recovery;
mod capture;
mod daemon;
mod gx;
mod net;
mod scenarios;
mod traffic;

/// Sets `RUST_TEST_THREADS` before the test harness reads it. Runs from `.init_array`
/// (an ELF section, hence Linux only), before `main`, while the process has one thread.
#[cfg(target_os = "linux")]
extern "C" fn default_test_threads() {
    if std::env::var_os("RUST_TEST_THREADS").is_none() {
        std::env::set_var("RUST_TEST_THREADS", "8");
    }
}

#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static DEFAULT_TEST_THREADS: extern "C" fn() = default_test_threads;
