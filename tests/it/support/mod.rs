//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod daemon;
pub mod mosquitto;
pub mod netns;
pub mod observer;
pub mod proxy;
pub mod rig;
