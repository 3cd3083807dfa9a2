//! Integration tests. One test binary (faster to link than one per file); each module is
//! one area. Tests that need a broker start their own Mosquitto on a free 127.0.0.1 port.

mod support;

mod sim_broker;
mod sim_captures;
mod sim_dbus_mqtt;
mod sim_flashmq;
mod sim_scenarios;
mod sim_support;
