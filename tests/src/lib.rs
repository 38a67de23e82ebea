//! End-to-end tests across Spider's crates: a relay in process and SDK
//! clients (tests/messaging.rs), and the `spider` CLI as processes against
//! it (tests/cli.rs). The code is all under `tests/`.
