//! `stockroom`, the ops command line, against the stock API run in-process
//! behind a small local HTTP server (each request turned into the function
//! URL event the handler takes), the channel routes against a local fake,
//! SigV4 against the SDK's own signer, and `dlq replay` against the emulator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use serde_json::{json, Value};
use stockroom_cli::api::{self, Target};
use stockroom_cli::client::Api;
use stockroom_cli::dlq;
use stockroom_cli::sign::sign_request;
use stockroom_tests::{emulator, request, stack, stocked, url_event, TestStack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Answers a request instead of the stock API (`None`: the stock API answers).
type Fake = Arc<dyn Fn(&Seen, &str, &Value) -> Option<(u16, Value)> + Send + Sync>;

/// A local function URL: plain HTTP/1.1, one request per connection.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    env_file: std::path::PathBuf,
}

impl Server {
    async fn start(app: Option<stock_api::App>, fake: Fake) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Arc::new(app);
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (app, fake, log) = (app.clone(), fake.clone(), log.clone());
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut conn).await else {
                        return;
                    };
                    log.lock().unwrap().push(req.clone());
                    let (status, body) = answer(app.as_ref().as_ref(), &fake, &req).await;
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(body.as_bytes()).await;
                });
            }
        });
        let env_file = std::env::temp_dir().join(format!("stockroom-cli-{}-{port}.env", std::process::id()));
        std::fs::write(
            &env_file,
            format!(
                "LOCAL_LAMBDA_URL=http://127.0.0.1:{port}\nAWS_ENDPOINT_URL={}\nAWS_REGION=us-east-1\nAWS_ACCESS_KEY_ID=test\nAWS_SECRET_ACCESS_KEY=test\n",
                emulator().endpoint
            ),
        )
        .unwrap();
        Self { port, seen, env_file }
    }

    /// Runs `stockroom --local --env-file <this server> <args>`: stdout and exit code.
    async fn cli(&self, args: &[&str]) -> (String, u8) {
        let env = self.env_file.to_str().unwrap().to_owned();
        let mut all = vec!["stockroom", "--local", "--env-file", &env];
        all.extend_from_slice(args);
        stockroom_cli::run(all).await
    }

    /// The same with `--json`: the document printed.
    async fn json(&self, args: &[&str]) -> (Value, u8) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (out, code) = self.cli(&all).await;
        (serde_json::from_str(&out).unwrap_or(Value::Null), code)
    }
}

async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        method,
        target,
        headers,
        body,
    })
}

/// The fake's answer, else the stock API's to the function URL event.
async fn answer(app: Option<&stock_api::App>, fake: &Fake, req: &Seen) -> (u16, String) {
    let (path, raw_query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let route = path.strip_prefix("/lambda-url/stock-api").unwrap_or(path);
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    if let Some((status, doc)) = fake(req, route, &body) {
        return (status, doc.to_string());
    }
    let Some(app) = app else {
        return (404, json!({"error": "not_found"}).to_string());
    };
    let decoded: Vec<(String, String)> = raw_query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_owned(),
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        })
        .collect();
    let query: Vec<(&str, &str)> = decoded.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let headers: Vec<(&str, String)> = req.headers.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let res = stock_api::handle(
        app,
        request(url_event(&req.method, path, &query, &headers, &req.body)),
    )
    .await;
    let status = res.status().as_u16();
    let text = match res.body() {
        lambda_http::Body::Text(t) => t.clone(),
        lambda_http::Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    (status, text)
}

fn no_fake() -> Fake {
    Arc::new(|_, _, _| None)
}

