//! Integration tests. One test binary (faster to link than one per file); each module is
//! one area. Tests that need a broker start their own Mosquitto on a free 127.0.0.1 port.

mod support;

mod addon_daemon;
mod addon_fake;
mod addon_manifest;
mod addon_provision;
mod addon_supervisor;
mod bad_input;
mod break_user;
mod break_model;
mod break_round2_data;
mod break_round2_ops;
mod break_round3;
mod captures;
mod docs;
mod engine_tick;
mod fault_flood;
mod fault_gx;
mod fault_ha;
mod fault_login;
mod fault_logs;
mod fault_netns;
mod fault_network;
mod fault_restart;
mod fault_sigterm;
mod fault_soak;
mod gx_tls;
mod ignore_victron_gx;
mod keepalive;
mod sim_broker;
mod sim_captures;
mod sim_dbus_mqtt;
mod sim_flashmq;
mod sim_scenarios;
mod sim_support;
