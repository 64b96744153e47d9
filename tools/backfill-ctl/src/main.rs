//! `backfill-ctl`: the operator's tool for the overseas-origin backfill. See `docs/cli.md`.

mod change;
mod check;
mod cli;
mod error;
mod freshness;
mod input;
mod prewarm;
mod queue;
mod redrive;
mod regional;
mod send;
mod status;
mod store;
mod table;

use std::process::ExitCode;

use clap::Parser;
use shared::change::ChangeKind;

use crate::cli::{Cli, Command};
use crate::error::{CtlError, Outcome};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("backfill-ctl: error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(outcome) => outcome.exit_code(),
        Err(err) => {
            eprintln!("backfill-ctl: error: {err}");
            err.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<Outcome, CtlError> {
    let config = shared::aws::load_config().await;
    match cli.command {
        Command::Prewarm(args) => prewarm::run(args, &config).await,
        Command::Refresh(args) => change::run(ChangeKind::Refresh, args, &config).await,
        Command::Purge(args) => change::run(ChangeKind::Purge, args, &config).await,
        Command::Status(args) => status::run(args, &config).await,
        Command::Redrive(args) => redrive::run(args, &config).await,
        Command::Check(args) => check::run(args, &config).await,
    }
}