#[tokio::test]
async fn stock_ledger_and_adjustments_through_the_command_line() {
    let s = stocked("CLI-CAP", "shop-1", 5).await;
    let server = Server::start(Some(s.api_app()), no_fake()).await;

    let (out, code) = server.cli(&["stock", "get", "CLI-CAP"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("CLI-CAP: 5 available, 0 damaged\nlocation"),
        "{out}"
    );
    assert!(out.contains("\nshop-1 "), "{out}");
    let (doc, code) = server.json(&["stock", "get", "CLI-CAP"]).await;
    assert_eq!((code, doc["available"].as_i64()), (0, Some(5)), "{doc}");

    let adjust = [
        "adjust",
        "CLI-CAP",
        "--location",
        "shop-1",
        "--reason",
        "damage",
        "--actor",
        "ops@test",
    ];
    let (doc, code) = server
        .json(&[&adjust[..], &["--delta", "-2", "--idempotency-key", "k-1"]].concat())
        .await;
    assert_eq!(code, 0, "{doc}");
    assert_eq!(
        (doc["before"].as_i64(), doc["available"].as_i64()),
        (Some(5), Some(3)),
        "{doc}"
    );
    assert_eq!(s.available("CLI-CAP", "shop-1").await, Some(3));
    // Refused: below zero is a 409, exit 3, the API's error document on stdout.
    let (doc, code) = server.json(&[&adjust[..], &["--delta", "-10"]].concat()).await;
    assert_eq!(
        (code, doc["error"].as_str(), doc["current"].as_i64()),
        (3, Some("below_zero"), Some(3))
    );
    let (out, code) = server
        .cli(&[&adjust[..], &["--set", "9", "--expected", "4"]].concat())
        .await;
    assert_eq!((code, out.as_str()), (3, ""));
    assert_eq!(s.available("CLI-CAP", "shop-1").await, Some(3));
    // A table for people.
    let (out, code) = server
        .cli(&[&adjust[..], &["--set", "4", "--note", "recount"]].concat())
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("available   4\n"), "{out}");

    let (doc, code) = server.json(&["stock", "ledger", "CLI-CAP"]).await;
    assert_eq!(code, 0, "{doc}");
    let entries = doc["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{doc}");
    assert_eq!(entries[0]["note"], "recount");
    // One entry a page, every page: the same three, joined into one document.
    let before = server.seen.lock().unwrap().len();
    let (all, code) = server
        .json(&["stock", "ledger", "CLI-CAP", "--limit", "1", "--all"])
        .await;
    assert_eq!(code, 0, "{all}");
    assert_eq!(all["entries"], doc["entries"]);
    assert!(all["next"].is_null());
    assert!(server.seen.lock().unwrap().len() - before >= 3);
    let (out, code) = server.cli(&["stock", "ledger", "CLI-CAP"]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("at "), "{out}");
    assert!(out.contains("ops@test"), "{out}");

    let (doc, code) = server.json(&["stock", "get", "NEVER-SEEN"]).await;
    assert_eq!((code, doc["error"].as_str()), (3, Some("not_found")));
}

#[tokio::test]
async fn a_refused_release_and_an_unreachable_api_have_their_codes() {
    let s = stack().await;
    let server = Server::start(Some(s.api_app()), no_fake()).await;
    let (doc, code) = server
        .json(&[
            "feeds",
            "release",
            "feeds/acme/deliveries/none.csv",
            "--etag",
            "\"e\"",
            "--actor",
            "ops",
            "--reason",
            "checked",
        ])
        .await;
    assert_eq!(code, 3, "{doc}");
    assert!(
        matches!(doc["error"].as_str(), Some("not_found" | "not_held")),
        "{doc}"
    );
    // Nothing listens on the port the env file names: exit 4.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let env = std::env::temp_dir().join(format!("stockroom-cli-closed-{}.env", std::process::id()));
    std::fs::write(&env, format!("LOCAL_LAMBDA_URL=http://127.0.0.1:{closed}\n")).unwrap();
    let (_, code) = stockroom_cli::run([
        "stockroom",
        "--local",
        "--env-file",
        env.to_str().unwrap(),
        "stock",
        "get",
        "A",
    ])
    .await;
    assert_eq!(code, 4);
    // A 5xx is 4 too.
    let failing = Server::start(
        None,
        Arc::new(|_, _, _| Some((503, json!({"error": "unavailable"})))),
    )
    .await;
    assert_eq!(failing.cli(&["feeds", "held"]).await.1, 4);
}

