//! Running the `spider` binary as a process (the pattern of `cli.rs`).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

/// `target/debug/spider` (the `spider` package's binary), built first.
pub fn spider_binary() -> PathBuf {
    super::built_binary("spider", "spider")
}

/// Runs `spider ARGS` with no passphrase in the environment.
pub async fn run(bin: &Path, args: &[&str]) -> Output {
    run_as(bin, args, None).await
}

/// Runs `spider ARGS` with `SPIDER_PASSPHRASE` set to `passphrase` (or
/// removed) and echoes what it printed.
pub async fn run_as(bin: &Path, args: &[&str], passphrase: Option<&str>) -> Output {
    let mut c = Command::new(bin);
    c.args(args)
        .kill_on_drop(true)
        .env_remove("SPIDER_PASSPHRASE");
    if let Some(p) = passphrase {
        c.env("SPIDER_PASSPHRASE", p);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("spider did not finish")
        .unwrap();
    eprintln!(
        "$ spider {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `spider ARGS`, which must succeed; returns its stdout.
pub async fn ok(bin: &Path, args: &[&str]) -> String {
    ok_as(bin, args, None).await
}

/// [`ok`] with `SPIDER_PASSPHRASE` as in [`run_as`].
pub async fn ok_as(bin: &Path, args: &[&str], passphrase: Option<&str>) -> String {
    let out = run_as(bin, args, passphrase).await;
    assert!(out.status.success(), "spider {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// One JSON value per non-empty line.
pub fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
