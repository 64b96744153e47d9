//! `aws-wire record`: a recording proxy in front of a local AWS stand-in.
//! `aws-wire check`: the wire contract over what was recorded; exits 1 on any violation.
//!
//! ```text
//! aws-wire record --upstream http://127.0.0.1:5000 --log wire.jsonl --port-file port
//!                 [--tls --tls-port-file tls-port --ca-file ca.pem]
//! aws-wire check wire.jsonl [more.jsonl ...]
//! ```

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use test_support::wire::recorder::{Options, Recorder};
use test_support::wire::{Checker, Exchange};

fn usage() -> ExitCode {
    eprintln!(
        "usage: aws-wire record --upstream URL --log FILE --port-file FILE [--tls --tls-port-file FILE --ca-file FILE]\n       aws-wire check FILE..."
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("record") => record(&args[1..]),
        Some("check") if args.len() > 1 => check(&args[1..]),
        _ => usage(),
    }
}

fn record(args: &[String]) -> ExitCode {
    let mut options = Options::default();
    let (mut port_file, mut tls_port_file, mut ca_file) = (None, None, None);
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().cloned();
        match flag.as_str() {
            "--upstream" => options.upstream = value().unwrap_or_default(),
            "--log" => options.log = value().map(PathBuf::from),
            "--port-file" => port_file = value().map(PathBuf::from),
            "--tls" => options.tls = true,
            "--tls-port-file" => tls_port_file = value().map(PathBuf::from),
            "--ca-file" => ca_file = value().map(PathBuf::from),
            _ => return usage(),
        }
    }
    if options.upstream.is_empty() || port_file.is_none() {
        return usage();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let recorder = match Recorder::start(options).await {
            Ok(recorder) => recorder,
            Err(err) => {
                eprintln!("aws-wire: cannot start: {err}");
                return ExitCode::FAILURE;
            }
        };
        let write = |path: &Option<PathBuf>, text: String| {
            if let Some(path) = path {
                std::fs::write(path, text).expect("the state file is writable");
            }
        };
        write(&ca_file, recorder.ca_pem.clone().unwrap_or_default());
        write(
            &tls_port_file,
            recorder
                .tls_addr
                .map(|a| a.port().to_string())
                .unwrap_or_default(),
        );
        // The port file last: whoever waits for it finds the rest in place.
        write(&port_file, recorder.addr.port().to_string());
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    })
}

fn check(files: &[String]) -> ExitCode {
    let mut checker = Checker::default();
    let mut violations = Vec::new();
    for file in files {
        let Ok(opened) = std::fs::File::open(file) else {
            eprintln!("aws-wire: cannot read {file}");
            return ExitCode::FAILURE;
        };
        for (number, line) in std::io::BufReader::new(opened).lines().enumerate() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Exchange>(&line) {
                Ok(exchange) => violations.extend(checker.check(&exchange)),
                Err(err) => {
                    eprintln!("aws-wire: {file}:{}: not an exchange: {err}", number + 1);
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let total: usize = checker.counts.values().sum();
    println!("wire contract: {total} requests checked");
    for ((service, operation), count) in &checker.counts {
        println!("  {service:<14} {operation:<32} {count}");
    }
    if violations.is_empty() {
        println!("wire contract: no violations");
        return ExitCode::SUCCESS;
    }
    println!("wire contract: {} violations", violations.len());
    for violation in violations.iter().take(200) {
        println!("  {violation}");
    }
    ExitCode::FAILURE
}