/// The channel routes as the contract describes them, with a reconcile run
/// that is done on its second read and an import run that fails.
fn channel_fake() -> Fake {
    let reads = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let mode = Arc::new(Mutex::new(
        json!({"channel": "web", "mode": "shadow", "since": "t0", "actor": "setup", "reason": "default"}),
    ));
    Arc::new(move |req, route, body| {
        let run = |id: &str, kind: &str, status: &str, totals: Value| json!({"id": id, "kind": kind, "status": status, "started_at": "t1", "finished_at": "t2", "totals": totals});
        Some(match (req.method.as_str(), route) {
            ("GET", "/feeds/held") => (
                200,
                json!({"held": [{"feed": "acme/a.csv", "etag": "\"e1\"", "reason": "shrink", "held_at": "t",
                "release": {"method": "POST", "path": "/feeds/release", "body": {"feed": "acme/a.csv", "etag": "\"e1\""}}}]}),
            ),
            ("GET", "/channels/web/mode") => (200, mode.lock().unwrap().clone()),
            ("PUT", "/channels/web/mode") => {
                let mut m = mode.lock().unwrap();
                *m = json!({"channel": "web", "mode": body["mode"], "since": "t9", "actor": body["actor"], "reason": body["reason"]});
                (200, m.clone())
            }
            ("GET", "/channels/nowhere/mode") => {
                (404, json!({"error": "not_found", "message": "no connector"}))
            }
            ("POST", "/channels/web/reconcile") => (
                202,
                json!({"run": {"id": "rec-1", "kind": "reconcile", "status": "queued"}}),
            ),
            ("POST", "/channels/web/import") => (
                202,
                json!({"run": {"id": "imp-1", "kind": "import", "status": "queued"}}),
            ),
            ("POST", "/channels/web/resync") => {
                let n = if body["all"] == true {
                    40
                } else {
                    body["skus"].as_array().map_or(0, Vec::len)
                };
                (200, json!({"channel": "web", "queued": n}))
            }
            ("GET", r) if r.starts_with("/channels/web/runs/") => {
                let id = r.rsplit('/').next().unwrap().to_owned();
                let mut reads = reads.lock().unwrap();
                let n = reads.entry(id.clone()).or_default();
                *n += 1;
                match (id.as_str(), *n) {
                    ("imp-1", _) => (
                        200,
                        json!({"id": "imp-1", "kind": "import", "status": "failed", "error": "the shop refused the token"}),
                    ),
                    (_, 1) => (200, run(&id, "reconcile", "running", json!({}))),
                    _ => (
                        200,
                        run(
                            &id,
                            "reconcile",
                            "done",
                            json!({"compared": 3, "equal": 1, "differing": 2}),
                        ),
                    ),
                }
            }
            ("GET", "/channels/web/drift") => {
                let page = match req.target.contains("cursor=p2") {
                    false => {
                        json!({"skus": [{"sku": "A", "channel": 4, "expected": 5, "since": "t0", "explained": true}],
                                    "channel_only": ["X"], "master_only": [], "next": "p2"})
                    }
                    true => {
                        json!({"skus": [{"sku": "B", "channel": 1, "expected": 0, "since": "t1", "explained": false}],
                                   "channel_only": [], "master_only": ["M"], "next": null})
                    }
                };
                let mut doc = json!({"channel": "web", "run": {"id": "rec-1", "status": "done", "finished_at": "t2"},
                                     "totals": {"compared": 3, "equal": 1, "differing": 2, "unmapped": 0, "units_at_stake": 2}});
                for (k, v) in page.as_object().unwrap() {
                    doc[k] = v.clone();
                }
                (200, doc)
            }
            _ => return None,
        })
    })
}

