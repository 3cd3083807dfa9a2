//! TODO: supervisor
