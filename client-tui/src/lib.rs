//! The spider terminal chat client (ratatui) and its non-interactive subcommands.
//!
//! This crate has no code yet; its issue fills it in.
