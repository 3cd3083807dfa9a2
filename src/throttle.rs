//! TODO: throttle
