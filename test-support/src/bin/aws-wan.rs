//! `aws-wan`: a WAN link in front of a local server (see `test_support::wan`).
//!
//! ```text
//! aws-wan --upstream HOST:PORT|URL --port-file FILE [--delay 110ms] [--jitter 10ms] [--idle-timeout 120s]
//!         [--rate 20MB/s] [--total-rate 50MB/s]
//!         [--stall-after BYTES | --stall-every DURATION] [--stall-for DURATION]
//!         [--reset-after BYTES] [--reset-probability P | --reset-connections LIST]
//!         [--tls --ca-file FILE] [--stats-file FILE]
//! ```
//!
//! `--reset-connections 3,7` resets (RST) exactly the 3rd and 7th connections accepted, once
//! `--reset-after` bytes (default 0) have gone downstream to the client; `--reset-probability`
//! resets a random fraction, when either direction reaches the count. Each reset is counted in
//! `resets`.
//!
//! Its counters go as one JSON line to stderr and to the stats file on SIGUSR1 (it goes on) and
//! on SIGTERM or SIGINT (it stops).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use shared::config::parse_duration;
use test_support::wan::{
    parse_bytes, parse_rate, upstream_address, Reset, Resetting, Stall, WanConfig, WanLink,
};
use tokio::signal::unix::{signal, SignalKind};

const USAGE: &str = "usage: aws-wan --upstream HOST:PORT|URL --port-file FILE [--delay 110ms] [--jitter 10ms] [--idle-timeout 120s] [--rate 20MB/s] [--total-rate RATE] [--stall-after BYTES | --stall-every DURATION] [--stall-for DURATION] [--reset-after BYTES] [--reset-probability P | --reset-connections LIST] [--tls --ca-file FILE] [--stats-file FILE]";

struct Options {
    config: WanConfig,
    port_file: PathBuf,
    ca_file: Option<PathBuf>,
    stats_file: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut config = WanConfig::default();
    let (mut port_file, mut ca_file, mut stats_file) = (None, None, None);
    let (mut stall_after, mut stall_every, mut stall_for) = (None, None, None);
    let (mut reset_after, mut reset_probability, mut reset_connections) = (None, None, None);
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        if flag == "--tls" {
            config.tls = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |expected: &str| format!("{flag} {value}: expected {expected}");
        let duration = || parse_duration(value).ok_or_else(|| bad("a duration (110ms, 2s)"));
        let bytes = || parse_bytes(value).ok_or_else(|| bad("a byte count (65536, 64KiB, 1MB)"));
        let rate = || parse_rate(value).ok_or_else(|| bad("a rate (20MB/s, 100Mbit/s)"));
        match flag.as_str() {
            "--upstream" => config.upstream = upstream_address(value),
            "--port-file" => port_file = Some(PathBuf::from(value)),
            "--ca-file" => ca_file = Some(PathBuf::from(value)),
            "--stats-file" => stats_file = Some(PathBuf::from(value)),
            "--delay" => config.delay = duration()?,
            "--jitter" => config.jitter = duration()?,
            "--idle-timeout" => config.idle_timeout = Some(duration()?),
            "--rate" => config.rate = Some(rate()?),
            "--total-rate" => config.total_rate = Some(rate()?),
            "--stall-after" => stall_after = Some(bytes()?),
            "--stall-every" => stall_every = Some(duration()?),
            "--stall-for" => stall_for = Some(duration()?),
            "--reset-after" => reset_after = Some(bytes()?),
            "--reset-probability" => {
                let p: f64 = value.parse().map_err(|_| bad("a probability (0..1)"))?;
                if !(0.0..=1.0).contains(&p) {
                    return Err(bad("a probability (0..1)"));
                }
                reset_probability = Some(p);
            }
            "--reset-connections" => {
                reset_connections = Some(connection_numbers(value).ok_or_else(|| {
                    bad("connection numbers counted from 1, comma-separated (3,7)")
                })?);
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    config.stall = match (stall_after, stall_every, stall_for) {
        (None, None, None) => None,
        (Some(bytes), None, Some(duration)) => Some(Stall::After { bytes, duration }),
        (None, Some(period), Some(duration)) if period > Duration::ZERO => {
            Some(Stall::Every { period, duration })
        }
        _ => {
            return Err(
                "a stall is --stall-after BYTES or --stall-every DURATION (> 0), with --stall-for DURATION"
                    .to_owned(),
            )
        }
    };
    config.reset = match (reset_after, reset_probability, reset_connections) {
        (None, None, None) => None,
        (_, Some(_), Some(_)) => {
            return Err("--reset-probability or --reset-connections, not both".to_owned())
        }
        (after, probability, None) => Some(Reset {
            after: after.unwrap_or(0),
            which: Resetting::Probability(probability.unwrap_or(1.0)),
        }),
        (after, None, Some(numbers)) => Some(Reset {
            after: after.unwrap_or(0),
            which: Resetting::Connections(numbers),
        }),
    };
    if config.upstream.is_empty() {
        return Err("--upstream is required".to_owned());
    }
    if config.tls != ca_file.is_some() {
        return Err("--tls and --ca-file go together".to_owned());
    }
    Ok(Options {
        config,
        port_file: port_file.ok_or("--port-file is required")?,
        ca_file,
        stats_file,
    })
}

/// `3,7`: connection numbers, each at least 1.
fn connection_numbers(raw: &str) -> Option<Vec<u64>> {
    raw.split(',')
        .map(|number| number.trim().parse().ok().filter(|&n: &u64| n >= 1))
        .collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("aws-wan: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(options))
}

async fn run(options: Options) -> ExitCode {
    let (Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) else {
        eprintln!("aws-wan: cannot listen for signals");
        return ExitCode::FAILURE;
    };
    let link = match WanLink::start(options.config).await {
        Ok(link) => link,
        Err(err) => {
            eprintln!("aws-wan: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let (Some(path), Some(pem)) = (&options.ca_file, link.ca_pem()) {
        if let Err(err) = std::fs::write(path, pem) {
            eprintln!("aws-wan: cannot write {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    }
    // The port file last: whoever waits for it finds the CA in place.
    if let Err(err) = write_atomically(&options.port_file, &link.addr().port().to_string()) {
        eprintln!(
            "aws-wan: cannot write {}: {err}",
            options.port_file.display()
        );
        return ExitCode::FAILURE;
    }
    loop {
        let stop = tokio::select! {
            _ = term.recv() => true,
            _ = int.recv() => true,
            _ = usr1.recv() => false,
        };
        let line = serde_json::to_string(&link.stats()).expect("stats serialise");
        eprintln!("{line}");
        if let Some(path) = &options.stats_file {
            if let Err(err) = write_atomically(path, &format!("{line}\n")) {
                eprintln!("aws-wan: cannot write {}: {err}", path.display());
            }
        }
        if stop {
            return ExitCode::SUCCESS;
        }
    }
}

/// Written beside and renamed, so that a reader never sees half of it.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}
