//! Integration tests. One test binary (faster to link than one per file); each module is
//! one area. Tests that need a broker start their own Mosquitto on a free 127.0.0.1 port.

mod support;

mod addon_fake;
mod addon_manifest;
mod addon_supervisor;
