//! A WAN link on loopback: a TCP proxy that gives every connection, in each direction, a one-way
//! delay, jitter, a bandwidth cap, stalls and resets, and can speak TLS behind the delay.
//!
//! Figures taken over loopback (a few ms a round trip) say nothing about the edge, where the hook
//! reaches SQS over HTTPS across an ocean. This kernel has no netem, so the link is shaped in user
//! space, with tokio's timer (1 ms resolution):
//!
//! - Each chunk read from one side is put on the link's transmitter (a token bucket per
//!   connection and direction, `rate`, and optionally one shared by all connections,
//!   `total_rate`), so serialisation adds to the propagation delay; it is delivered `delay` plus
//!   a uniform `0..=jitter` after it left the transmitter, but never before the chunk ahead of
//!   it: bytes are never reordered. The transmitter queues a few ms of data at most, so a sender
//!   faster than the rate is held back by TCP, as behind a real bottleneck.
//! - The TCP handshake. A user-space proxy completes the client's connect at once, which would
//!   lose the round trip a real SYN / SYN-ACK costs. So the upstream connect happens one `delay`
//!   after the accept (when the SYN would reach the server), the client's first bytes are not
//!   delivered upstream before the accept plus 3 x `delay` (when a first flight sent on the
//!   SYN-ACK's arrival would land), and nothing reaches the client before the accept plus
//!   4 x `delay`. A fresh connection's first request/response thus takes two round trips from
//!   the client's connect, as over a real link; only the connect call itself returns early. An
//!   upstream that refuses the connect resets the client's connection one round trip after the
//!   accept, when the SYN's RST would have arrived.
//! - Stalls: after a byte count (once) or periodically, a direction stops transmitting for a
//!   while; bytes already on the link still arrive.
//! - Resets: a connection (each one, or a random fraction) is closed on both sides with an RST
//!   (`SO_LINGER` 0) when a direction has delivered a byte count; or, deterministically, the
//!   connections listed by their accept order, when the downstream (server to client) has
//!   delivered the byte count: a response cut mid-body, on exactly the k-th connection.
//! - TLS: with `tls`, the link itself terminates TLS, behind the delay (client <-> delayed raw
//!   bytes <-> rustls server <-> plain TCP to the upstream), with a certificate of its own test
//!   CA ([`crate::tls::TestCa`]), so a TLS handshake costs its round trips at the set delay. The
//!   upstream is a plain HTTP port (moto's): this is how SQS behind the link speaks HTTPS.
//!
//! Byte counts (stall, reset, [`Stats`]) are the bytes on the client's side of the link: with TLS,
//! the encrypted ones.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};

/// The largest chunk read at once: small enough that a chunk's serialisation at a capped rate
/// stays a few ms.
const CHUNK: usize = 32 * 1024;
/// Bytes on the link (read, not yet delivered) per direction: far above the bandwidth-delay
/// product of the links we emulate (20 MB/s x 100 ms = 2 MB), yet a bound on memory.
const IN_FLIGHT: usize = 32 * 1024 * 1024;
/// How far ahead of the transmitter a sender may get: the bottleneck's queue.
const QUEUE: Duration = Duration::from_millis(5);
/// The token buckets' depth: above the tokio timer's lateness (it rounds to 1 ms).
const BURST: Duration = Duration::from_millis(2);
/// The buffer between the delayed bytes and the TLS server.
const TLS_BUFFER: usize = 256 * 1024;

