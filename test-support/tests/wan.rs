//! The WAN link against real servers on loopback: its delays, handshake, jitter, rate, stalls,
//! resets and TLS, timed. Lower bounds are tight (the link never delivers early); upper bounds
//! leave room for a busy machine. The link runs in each test's runtime: two workers, so that the
//! test's own copying does not hold up the link's timers.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use test_support::wan::{Reset, Resetting, Stall, WanConfig, WanLink};
use test_support::wire::recorder::{Options, Recorder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MS: Duration = Duration::from_millis(1);

/// A server that sends back what it reads, on any number of connections.
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// An HTTP/1.1 server (keep-alive) answering every request with `ok`.
async fn http_server() -> String {
    use http_body_util::Full;
    use hyper::service::service_fn;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(|_request| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    bytes::Bytes::from_static(b"ok"),
                )))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    addr
}

async fn link(config: WanConfig) -> WanLink {
    WanLink::start(config).await.unwrap()
}

fn within(what: &str, took: Duration, low: Duration, high: Duration) {
    println!("{what}: {took:.1?} (expected {low:?}..{high:?})");
    assert!(
        took >= low && took <= high,
        "{what} took {took:?}, expected {low:?}..{high:?}"
    );
}

async fn exchange(stream: &mut TcpStream, message: &[u8]) -> Duration {
    let began = Instant::now();
    stream.write_all(message).await.unwrap();
    let mut back = vec![0; message.len()];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(back, message);
    began.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_idle_past_the_timeout_is_closed_by_the_server_side() {
    let link = link(WanConfig {
        upstream: echo_server().await,
        delay: 20 * MS,
        idle_timeout: Some(300 * MS),
        ..WanConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(link.addr()).await.unwrap();
    exchange(&mut stream, b"keep me").await;
    // Traffic keeps it open...
    for _ in 0..3 {
        tokio::time::sleep(200 * MS).await;
        exchange(&mut stream, b"still here").await;
    }
    // ...silence closes it: a FIN (end of stream), one delay after the timeout.
    let began = Instant::now();
    let mut buffer = [0u8; 16];
    let read = stream.read(&mut buffer).await.unwrap();
    assert_eq!(read, 0);
    within("idle close", began.elapsed(), 300 * MS, 420 * MS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_connection_costs_the_handshake_then_each_exchange_one_round_trip() {
    let link = link(WanConfig {
        upstream: echo_server().await,
        delay: 110 * MS,
        ..WanConfig::default()
    })
    .await;
    let began = Instant::now();
    let mut stream = TcpStream::connect(link.addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    exchange(&mut stream, b"first").await;
    // SYN, SYN-ACK, then the request and its answer: two round trips from the connect.
    within(
        "connect + first exchange",
        began.elapsed(),
        440 * MS,
        470 * MS,
    );
    for _ in 0..3 {
        let took = exchange(&mut stream, b"again").await;
        within("round trip", took, 220 * MS, 235 * MS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upstream_resets_the_client_after_one_round_trip() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = closed.local_addr().unwrap().to_string();
    drop(closed);
    let link = link(WanConfig {
        upstream,
        delay: 50 * MS,
        ..WanConfig::default()
    })
    .await;
    let began = Instant::now();
    let mut stream = TcpStream::connect(link.addr()).await.unwrap();
    let mut buffer = [0; 16];
    let err = stream.read(&mut buffer).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    within("refused", began.elapsed(), 100 * MS, 150 * MS);
    assert_eq!(link.stats().refused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_never_reorders_bytes() {
    let link = link(WanConfig {
        upstream: echo_server().await,
        delay: 20 * MS,
        jitter: 15 * MS,
        ..WanConfig::default()
    })
    .await;
    let stream = TcpStream::connect(link.addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut read, mut write) = stream.into_split();
    let count: u32 = 300;
    let writer = tokio::spawn(async move {
        for number in 0..count {
            write.write_all(&number.to_be_bytes()).await.unwrap();
            // Separate chunks, each with a jitter of its own.
            if number % 3 == 0 {
                tokio::time::sleep(MS).await;
            }
        }
        write
    });
    let mut back = vec![0; 4 * count as usize];
    read.read_exact(&mut back).await.unwrap();
    let numbers: Vec<u32> = back
        .chunks(4)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(numbers, (0..count).collect::<Vec<_>>());
    writer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_caps_each_direction() {
    let link = link(WanConfig {
        upstream: echo_server().await,
        rate: Some(4_000_000),
        ..WanConfig::default()
    })
    .await;
    let stream = TcpStream::connect(link.addr()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let size = 2 * 1024 * 1024;
    let began = Instant::now();
    let writer = tokio::spawn(async move {
        write.write_all(&vec![7u8; size]).await.unwrap();
        write
    });
    let mut back = vec![0; size];
    read.read_exact(&mut back).await.unwrap();
    writer.await.unwrap();
    // Both directions at 4 MB/s, pipelined: the time of one.
    let ideal = Duration::from_secs_f64(size as f64 / 4e6);
    within(
        "2 MiB at 4 MB/s",
        began.elapsed(),
        ideal,
        ideal.mul_f64(1.3),
    );
    let stats = link.stats();
    assert_eq!(
        (stats.bytes_up, stats.bytes_down),
        (size as u64, size as u64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_holds_a_direction_at_its_byte_count() {
    let link = link(WanConfig {
        upstream: echo_server().await,
        delay: 10 * MS,
        stall: Some(Stall::After {
            bytes: 1000,
            duration: 300 * MS,
        }),
        ..WanConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(link.addr()).await.unwrap();
    let began = Instant::now();
    stream.write_all(&[1; 2000]).await.unwrap();
    let mut back = vec![0; 1000];
    stream.read_exact(&mut back).await.unwrap();
    within(
        "the bytes before the stall",
        began.elapsed(),
        40 * MS,
        150 * MS,
    );
    stream.read_exact(&mut back).await.unwrap();
    // The stall on the way up (the echo's stall on the way down overlaps it).
    within("the bytes after it", began.elapsed(), 310 * MS, 420 * MS);
    assert_eq!(link.stats().stalls, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_at_a_byte_count_reaches_the_client_as_econnreset() {
    let link = link(WanConfig {
        upstream: echo_server().await,
        delay: 5 * MS,
        reset: Some(Reset {
            after: 10_000,
            which: Resetting::Probability(1.0),
        }),
        ..WanConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(link.addr()).await.unwrap();
    stream.write_all(&[3; 20_000]).await.unwrap();
    let mut received = 0;
    let mut buffer = vec![0; 64 * 1024];
    let err = loop {
        match stream.read(&mut buffer).await {
            Ok(0) => panic!("a FIN after {received} bytes, not a reset"),
            Ok(n) => received += n,
            Err(err) => break err,
        }
    };
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert!(received <= 10_000, "{received} bytes came back");
    let stats = link.stats();
    assert_eq!((stats.resets, stats.bytes_up), (1, 10_000));
}

/// Sends `bytes` on a fresh connection through the link and reads the echo back: how many bytes
/// came back, and whether the connection ended with a reset (else with a FIN).
async fn echo_through(link: &WanLink, bytes: usize) -> (usize, bool) {
    let mut stream = TcpStream::connect(link.addr()).await.unwrap();
    stream.write_all(&vec![7; bytes]).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut received = 0;
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) => return (received, false),
            Ok(n) => received += n,
            Err(err) if err.kind() == ErrorKind::ConnectionReset => return (received, true),
            Err(err) => panic!("{err}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_listed_connections_are_reset_once_their_downstream_count_is_reached() {
    let link = link(WanConfig {
        upstream: echo_server().await,
        delay: 5 * MS,
        reset: Some(Reset {
            after: 30_000,
            which: Resetting::Connections(vec![2, 4]),
        }),
        ..WanConfig::default()
    })
    .await;
    let mut ends = Vec::new();
    // One connection after another, so that their accept order is theirs.
    for _ in 0..5 {
        ends.push(echo_through(&link, 100_000).await);
    }
    let reset: Vec<bool> = ends.iter().map(|&(_, reset)| reset).collect();
    assert_eq!(reset, [false, true, false, true, false], "{ends:?}");
    for (i, &(received, reset)) in ends.iter().enumerate() {
        if reset {
            assert!(received <= 30_000, "connection {}: {received} bytes", i + 1);
        } else {
            assert_eq!(received, 100_000, "connection {}", i + 1);
        }
    }
    let stats = link.stats();
    assert_eq!((stats.connections, stats.resets), (5, 2));
    // The cut is at the downstream count, though more than that went up on those connections.
    assert_eq!(stats.bytes_down, 3 * 100_000 + 2 * 30_000);
    assert!(stats.bytes_up > 3 * 100_000 + 2 * 30_000, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_costs_its_handshake_at_the_delay() {
    let link = link(WanConfig {
        upstream: http_server().await,
        delay: 110 * MS,
        tls: true,
        ..WanConfig::default()
    })
    .await;
    let ca = reqwest::Certificate::from_pem(link.ca_pem().unwrap().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let url = format!("{}/", link.endpoint());
    let get = || async {
        let began = Instant::now();
        let answer = client.get(&url).send().await.unwrap();
        assert_eq!(answer.text().await.unwrap(), "ok");
        began.elapsed()
    };
    // TCP (1 RTT), TLS 1.3 (1 RTT), the request (1 RTT).
    within("fresh HTTPS GET", get().await, 660 * MS, 720 * MS);
    within("kept-alive HTTPS GET", get().await, 220 * MS, 250 * MS);
    assert_eq!(link.stats().connections, 1);
}

/// The SDK's default HTTPS client (rustls, aws-lc-rs) takes its roots from
/// `rustls-native-certs`, which reads `SSL_CERT_FILE` in place of the system's store, once per
/// process. So the proof runs in processes of its own: one trusting the link's CA through
/// `SSL_CERT_FILE`, one without it, refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_over_the_link_trusts_the_test_ca_through_ssl_cert_file() {
    let Ok(moto) = std::env::var("WIRE_UPSTREAM_AWS_ENDPOINT_URL")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
    else {
        eprintln!(
            "AWS_ENDPOINT_URL is not set: skipped (scripts/local-stack up, then export .local/env)"
        );
        return;
    };
    // moto closes every connection after its answer, where SQS keeps it alive: a recorder in
    // between (an HTTP/1.1 server with a pool of its own) keeps the link's connection open.
    let recorder = Recorder::start(Options {
        upstream: moto,
        ..Options::default()
    })
    .await
    .unwrap();
    let link = link(WanConfig {
        upstream: recorder.addr.to_string(),
        delay: 110 * MS,
        tls: true,
        ..WanConfig::default()
    })
    .await;
    let ca_file = std::env::temp_dir().join(format!("aws-wan-test-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, link.ca_pem().unwrap()).unwrap();
    let child = |trust: bool| {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args(["sqs_with_the_default_client", "--exact", "--ignored"])
            .args(["--nocapture", "--test-threads", "1"])
            .env("WAN_TEST_SQS_ENDPOINT", link.endpoint())
            .env("WAN_TEST_EXPECT", if trust { "trusted" } else { "refused" })
            .env_remove("SSL_CERT_DIR");
        if trust {
            command.env("SSL_CERT_FILE", &ca_file);
        } else {
            command.env_remove("SSL_CERT_FILE");
        }
        command
    };
    for trust in [true, false] {
        let output = tokio::task::spawn_blocking({
            let mut command = child(trust);
            move || command.output().unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        print!("{stdout}");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("1 passed"), "the child test did not run");
    }
    let _ = std::fs::remove_file(&ca_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in a process of its own by sqs_over_the_link_trusts_the_test_ca_through_ssl_cert_file"]
async fn sqs_with_the_default_client() {
    let (Ok(endpoint), Ok(expect)) = (
        std::env::var("WAN_TEST_SQS_ENDPOINT"),
        std::env::var("WAN_TEST_EXPECT"),
    ) else {
        eprintln!("WAN_TEST_SQS_ENDPOINT is not set: this test runs inside another");
        return;
    };
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .load()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let began = Instant::now();
    let created = sqs
        .create_queue()
        .queue_name(format!("wan-test-{}", fastrand::u32(..)))
        .send()
        .await;
    if expect == "refused" {
        let err = created.expect_err("a client without the CA refuses the link's certificate");
        let cause = format!("{:?}", aws_sdk_sqs::error::DisplayErrorContext(&err));
        println!("without SSL_CERT_FILE: {cause}");
        assert!(cause.contains("UnknownIssuer"), "{cause}");
        return;
    }
    let queue_url = created.unwrap().queue_url.unwrap();
    within(
        "CreateQueue on a fresh connection",
        began.elapsed(),
        660 * MS,
        900 * MS,
    );
    let began = Instant::now();
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body("over the WAN link")
        .send()
        .await
        .unwrap();
    within(
        "SendMessage, kept alive",
        began.elapsed(),
        220 * MS,
        300 * MS,
    );
    sqs.delete_queue()
        .queue_url(&queue_url)
        .send()
        .await
        .unwrap();
}
