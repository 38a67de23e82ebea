//! The `spider-load` binary: parses the command line and runs it (see the library's docs).

use clap::Parser as _;
use spider_load::cli::Cli;
use spider_load::run;
use std::process::ExitCode;

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The error chain on one line, without a backtrace: these are operator errors
            // (a target not running, a flag out of range), not bugs.
            eprintln!("spider-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let json = cli.common.json.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(report) = runtime.block_on(run::run(cli))? {
        // The summary goes to stderr when the JSON goes to stdout, so that stdout stays JSON.
        let to_stdout = json.as_deref().is_some_and(|p| p.as_os_str() == "-");
        if to_stdout {
            eprintln!("{}", run::summary(&report));
        } else {
            println!("{}", run::summary(&report));
        }
        if let Some(path) = json {
            run::write_json(&report, &path)?;
        }
    }
    Ok(())
}