#[derive(Debug, Clone, Default)]
pub struct WanConfig {
    /// `host:port` of the plain TCP server behind the link.
    pub upstream: String,
    /// One-way delay, each direction.
    pub delay: Duration,
    /// At most this much more, drawn uniformly for each chunk.
    pub jitter: Duration,
    /// Bytes per second, per connection and direction.
    pub rate: Option<u64>,
    /// Bytes per second, per direction, over all connections.
    pub total_rate: Option<u64>,
    pub stall: Option<Stall>,
    pub reset: Option<Reset>,
    /// Terminate TLS behind the delay, with a certificate of a test CA made for the link.
    pub tls: bool,
    /// The server's side closes a connection that carried nothing either way for this long, as
    /// AWS endpoints close idle keep-alive connections (SQS after about two minutes: a client
    /// that reuses one finds it closed); the FIN reaches the client one delay later.
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stall {
    /// Once a direction has transmitted `bytes`, it stops for `duration`.
    After { bytes: u64, duration: Duration },
    /// From the accept on, each direction transmits for `period`, then stops for `duration`,
    /// and again.
    Every {
        period: Duration,
        duration: Duration,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reset {
    /// The connection is reset when it has delivered this many bytes (0: at its first bytes).
    pub after: u64,
    pub which: Resetting,
}

/// Which connections a [`Reset`] ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Resetting {
    /// Each connection with this probability, drawn at the accept; reset when either direction
    /// has delivered `after` bytes.
    Probability(f64),
    /// The connections accepted in these places (1 is the first), whatever came before them;
    /// reset when the downstream (server to client) has delivered `after` bytes. Repeatable from
    /// run to run, where a probability is not.
    Connections(Vec<u64>),
}

impl Reset {
    /// The byte counts at which the `number`th connection is reset, upstream and downstream.
    fn thresholds(&self, number: u64) -> (Option<u64>, Option<u64>) {
        match &self.which {
            Resetting::Probability(p) => {
                let chosen = *p >= 1.0 || fastrand::f64() < *p;
                let after = chosen.then_some(self.after);
                (after, after)
            }
            Resetting::Connections(numbers) => {
                (None, numbers.contains(&number).then_some(self.after))
            }
        }
    }
}

/// What the link has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub connections: u64,
    /// Connections whose upstream refused the connect.
    pub refused: u64,
    /// Bytes delivered to the upstream (client to server).
    pub bytes_up: u64,
    /// Bytes delivered to the clients.
    pub bytes_down: u64,
    pub resets: u64,
    /// Stalls that held data back.
    pub stalls: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    refused: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    resets: AtomicU64,
    stalls: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Stats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            connections: get(&self.connections),
            refused: get(&self.refused),
            bytes_up: get(&self.bytes_up),
            bytes_down: get(&self.bytes_down),
            resets: get(&self.resets),
            stalls: get(&self.stalls),
        }
    }
}

struct Shared {
    config: WanConfig,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    counters: Counters,
    /// The shared transmitters (`total_rate`), client to server and back.
    total: Option<[Arc<Mutex<Bucket>>; 2]>,
}

/// A running link; dropping it stops the link and its connections.
pub struct WanLink {
    addr: SocketAddr,
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    accepting: tokio::task::JoinHandle<()>,
}

