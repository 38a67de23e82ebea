//! spider-relay: the relay daemon that stores and routes encrypted envelopes.
//!
//! This crate has no code yet; its issue fills it in.
