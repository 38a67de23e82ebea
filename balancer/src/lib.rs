//! spider-lb: spreads QUIC and WebSocket connections over relays.
//!
//! This crate has no code yet; its issue fills it in.