#[tokio::test]
async fn channel_commands_follow_the_contract() {
    let server = Server::start(None, channel_fake()).await;

    let (out, code) = server.cli(&["channels", "mode", "web"]).await;
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "channel  web\nmode     shadow\nsince    t0\nactor    setup\nreason   default\n"
        )
    );
    let (doc, code) = server
        .json(&[
            "channels",
            "mode",
            "web",
            "live",
            "--actor",
            "ops",
            "--reason",
            "drift is zero",
        ])
        .await;
    assert_eq!(
        (code, doc["mode"].as_str(), doc["actor"].as_str()),
        (0, Some("live"), Some("ops"))
    );
    let put = server
        .seen
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r.method == "PUT")
        .cloned()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&put.body).unwrap(),
        json!({"mode": "live", "actor": "ops", "reason": "drift is zero"})
    );
    assert_eq!(server.cli(&["channels", "mode", "nowhere"]).await.1, 3);

    // The first page has only explained drift: exit 0; every page: exit 5.
    let (out, code) = server.cli(&["channels", "drift", "web"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("more: --all"), "{out}");
    let (doc, code) = server.json(&["channels", "drift", "web", "--all"]).await;
    assert_eq!(code, 5, "{doc}");
    assert_eq!(doc["skus"].as_array().unwrap().len(), 2);
    assert_eq!(
        (doc["channel_only"].clone(), doc["master_only"].clone()),
        (json!(["X"]), json!(["M"]))
    );
    // --reconcile starts a run and waits for it (running, then done) before reading.
    let (out, code) = server.cli(&["channels", "drift", "web", "--reconcile"]).await;
    assert_eq!(code, 0, "{out}");
    let seen: Vec<String> = server
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    let at = seen
        .iter()
        .position(|r| r.ends_with("/channels/web/reconcile"))
        .unwrap();
    assert_eq!(
        seen[at..at + 4],
        [
            "POST /lambda-url/stock-api/channels/web/reconcile",
            "GET /lambda-url/stock-api/channels/web/runs/rec-1",
            "GET /lambda-url/stock-api/channels/web/runs/rec-1",
            "GET /lambda-url/stock-api/channels/web/drift",
        ]
    );

    let (doc, code) = server
        .json(&[
            "channels", "resync", "web", "--sku", "A", "--sku", "B", "--actor", "ops", "--reason", "dlq",
        ])
        .await;
    assert_eq!((code, doc["queued"].as_i64()), (0, Some(2)));
    assert_eq!(
        server
            .cli(&["channels", "resync", "web", "--all", "--actor", "ops", "--reason", "r"])
            .await,
        ("web: 40 SKU(s) queued\n".into(), 0)
    );

    // An import waits for its run; a failed run is exit 3. --no-wait answers the queued run.
    assert_eq!(
        server
            .cli(&["channels", "import", "web", "--actor", "ops", "--reason", "first"])
            .await
            .1,
        3
    );
    let (doc, code) = server
        .json(&[
            "channels",
            "import",
            "web",
            "--actor",
            "ops",
            "--reason",
            "first",
            "--no-wait",
        ])
        .await;
    assert_eq!((code, doc["status"].as_str()), (0, Some("queued")));

    let (out, code) = server.cli(&["feeds", "held"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "feed        etag  reason  held_at\nacme/a.csv  \"e1\"  shrink  t\n"
    );
}

const REGION: &str = "eu-west-1";
const HOST: &str = "abc123xyz.lambda-url.eu-west-1.on.aws";

fn credentials() -> Credentials {
    Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("session-token".into()),
        None,
        "test",
    )
}

