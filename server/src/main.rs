//! The spider-relay binary: `serve` and `gen-certs`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use spider_relay::config::{Config, FileConfig, Overrides};

/// Spider relay: stores and routes end-to-end encrypted envelopes.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve clients over QUIC and WebSocket-over-TLS.
    Serve(ServeArgs),
    /// Make a CA and a relay certificate for a deployment.
    GenCerts {
        /// The relay's DNS name (also put in the certificate).
        #[arg(long)]
        name: String,
        /// Directory to write ca.pem, ca.key, relay.pem, relay.key into.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Data directory (store and development certificates).
    #[arg(long, env = "SPIDER_RELAY_DATA")]
    data: Option<PathBuf>,
    /// QUIC (UDP) address [default: 127.0.0.1:4433].
    #[arg(long, env = "SPIDER_RELAY_QUIC")]
    quic: Option<SocketAddr>,
    /// WebSocket-over-TLS (TCP) address [default: 127.0.0.1:4433].
    #[arg(long, env = "SPIDER_RELAY_WS")]
    ws: Option<SocketAddr>,
    /// Prometheus metrics address [default: 127.0.0.1:9464].
    #[arg(long, env = "SPIDER_RELAY_METRICS")]
    metrics: Option<SocketAddr>,
    /// Do not serve metrics.
    #[arg(long)]
    no_metrics: bool,
    /// TOML configuration file.
    #[arg(long, env = "SPIDER_RELAY_CONFIG")]
    config: Option<PathBuf>,
    /// The relay's name, covered by auth signatures [default: localhost].
    #[arg(long, env = "SPIDER_RELAY_NAME")]
    name: Option<String>,
    /// Certificate chain (PEM), instead of the development certificates.
    #[arg(long, env = "SPIDER_RELAY_CERT", requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM), with --cert.
    #[arg(long, env = "SPIDER_RELAY_KEY", requires = "cert")]
    key: Option<PathBuf>,
}

async fn terminate() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    spider_relay::logging::init(
        std::env::var("RUST_LOG").ok().as_deref(),
        std::io::stderr,
        // Colour only for a person at a terminal, not in files or journald.
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    match Cli::parse().command {
        Command::GenCerts { name, out } => {
            let files = spider_relay::tls::generate(&out, &name)?;
            println!(
                "CA certificate (give to clients): {}",
                out.join("ca.pem").display()
            );
            println!("relay certificate: {}", files.cert.display());
            println!("relay key: {}", files.key.display());
            println!(
                "serve with: spider-relay serve --cert {} --key {} --name {name} --data DIR",
                files.cert.display(),
                files.key.display()
            );
            Ok(())
        }
        Command::Serve(a) => {
            let file = match &a.config {
                Some(p) => FileConfig::load(p)?,
                None => FileConfig::default(),
            };
            let over = Overrides {
                name: a.name,
                quic: a.quic,
                ws: a.ws,
                metrics: a.metrics,
                no_metrics: a.no_metrics,
                data: a.data,
                cert: a.cert,
                key: a.key,
            };
            let config = Config::resolve(over, file).context("configuration")?;
            spider_relay::server::run(config, terminate()).await
        }
    }
}
