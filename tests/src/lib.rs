//! End-to-end tests across Spider's crates: relays, clients, cluster, balancer.
//!
//! This crate has no code yet; its issue fills it in.
