//! Spider client SDK: keystore, sessions, transports, reconnect, outbox and sync.
//!
//! This crate has no code yet; its issue fills it in.
