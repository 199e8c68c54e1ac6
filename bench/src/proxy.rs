//! A TCP proxy in front of the emulator that records when the emulator was
//! working for the processes behind it: on each connection, from a
//! request's first byte to its response's last byte. Subtracting that time
//! from a measurement takes the emulator out of it: what is left is the
//! function's own time (start-up, runtime client, SDK, handler).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use crate::BenchError;

/// One request at the emulator: when it started, when its answer ended,
/// and its operation.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub start: Instant,
    pub end: Instant,
    pub operation: String,
}

type Intervals = Arc<Mutex<Vec<Exchange>>>;

/// The operation a request names: its `X-Amz-Target` (`DynamoDB_20120810.TransactWriteItems`,
/// `AmazonSQS.SendMessage`), else its method (S3's REST calls).
pub fn operation(head: &[u8]) -> String {
    let text = String::from_utf8_lossy(&head[..head.len().min(4096)]);
    let mut lines = text.split("\r\n");
    let method = lines
        .next()
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("?")
        .to_owned();
    lines
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("x-amz-target")
                .then(|| value.trim().to_owned())
        })
        .map(|t| t.rsplit_once('.').map_or(t.clone(), |(_, op)| op.to_owned()))
        .unwrap_or_else(|| format!("S3 {method}"))
}

pub struct TimingProxy {
    pub addr: SocketAddr,
    intervals: Intervals,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TimingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TimingProxy {
    pub async fn start(upstream: SocketAddr) -> Result<Self, BenchError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let intervals: Intervals = Arc::default();
        let recorded = intervals.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        relay(client, server, recorded).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            intervals,
            task,
        })
    }

    /// A proxy in front of this process's emulator.
    pub async fn in_front_of_emulator() -> Result<Self, BenchError> {
        let upstream: SocketAddr = stockroom_tests::emulator()
            .endpoint
            .trim_start_matches("http://")
            .parse()
            .map_err(|e| BenchError::Runtime(format!("the emulator's address: {e}")))?;
        Self::start(upstream).await
    }

    /// The endpoint URL that reaches the emulator through this proxy.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests that started within `from..to`.
    pub fn exchanges(&self, from: Instant, to: Instant) -> Vec<Exchange> {
        self.intervals
            .lock()
            .map(|i| {
                i.iter()
                    .filter(|e| e.start >= from && e.start < to)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How long, within `from..to`, at least one request was at the emulator.
    pub fn busy(&self, from: Instant, to: Instant) -> Duration {
        let intervals = self
            .intervals
            .lock()
            .map(|i| i.iter().map(|e| (e.start, e.end)).collect())
            .unwrap_or_default();
        union_within(intervals, from, to)
    }
}

/// The length of the union of `intervals`, clipped to `from..to`.
pub fn union_within(mut intervals: Vec<(Instant, Instant)>, from: Instant, to: Instant) -> Duration {
    intervals.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (a, b) in intervals {
        let (a, b) = (a.max(from), b.min(to));
        if a >= b {
            continue;
        }
        current = match current {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((a, b)) = current {
        total += b - a;
    }
    total
}

/// How many of each operation, e.g. `1900 TransactWriteItems + 900 SendMessage`.
pub fn mix(exchanges: &[Exchange]) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for e in exchanges {
        *counts.entry(e.operation.as_str()).or_default() += 1;
    }
    let mut parts: Vec<(usize, &str)> = counts.into_iter().map(|(op, n)| (n, op)).collect();
    parts.sort_by(|a, b| b.cmp(a));
    parts
        .iter()
        .map(|(n, op)| format!("{n} {op}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Per connection: the index of the open request's interval, and whether
/// its response has begun (the next client bytes are then a new request).
#[derive(Default)]
struct Pending {
    open: Option<usize>,
    answered: bool,
}

async fn relay(client: TcpStream, server: TcpStream, recorded: Intervals) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let exchange = Arc::new(Mutex::new(Pending::default()));
    let (up_rec, up_ex) = (recorded.clone(), exchange.clone());
    let up = pump(client_read, server_write, move |chunk, now| {
        if let (Ok(mut ex), Ok(mut rec)) = (up_ex.lock(), up_rec.lock()) {
            if ex.open.is_none() || ex.answered {
                rec.push(Exchange {
                    start: now,
                    end: now,
                    operation: operation(chunk),
                });
                ex.open = Some(rec.len() - 1);
                ex.answered = false;
            }
        }
    });
    let down = pump(server_read, client_write, move |_, now| {
        if let (Ok(mut ex), Ok(mut rec)) = (exchange.lock(), recorded.lock()) {
            if let Some(i) = ex.open {
                if let Some(exchange) = rec.get_mut(i) {
                    exchange.end = now;
                }
                ex.answered = true;
            }
        }
    });
    tokio::join!(up, down);
}

/// Copies `from` to `to` until either side closes, showing `seen` each
/// chunk and when it arrived before passing it on; then closes `to`.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut seen: impl FnMut(&[u8], Instant)) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        seen(&buf[..n], Instant::now());
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unions_overlapping_intervals_within_a_window() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let iv = vec![
            (ms(10), ms(20)),
            (ms(15), ms(30)),
            (ms(40), ms(50)),
            (ms(90), ms(120)),
        ];
        assert_eq!(
            union_within(iv.clone(), ms(0), ms(100)),
            Duration::from_millis(20 + 10 + 10)
        );
        assert_eq!(union_within(iv, ms(25), ms(45)), Duration::from_millis(5 + 5));
        assert_eq!(union_within(vec![], ms(0), ms(1)), Duration::ZERO);
    }

    #[test]
    fn names_the_operation() {
        let dynamo =
            b"POST / HTTP/1.1\r\nhost: x\r\nX-Amz-Target: DynamoDB_20120810.TransactWriteItems\r\n\r\n{}";
        assert_eq!(operation(dynamo), "TransactWriteItems");
        let sqs = b"POST / HTTP/1.1\r\nx-amz-target: AmazonSQS.SendMessage\r\n\r\n";
        assert_eq!(operation(sqs), "SendMessage");
        assert_eq!(
            operation(b"GET /bucket/key HTTP/1.1\r\nhost: x\r\n\r\n"),
            "S3 GET"
        );
    }

    #[tokio::test]
    async fn times_requests_at_the_upstream() {
        // An upstream that answers each line after 30 ms.
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.unwrap();
            let mut buf = [0u8; 64];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
                s.write_all(b"ok\n").await.unwrap();
            }
        });
        let proxy = TimingProxy::start(up_addr).await.unwrap();
        let start = Instant::now();
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        let mut buf = [0u8; 3];
        for _ in 0..2 {
            c.write_all(b"q\n").await.unwrap();
            c.read_exact(&mut buf).await.unwrap();
            // Time the client spends on its own: not the upstream's.
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        let busy = proxy.busy(start, Instant::now());
        let exchanges = proxy.exchanges(start, Instant::now());
        assert_eq!(exchanges.len(), 2);
        assert_eq!(mix(&exchanges), "2 S3 q");
        assert!(busy >= Duration::from_millis(60), "{busy:?}");
        assert!(busy < Duration::from_millis(130), "{busy:?}");
    }
}
