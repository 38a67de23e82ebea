//! spider-load: load generator and benchmark scenarios for Spider relays.
//!
//! This crate has no code yet; its issue fills it in.