impl WanLink {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start(config: WanConfig) -> std::io::Result<WanLink> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let ca = if config.tls {
            Some(crate::tls::TestCa::new("aws-wan link")?)
        } else {
            None
        };
        let total = config.total_rate.map(|rate| {
            let bucket = || Arc::new(Mutex::new(Bucket::new(rate, Instant::now())));
            [bucket(), bucket()]
        });
        let shared = Arc::new(Shared {
            config,
            acceptor: ca.as_ref().map(|ca| ca.acceptor.clone()),
            counters: Counters::default(),
            total,
        });
        let accepting = tokio::spawn(accept(listener, shared.clone()));
        Ok(WanLink {
            addr,
            ca_pem: ca.map(|ca| ca.ca_pem),
            shared,
            accepting,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT` with TLS, `http://...` without.
    pub fn endpoint(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The test CA's certificate (PEM), with TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Stops the link and its connections; what it did.
    pub fn shutdown(self) -> Stats {
        self.stats()
    }
}

impl Drop for WanLink {
    fn drop(&mut self) {
        // The accept loop owns the connections' tasks: they go with it.
        self.accepting.abort();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let accepted = Instant::now();
        let number = shared.counters.connections.fetch_add(1, Ordering::Relaxed) + 1;
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(client, number, accepted, shared.clone()));
    }
}

/// A second descriptor of a connection's socket, kept to reset it: with `SO_LINGER` 0 set on
/// it, the socket's close (when its last descriptor goes) sends an RST rather than a FIN.
fn reset_handle(stream: &TcpStream) -> std::io::Result<socket2::Socket> {
    socket2::SockRef::from(stream).try_clone()
}

fn arm_reset(handle: &socket2::Socket) {
    let _ = handle.set_linger(Some(Duration::ZERO));
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// The `number`th connection the link accepted.
async fn connection(client: TcpStream, number: u64, accepted: Instant, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    let Ok(client_handle) = reset_handle(&client) else {
        return;
    };
    let config = &shared.config;
    let delay = config.delay;
    let (reset_up, reset_down) = config
        .reset
        .as_ref()
        .map_or((None, None), |reset| reset.thresholds(number));
    let reset = Arc::new(Notify::new());
    let activity = Arc::new(std::sync::Mutex::new(accepted));
    let mut tasks = JoinSet::new();
    // Halves that never send a FIN of their own (an `OwnedWriteHalf` does, when dropped): a
    // reset must reach the peer as an RST, not after a FIN.
    let (client_read, client_write) = tokio::io::split(client);
    let (to_server, from_client) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(IN_FLIGHT));
    tasks.spawn(transmit(
        Box::new(client_read),
        Shaper::new(&shared, Direction::Up, accepted, accepted + 3 * delay),
        to_server,
        room.clone(),
    ));
    sleep_until(accepted + delay).await;
    let upstream = match TcpStream::connect(&config.upstream).await {
        Ok(upstream) => upstream,
        Err(_) => {
            Counters::add(&shared.counters.refused, 1);
            sleep_until(accepted + 2 * delay).await;
            arm_reset(&client_handle);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let Ok(upstream_handle) = reset_handle(&upstream) else {
        return;
    };
    let (server_read, server_write): (Reader, Writer) = match &shared.acceptor {
        None => {
            let (read, write) = tokio::io::split(upstream);
            (Box::new(read), Box::new(write))
        }
        Some(acceptor) => {
            let (near, far) = tokio::io::duplex(TLS_BUFFER);
            tasks.spawn(terminate_tls(acceptor.clone(), far, upstream));
            let (read, write) = tokio::io::split(near);
            (Box::new(read), Box::new(write))
        }
    };
    tasks.spawn(deliver(
        from_client,
        server_write,
        Delivered::new(
            &shared,
            Direction::Up,
            reset_up,
            reset.clone(),
            activity.clone(),
        ),
    ));
    let (to_client, from_server) = mpsc::unbounded_channel();
    if let Some(idle) = config.idle_timeout {
        tasks.spawn(close_when_idle(
            idle,
            delay,
            activity.clone(),
            to_client.clone(),
        ));
    }
    let room = Arc::new(Semaphore::new(IN_FLIGHT));
    tasks.spawn(transmit(
        server_read,
        Shaper::new(&shared, Direction::Down, accepted, accepted + 4 * delay),
        to_client,
        room,
    ));
    tasks.spawn(deliver(
        from_server,
        Box::new(client_write),
        Delivered::new(
            &shared,
            Direction::Down,
            reset_down,
            reset.clone(),
            activity,
        ),
    ));
    // A reset first: the direction that cuts the connection notifies and then ends, and when it
    // was the last task running both branches are ready at once (a client that had sent its FIN
    // got a FIN back instead of the RST).
    tokio::select! {
        biased;
        _ = reset.notified() => {
            arm_reset(&client_handle);
            arm_reset(&upstream_handle);
            tasks.shutdown().await;
        }
        _ = async { while tasks.join_next().await.is_some() {} } => {}
    }
}

/// Closes the connection towards the client once nothing has crossed it for `idle`.
async fn close_when_idle(
    idle: Duration,
    delay: Duration,
    activity: Arc<std::sync::Mutex<Instant>>,
    to_client: mpsc::UnboundedSender<Delivery>,
) {
    loop {
        let due = *activity.lock().unwrap_or_else(|p| p.into_inner()) + idle;
        if Instant::now() >= due {
            let _ = to_client.send(Delivery {
                at: Instant::now() + delay,
                cargo: Cargo::Close,
            });
            return;
        }
        tokio::select! {
            _ = sleep_until(due) => {}
            // The connection ended otherwise.
            _ = to_client.closed() => return,
        }
    }
}

async fn terminate_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    wire: tokio::io::DuplexStream,
    mut upstream: TcpStream,
) {
    if let Ok(mut tls) = acceptor.accept(wire).await {
        let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

enum Cargo {
    Data(Bytes, OwnedSemaphorePermit),
    /// The sender closed its side (a FIN follows the data).
    Close,
    /// The sender's side failed: the connection is reset.
    Reset,
}

/// What one direction carries, with the moment it reaches the other side.
struct Delivery {
    at: Instant,
    cargo: Cargo,
}

/// Reads one side and puts what it reads on the link.
async fn transmit(
    mut source: Reader,
    mut shaper: Shaper,
    link: mpsc::UnboundedSender<Delivery>,
    room: Arc<Semaphore>,
) {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let Ok(mut reserved) = room.clone().acquire_many_owned(CHUNK as u32).await else {
            return;
        };
        let read = source.read(&mut buffer).await;
        let now = Instant::now();
        let length = match read {
            Ok(length) if length > 0 => length,
            _ => {
                let cargo = if read.is_ok() {
                    Cargo::Close
                } else {
                    Cargo::Reset
                };
                let _ = link.send(Delivery {
                    at: shaper.last_arrival(now),
                    cargo,
                });
                return;
            }
        };
        let mut taken = reserved
            .split(length)
            .expect("a chunk fits its reservation");
        drop(reserved);
        let (pieces, busy) = shaper.schedule(now, Bytes::copy_from_slice(&buffer[..length]));
        for (bytes, at) in pieces {
            let permit = taken.split(bytes.len()).expect("the pieces make the chunk");
            let cargo = Cargo::Data(bytes, permit);
            if link.send(Delivery { at, cargo }).is_err() {
                return;
            }
        }
        // A sender faster than the transmitter waits for it, as behind a bottleneck.
        if busy > now + QUEUE {
            sleep_until(busy - QUEUE).await;
        }
    }
}

/// The receiving end of one direction: what it has delivered, and whether it ends the
/// connection at a byte count.
struct Delivered {
    shared: Arc<Shared>,
    direction: Direction,
    bytes: u64,
    reset_after: Option<u64>,
    reset: Arc<Notify>,
    /// When either direction last delivered anything.
    activity: Arc<std::sync::Mutex<Instant>>,
}

impl Delivered {
    fn new(
        shared: &Arc<Shared>,
        direction: Direction,
        reset_after: Option<u64>,
        reset: Arc<Notify>,
        activity: Arc<std::sync::Mutex<Instant>>,
    ) -> Delivered {
        Delivered {
            shared: shared.clone(),
            direction,
            bytes: 0,
            reset_after,
            reset,
            activity,
        }
    }

    fn count(&mut self, length: usize) {
        self.bytes += length as u64;
        *self.activity.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        let counters = &self.shared.counters;
        let counter = match self.direction {
            Direction::Up => &counters.bytes_up,
            Direction::Down => &counters.bytes_down,
        };
        Counters::add(counter, length as u64);
    }
}

/// Writes what the link carries to the other side, each piece at its moment.
async fn deliver(
    mut link: mpsc::UnboundedReceiver<Delivery>,
    mut sink: Writer,
    mut delivered: Delivered,
) {
    while let Some(Delivery { at, cargo }) = link.recv().await {
        sleep_until(at).await;
        match cargo {
            Cargo::Data(mut bytes, _room) => {
                let cut = delivered.reset_after.and_then(|after| {
                    let left = after.saturating_sub(delivered.bytes);
                    (left <= bytes.len() as u64).then_some(left as usize)
                });
                if let Some(left) = cut {
                    bytes.truncate(left);
                }
                if sink.write_all(&bytes).await.is_err() {
                    delivered.reset.notify_one();
                    return;
                }
                delivered.count(bytes.len());
                if cut.is_some() {
                    let _ = sink.flush().await;
                    Counters::add(&delivered.shared.counters.resets, 1);
                    delivered.reset.notify_one();
                    return;
                }
            }
            Cargo::Close => {
                let _ = sink.shutdown().await;
                return;
            }
            Cargo::Reset => {
                delivered.reset.notify_one();
                return;
            }
        }
    }
}

/// A transmitter at a fixed rate: when bytes offered at some moment have left it. A token bucket
/// [`BURST`] deep: bytes offered a little late (the timer woke late upstream of it) use the
/// time it stood idle, rather than losing it for good.
struct Bucket {
    seconds_per_byte: f64,
    free: Instant,
}

impl Bucket {
    fn new(rate: u64, since: Instant) -> Bucket {
        Bucket {
            seconds_per_byte: 1.0 / rate as f64,
            free: since,
        }
    }

    fn transmit(&mut self, offered: Instant, length: usize) -> Instant {
        let begin = self.free.max(offered.checked_sub(BURST).unwrap_or(offered));
        let end = begin + Duration::from_secs_f64(length as f64 * self.seconds_per_byte);
        self.free = end.max(offered);
        self.free
    }
}

/// One direction of one connection: when each chunk arrives on the other side.
struct Shaper {
    shared: Arc<Shared>,
    bucket: Option<Bucket>,
    total: Option<Arc<Mutex<Bucket>>>,
    /// The accept: periodic stalls count from it.
    opened: Instant,
    /// Nothing is transmitted before this (a stall after a byte count).
    held_until: Instant,
    sent: u64,
    /// The previous chunk's arrival (at first, the handshake's): no chunk arrives before it.
    arrived: Instant,
    /// The periodic stall last counted.
    stalled_window: Option<u128>,
    rng: fastrand::Rng,
}

impl Shaper {
    fn new(
        shared: &Arc<Shared>,
        direction: Direction,
        opened: Instant,
        first_arrival: Instant,
    ) -> Shaper {
        let index = match direction {
            Direction::Up => 0,
            Direction::Down => 1,
        };
        Shaper {
            shared: shared.clone(),
            bucket: shared.config.rate.map(|rate| Bucket::new(rate, opened)),
            total: shared.total.as_ref().map(|total| total[index].clone()),
            opened,
            held_until: opened,
            sent: 0,
            arrived: first_arrival,
            stalled_window: None,
            rng: fastrand::Rng::new(),
        }
    }

    /// The pieces of a chunk read at `now` (two where a stall begins inside it) with their
    /// arrivals, and when the transmitter is free again.
    fn schedule(&mut self, now: Instant, mut chunk: Bytes) -> (Vec<(Bytes, Instant)>, Instant) {
        let stall = self.shared.config.stall;
        let mut pieces = Vec::with_capacity(1);
        let mut start = now.max(self.held_until);
        while !chunk.is_empty() {
            let before = self.sent;
            let piece = match stall {
                Some(Stall::After { bytes, .. })
                    if before < bytes && bytes - before < chunk.len() as u64 =>
                {
                    chunk.split_to((bytes - before) as usize)
                }
                _ => std::mem::take(&mut chunk),
            };
            start = self.out_of_stall(start);
            let end = self.transmit(start, piece.len());
            self.sent += piece.len() as u64;
            if let Some(Stall::After { bytes, duration }) = stall {
                if before < bytes && self.sent >= bytes {
                    self.held_until = end + duration;
                    Counters::add(&self.shared.counters.stalls, 1);
                }
            }
            start = end.max(self.held_until);
            pieces.push((piece, self.arrival(end)));
        }
        (pieces, start)
    }

    /// When the end of the stream (a FIN, or a reset) sent at `now` arrives: after the data.
    fn last_arrival(&mut self, now: Instant) -> Instant {
        let start = self.out_of_stall(now.max(self.held_until));
        self.arrival(start)
    }

    fn transmit(&mut self, start: Instant, length: usize) -> Instant {
        let mut end = start;
        if let Some(bucket) = &mut self.bucket {
            end = end.max(bucket.transmit(start, length));
        }
        if let Some(total) = &self.total {
            end = end.max(total.lock().unwrap().transmit(start, length));
        }
        end
    }

    fn arrival(&mut self, sent: Instant) -> Instant {
        let config = &self.shared.config;
        let jitter = Duration::from_nanos(self.rng.u64(0..=config.jitter.as_nanos() as u64));
        self.arrived = self.arrived.max(sent + config.delay + jitter);
        self.arrived
    }

    /// `t`, or the end of the periodic stall `t` falls in.
    fn out_of_stall(&mut self, t: Instant) -> Instant {
        let Some(Stall::Every { period, duration }) = self.shared.config.stall else {
            return t;
        };
        let cycle = (period + duration).as_nanos();
        let since = t.saturating_duration_since(self.opened).as_nanos();
        let phase = since % cycle.max(1);
        if phase < period.as_nanos() {
            return t;
        }
        let window = since / cycle;
        if self.stalled_window != Some(window) {
            self.stalled_window = Some(window);
            Counters::add(&self.shared.counters.stalls, 1);
        }
        t + Duration::from_nanos((cycle - phase) as u64)
    }
}

/// A byte count: `65536`, `64KiB`, `1.5MB`, `10Mbit`.
pub fn parse_bytes(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "kbit" | "Kbit" => 1e3 / 8.0,
        "Mbit" => 1e6 / 8.0,
        "Gbit" => 1e9 / 8.0,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes.round() as u64)
}

/// A rate in bytes per second: `20MB/s`, `512KiB/s`, `100Mbit/s`.
pub fn parse_rate(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    parse_bytes(raw.strip_suffix("/s").unwrap_or(raw)).filter(|&rate| rate > 0)
}

/// `host:port` from `host:port` or from a URL (`http://127.0.0.1:5000/`).
pub fn upstream_address(raw: &str) -> String {
    let rest = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    rest.split('/').next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaper(config: WanConfig, at: Instant) -> Shaper {
        let shared = Arc::new(Shared {
            config,
            acceptor: None,
            counters: Counters::default(),
            total: None,
        });
        Shaper::new(&shared, Direction::Up, at, at)
    }

    fn arrivals(shaper: &mut Shaper, now: Instant, lengths: &[usize]) -> Vec<Duration> {
        lengths
            .iter()
            .flat_map(|&length| shaper.schedule(now, Bytes::from(vec![0; length])).0)
            .map(|(_, at)| at - now)
            .collect()
    }

    #[test]
    fn a_rate_serialises_chunks_before_their_delay() {
        let now = Instant::now();
        let mut link = shaper(
            WanConfig {
                delay: Duration::from_millis(100),
                rate: Some(1_000_000),
                ..WanConfig::default()
            },
            now,
        );
        let ms = Duration::from_millis;
        assert_eq!(
            arrivals(&mut link, now, &[10_000, 10_000]),
            [ms(110), ms(120)]
        );
    }

    #[test]
    fn jitter_never_reorders() {
        let now = Instant::now();
        let mut link = shaper(
            WanConfig {
                delay: Duration::from_millis(10),
                jitter: Duration::from_millis(50),
                ..WanConfig::default()
            },
            now,
        );
        let times = arrivals(&mut link, now, &[1; 200]);
        assert!(times.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!(times.iter().all(|&t| t >= Duration::from_millis(10)));
        assert!(times[199] <= Duration::from_millis(60));
    }

    #[test]
    fn a_stall_begins_at_its_byte() {
        let now = Instant::now();
        let mut link = shaper(
            WanConfig {
                delay: Duration::from_millis(10),
                stall: Some(Stall::After {
                    bytes: 1500,
                    duration: Duration::from_millis(300),
                }),
                ..WanConfig::default()
            },
            now,
        );
        let (pieces, busy) = link.schedule(now, Bytes::from(vec![0; 1000]));
        assert_eq!(pieces.len(), 1);
        assert_eq!(busy, now);
        let (pieces, busy) = link.schedule(now, Bytes::from(vec![0; 1000]));
        let split: Vec<_> = pieces.iter().map(|(b, at)| (b.len(), *at - now)).collect();
        let ms = Duration::from_millis;
        assert_eq!(split, [(500, ms(10)), (500, ms(310))]);
        assert_eq!(busy, now + ms(300));
        assert_eq!(link.shared.counters.snapshot().stalls, 1);
    }

    #[test]
    fn periodic_stalls_hold_what_falls_in_them() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut link = shaper(
            WanConfig {
                stall: Some(Stall::Every {
                    period: ms(100),
                    duration: ms(50),
                }),
                ..WanConfig::default()
            },
            start,
        );
        assert_eq!(link.out_of_stall(start + ms(99)), start + ms(99));
        assert_eq!(link.out_of_stall(start + ms(120)), start + ms(150));
        assert_eq!(link.out_of_stall(start + ms(170)), start + ms(170));
        assert_eq!(link.out_of_stall(start + ms(260)), start + ms(300));
        assert_eq!(link.shared.counters.snapshot().stalls, 2);
    }

    #[test]
    fn listed_connections_are_reset_downstream_only() {
        let reset = Reset {
            after: 1000,
            which: Resetting::Connections(vec![3, 7]),
        };
        assert_eq!(reset.thresholds(1), (None, None));
        assert_eq!(reset.thresholds(3), (None, Some(1000)));
        assert_eq!(reset.thresholds(7), (None, Some(1000)));
        let every = Reset {
            after: 5,
            which: Resetting::Probability(1.0),
        };
        assert_eq!(every.thresholds(2), (Some(5), Some(5)));
    }

    #[test]
    fn sizes_rates_and_upstreams_parse() {
        assert_eq!(parse_bytes("65536"), Some(65536));
        assert_eq!(parse_bytes("64KiB"), Some(65536));
        assert_eq!(parse_bytes("1.5MB"), Some(1_500_000));
        assert_eq!(parse_rate("20MB/s"), Some(20_000_000));
        assert_eq!(parse_rate("100Mbit/s"), Some(12_500_000));
        assert_eq!(parse_rate("0MB/s"), None);
        assert_eq!(parse_rate("fast"), None);
        assert_eq!(upstream_address("http://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_eq!(upstream_address("localhost:9"), "localhost:9");
    }
}
