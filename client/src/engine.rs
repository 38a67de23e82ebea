//! The sans-I/O client engine.