/// The Authorization header the SDK's own signer gives a request built by hand.
fn sdk_authorization(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> String {
    let identity = credentials().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("lambda")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable =
        SignableRequest::new(method, uri, headers.iter().copied(), SignableBody::Bytes(body)).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder().method(method).uri(uri).body(()).unwrap();
    instructions.apply_to_request_http1x(&mut req);
    req.headers()["authorization"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_cli_signs_as_the_sdk_does() {
    let target = Target::cloud(&format!("https://{HOST}/"), Some("us-east-1")).unwrap();
    assert_eq!(target.sign_region.as_deref(), Some(REGION));
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let ua = concat!("stockroom-cli/", env!("CARGO_PKG_VERSION"));

    let mut get = api::ledger("JKT BLUE/M", Some(20), Some("a+b="))
        .to_http(&target)
        .unwrap();
    assert_eq!(get.headers()["host"], HOST);
    let uri = format!("https://{HOST}/stock/JKT%20BLUE%2FM/ledger?limit=20&cursor=a%2Bb%3D");
    assert_eq!(get.uri().to_string(), uri);
    sign_request(&mut get, &credentials(), REGION, time).unwrap();
    let expected = sdk_authorization(
        "GET",
        &uri,
        &[("host", HOST), ("accept", "application/json"), ("user-agent", ua)],
        b"",
        time,
    );
    assert_eq!(get.headers()["authorization"], expected.as_str());
    assert!(expected.contains("/eu-west-1/lambda/aws4_request"), "{expected}");

    let body = json!({"skus": ["A"], "actor": "ops", "reason": "r"});
    let mut post = api::resync("web", &api::Skus::These(vec!["A".into()]), "ops", "r")
        .to_http(&target)
        .unwrap();
    assert_eq!(serde_json::from_slice::<Value>(post.body()).unwrap(), body);
    let raw = post.body().clone();
    sign_request(&mut post, &credentials(), REGION, time).unwrap();
    let expected = sdk_authorization(
        "POST",
        &format!("https://{HOST}/channels/web/resync"),
        &[
            ("host", HOST),
            ("accept", "application/json"),
            ("user-agent", ua),
            ("content-type", "application/json"),
        ],
        &raw,
        time,
    );
    assert_eq!(post.headers()["authorization"], expected.as_str());
    assert_eq!(post.headers()["x-amz-security-token"], "session-token");
}

/// A signed request arrives as it was signed: the server signs what it
/// received again, at the request's own `x-amz-date`, and gets the same header.
#[tokio::test]
async fn a_signed_request_arrives_as_signed() {
    let server = Server::start(
        None,
        Arc::new(|_, _, _| Some((200, json!({"channel": "web", "queued": 1})))),
    )
    .await;
    let target = Target {
        base: format!("http://127.0.0.1:{}/lambda-url/stock-api", server.port),
        sign_region: Some(REGION.into()),
    };
    let api = Api::new(target, Some(SharedCredentialsProvider::new(credentials()))).unwrap();
    let sent = api
        .call(&api::resync("web x", &api::Skus::All, "ops", "r"))
        .await
        .unwrap();
    assert_eq!(sent["queued"], 1);
    let got = server.seen.lock().unwrap()[0].clone();
    let header = |name: &str| {
        got.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let date = time::PrimitiveDateTime::parse(
        &header("x-amz-date"),
        time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"),
    )
    .unwrap()
    .assume_utc();
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(date.unix_timestamp() as u64);
    let signed: Vec<(&str, &str)> = got
        .headers
        .iter()
        .filter(|(k, _)| ["host", "accept", "user-agent", "content-type"].contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let uri = format!("http://{}{}", header("host"), got.target);
    assert_eq!(got.target, "/lambda-url/stock-api/channels/web%20x/resync");
    assert_eq!(
        header("authorization"),
        sdk_authorization("POST", &uri, &signed, &got.body, at)
    );
}

#[tokio::test]
async fn dlq_replay_moves_messages_back_in_order() {
    let s: TestStack = stack().await;
    let dlq_url = s.stack.queue_urls["WebChannelDLQ"].clone();
    let source_url = s.stack.queue_urls["WebChannelQueue"].clone();
    for (i, group) in [(1, "JKT"), (2, "CAP"), (3, "JKT")] {
        s.sqs
            .send_message()
            .queue_url(&dlq_url)
            .message_body(json!({"n": i, "sku": group}).to_string())
            .message_group_id(group)
            .message_deduplication_id(format!("{group}#{i}"))
            .send()
            .await
            .unwrap();
    }
    let queues = dlq::resolve(&s.sqs, dlq::queue_name(&dlq_url)).await.unwrap();
    assert_eq!(
        queues,
        dlq::Queues {
            dlq_url: dlq_url.clone(),
            source_url: source_url.clone()
        }
    );

    // --dry-run, through the command line (the emulator from the env file): nothing moves.
    let server = Server::start(None, no_fake()).await;
    let (doc, code) = server
        .json(&["dlq", "replay", dlq::queue_name(&dlq_url), "--dry-run"])
        .await;
    assert_eq!(code, 0, "{doc}");
    assert_eq!(
        (
            doc["moved"].as_u64(),
            doc["waiting"].as_u64(),
            doc["source"].as_str()
        ),
        (Some(0), Some(3), Some(source_url.as_str()))
    );
    assert!(s.receive(&source_url).await.is_empty());

    let report = dlq::replay(&s.sqs, &queues, None, false, |_| {}).await.unwrap();
    assert_eq!(report.moved, 3);
    let mut got = Vec::new();
    for _ in 0..5 {
        let batch = s
            .sqs
            .receive_message()
            .queue_url(&source_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        for m in batch.messages() {
            let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            let group = m.attributes().unwrap()
                [&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId]
                .clone();
            got.push((body["n"].as_i64().unwrap(), group));
            s.sqs
                .delete_message()
                .queue_url(&source_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        if got.len() == 3 {
            break;
        }
    }
    assert_eq!(
        got,
        [
            (1, "JKT".to_string()),
            (2, "CAP".to_string()),
            (3, "JKT".to_string())
        ]
    );
    assert!(s.receive(&dlq_url).await.is_empty(), "the DLQ is empty");
    // Nothing left: a second replay moves nothing.
    assert_eq!(
        dlq::replay(&s.sqs, &queues, Some(5), false, |_| {})
            .await
            .unwrap()
            .moved,
        0
    );
}

#[tokio::test]
async fn channel_mode_and_held_feeds_through_the_real_routes() {
    let s = stack().await;
    let channels = stockroom::channels::Channels::parse("web=warehouse,pos=downtown").unwrap();
    let connectors =
        stockroom::connector::Connectors::parse("web=shopify:cli-test.myshopify.com@1001/revert", &channels)
            .unwrap();
    let server = Server::start(Some(s.api_app_with(connectors)), no_fake()).await;
    let (doc, code) = server.json(&["channels", "mode", "web"]).await;
    assert_eq!((code, doc["mode"].as_str()), (0, Some("live")), "{doc}");
    let (doc, code) = server
        .json(&[
            "channels", "mode", "web", "shadow", "--actor", "ops@test", "--reason", "trial",
        ])
        .await;
    assert_eq!(
        (code, doc["mode"].as_str(), doc["actor"].as_str()),
        (0, Some("shadow"), Some("ops@test")),
        "{doc}"
    );
    let stored = s.store().channel_mode("web").await.unwrap().unwrap();
    assert_eq!(stored.mode, stockroom::connector::Mode::Shadow);
    // A channel without a connector: refused, exit 3.
    let (_, code) = server.json(&["channels", "mode", "pos"]).await;
    assert_eq!(code, 3);
    // Nothing held: an empty list.
    let (doc, code) = server.json(&["feeds", "held"]).await;
    assert_eq!(
        (code, doc["held"].as_array().map(Vec::len)),
        (0, Some(0)),
        "{doc}"
    );
}
