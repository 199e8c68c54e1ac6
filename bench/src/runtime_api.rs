//! A minimal Lambda Runtime API, the interface a function's runtime client
//! polls in the cloud: `GET /2018-06-01/runtime/invocation/next` hands out
//! the next event, `POST .../invocation/{id}/response` (or `/error`) answers
//! it, `POST .../init/error` reports a failed start. One server per function
//! process, so the bench sees exactly when that process first asked for work
//! and when it answered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::BenchError;

const PREFIX: &str = "/2018-06-01/runtime/";

/// How a function answered one invocation.
#[derive(Debug)]
pub struct Answer {
    /// `true` for `/response`, `false` for `/error`.
    pub ok: bool,
    pub body: Vec<u8>,
    /// When the answer arrived.
    pub at: Instant,
}

struct Invocation {
    id: String,
    event: Vec<u8>,
    deadline: Duration,
    reply: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Shared {
    queue: tokio::sync::Mutex<Option<mpsc::UnboundedReceiver<Invocation>>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    first_poll: OnceLock<Instant>,
    init_error: Mutex<Option<String>>,
}

/// A running Runtime API on a free loopback port.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    queue: mpsc::UnboundedSender<Invocation>,
    shared: Arc<Shared>,
    next_id: std::sync::atomic::AtomicU64,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RuntimeApi {
    pub async fn start() -> Result<Self, BenchError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        *shared.queue.lock().await = Some(rx);
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, s.clone()));
            }
        });
        Ok(Self {
            addr,
            queue: tx,
            shared,
            next_id: Default::default(),
            task,
        })
    }

    /// When the function first asked for an event: its init was done.
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared.first_poll.get().copied()
    }

    /// Hands the function one event and waits for its answer. `deadline` is
    /// the time the function is told it has (Lambda's timeout).
    pub async fn invoke(
        &self,
        event: Vec<u8>,
        deadline: Duration,
        wait: Duration,
    ) -> Result<Answer, BenchError> {
        let id = format!(
            "bench-{}",
            self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Invocation {
                id,
                event,
                deadline,
                reply,
            })
            .map_err(|_| BenchError::Runtime("the runtime API has stopped".into()))?;
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(_)) => Err(BenchError::Runtime("the invocation was dropped".into())),
            Err(_) => {
                let init = self.shared.init_error.lock().map(|e| e.clone()).unwrap_or(None);
                Err(BenchError::Runtime(match init {
                    Some(e) => format!("the function failed to start: {e}"),
                    None => format!("no answer within {} s", wait.as_secs()),
                }))
            }
        }
    }
}

/// One parsed HTTP/1.1 request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    pub close: bool,
}

/// Reads one request (`Content-Length` or chunked body); `None` at end of stream.
pub async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(std::io::Error::other(format!("bad request line {line:?}")));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut length = 0usize;
    let mut chunked = false;
    let mut close = false;
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    length = value
                        .parse()
                        .map_err(|_| std::io::Error::other("bad content-length"))?
                }
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).await?;
            let size_text = line.trim().split(';').next().unwrap_or_default();
            let size =
                usize::from_str_radix(size_text, 16).map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if r.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).await?;
            line.clear();
            r.read_line(&mut line).await?;
        }
    } else {
        body.resize(length, 0);
        r.read_exact(&mut body).await?;
    }
    Ok(Some(Request {
        method,
        path,
        body,
        close,
    }))
}

fn response(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    while let Ok(Some(req)) = read_request(&mut read).await {
        let route = req.path.strip_prefix(PREFIX).unwrap_or_default();
        let reply = match (req.method.as_str(), route) {
            ("GET", "invocation/next") => {
                let _ = shared.first_poll.set(Instant::now());
                // One poller at a time, as one function process polls.
                let next = {
                    let mut queue = shared.queue.lock().await;
                    match queue.as_mut() {
                        Some(q) => q.recv().await,
                        None => None,
                    }
                };
                let Some(inv) = next else { return };
                let deadline_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| (d + inv.deadline).as_millis())
                    .unwrap_or(0);
                let headers = [
                    ("lambda-runtime-aws-request-id", inv.id.clone()),
                    ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
                    (
                        "lambda-runtime-invoked-function-arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:bench".to_owned(),
                    ),
                    ("lambda-runtime-trace-id", format!("Root=1-00000000-{:024}", 0)),
                    ("content-type", "application/json".to_owned()),
                ];
                if let Ok(mut w) = shared.waiting.lock() {
                    w.insert(inv.id, inv.reply);
                }
                response("200 OK", &headers, &inv.event)
            }
            ("POST", "init/error") => {
                if let Ok(mut e) = shared.init_error.lock() {
                    *e = Some(String::from_utf8_lossy(&req.body).into_owned());
                }
                response("202 Accepted", &[], b"{}")
            }
            ("POST", r) if r.starts_with("invocation/") => {
                let rest = &r["invocation/".len()..];
                let (id, kind) = rest.rsplit_once('/').unwrap_or((rest, ""));
                let sender = shared.waiting.lock().ok().and_then(|mut w| w.remove(id));
                if let Some(sender) = sender {
                    let _ = sender.send(Answer {
                        ok: kind == "response",
                        body: req.body,
                        at: Instant::now(),
                    });
                }
                response("202 Accepted", &[], b"{}")
            }
            _ => response("404 Not Found", &[], b"{}"),
        };
        if write.write_all(&reply).await.is_err() || req.close {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(raw: &str) -> Option<Request> {
        let mut r = BufReader::new(raw.as_bytes());
        read_request(&mut r).await.unwrap()
    }

    #[tokio::test]
    async fn reads_length_and_chunked_bodies() {
        let r = parse("POST /a HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
            .await
            .unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.body.as_slice(), r.close),
            ("POST", "/a", &b"hello"[..], true)
        );
        let r = parse("POST /b HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: t\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(!r.close);
        assert_eq!(parse("").await, None);
    }

    #[tokio::test]
    async fn hands_out_an_event_and_takes_its_answer() {
        let api = RuntimeApi::start().await.unwrap();
        let addr = api.addr;
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let id = text
                .lines()
                .find_map(|l| l.strip_prefix("lambda-runtime-aws-request-id: "))
                .unwrap()
                .to_owned();
            assert!(text.ends_with("{\"n\":1}"), "{text}");
            let body = "{\"echo\":1}";
            s.write_all(
                format!(
                    "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            let n = s.read(&mut buf).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 202"));
        });
        let answer = api
            .invoke(
                b"{\"n\":1}".to_vec(),
                Duration::from_secs(3),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        client.await.unwrap();
        assert!(answer.ok);
        assert_eq!(answer.body, b"{\"echo\":1}");
        assert!(api.first_poll().is_some());
    }
}
