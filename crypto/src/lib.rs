//! Spider's end-to-end encryption.
//!
//! Sans-I/O: every operation that needs randomness takes an RNG, and every
//! operation that needs the time takes `now`; nothing here reads a clock, a
//! socket or a file.
#![forbid(unsafe_code)]

pub mod attachment;
pub mod domain;
pub mod safety;
pub mod sender_key;
