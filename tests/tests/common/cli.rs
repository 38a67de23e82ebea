//! Running the `spider` binary as a process (the pattern of `cli.rs`).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

/// `target/debug/spider`, built first (cargo builds only the test's own
/// crate graph; the binary belongs to the `spider` package).
pub fn spider_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = std::process::Command::new(cargo)
        .args(["build", "-q", "-p", "spider", "--bin", "spider"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "building spider failed");
    // The test runs as target/debug/deps/NAME-HASH.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join(format!("spider{}", std::env::consts::EXE_SUFFIX))
}

/// Runs `spider ARGS` (no passphrase in the environment) and echoes what
/// it printed.
pub async fn run(bin: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(bin);
    c.args(args)
        .kill_on_drop(true)
        .env_remove("SPIDER_PASSPHRASE");
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
    let out = run(bin, args).await;
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
