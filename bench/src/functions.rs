//! Cold start, memory and CPU of every function binary, and of the Python
//! baseline, each run as a real process against its own Runtime API and
//! the local emulator.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use stockroom_tests::TestStack;

use crate::events;
use crate::process::{environment, Function, Instance, Program, FUNCTIONS};
use crate::proxy::TimingProxy;
use crate::report::{ratio_text, Row, Section};
use crate::stats::{median, ms};
use crate::BenchError;

/// The SKU every sale, return and query here touches (seeded generously).
const SKU: &str = "BENCH-COLD";
const FANOUT_SKU: &str = "BENCH-FANOUT";

/// What one program measured.
#[derive(Debug, Clone)]
pub struct Measured {
    pub name: String,
    /// Process start to its first poll for work (init done), ms, per run.
    pub init_ms: Vec<f64>,
    /// Process start to the first invocation answered, ms, per run.
    pub first_ms: Vec<f64>,
    /// A second (warm) invocation in the same process, ms, per run.
    pub warm_ms: Vec<f64>,
    /// `first_ms` and `warm_ms` less the time the emulator was serving the
    /// function (measured by the timing proxy in front of it).
    pub first_own_ms: Vec<f64>,
    pub warm_own_ms: Vec<f64>,
    /// Peak RSS after the load, KiB.
    pub peak_rss_kib: u64,
    /// CPU per warm invocation under load, µs.
    pub cpu_us: f64,
    pub load: usize,
}

/// Which events a program is given.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Sale,
    Return,
    Query,
    Fanout,
    Feed,
}

impl Kind {
    pub fn of(f: &Function) -> Self {
        match f.binary {
            "sale-webhook" => Self::Sale,
            "return-processor" => Self::Return,
            "stock-api" => Self::Query,
            "stock-fanout" => Self::Fanout,
            _ => Self::Feed,
        }
    }

    /// The `n`th event, prepared against the stack (untimed): a new order,
    /// return or feed file, or a real level change for the fan-out.
    pub async fn event(self, s: &TestStack, tag: &str, n: usize) -> Result<Vec<u8>, BenchError> {
        Ok(match self {
            Self::Sale => events::sale(&format!("{tag}-{n}"), SKU, 1),
            Self::Return => events::return_processed(&format!("{tag}-{n}"), SKU),
            Self::Query => events::stock_query(SKU),
            Self::Fanout => {
                // A new figure each time, so every invocation publishes.
                s.seed(FANOUT_SKU, "warehouse", 1_000 + n as i64).await;
                let item = s
                    .level(FANOUT_SKU, "warehouse")
                    .await
                    .ok_or_else(|| BenchError::Runtime("the seeded level is missing".into()))?;
                events::level_change(&item, n as u64 + 1)
            }
            Self::Feed => {
                let key = format!("feeds/acme/deliveries/{tag}-{n}.csv");
                let body = (0..5).fold("sku,quantity\n".to_owned(), |mut b, i| {
                    b.push_str(&format!("FEED-{n}-{i},3\n"));
                    b
                });
                s.put_feed(&key, body.as_bytes()).await;
                let msg = s
                    .next_feed_message(Duration::from_secs(30))
                    .await
                    .ok_or_else(|| BenchError::Runtime(format!("no S3 notification for {key}")))?;
                events::sqs_batch(msg)
            }
        })
    }
}

/// Seeds what the events need.
pub async fn prepare(s: &TestStack) {
    s.seed(SKU, "warehouse", 1_000_000_000).await;
}

const DEADLINE: Duration = Duration::from_secs(60);

/// What is measured: a program, its environment and the events it gets.
pub struct Subject {
    pub name: String,
    pub program: Program,
    pub env: BTreeMap<String, String>,
    pub kind: Kind,
}

/// Cold starts (`runs` fresh processes, each answering one event, then a
/// second warm one), then one process under `load` sequential invocations
/// for peak memory and CPU per invocation.
pub async fn measure(
    s: &TestStack,
    proxy: &TimingProxy,
    subject: &Subject,
    runs: usize,
    load: usize,
    cwd: &Path,
) -> Result<Measured, BenchError> {
    let Subject {
        name,
        program,
        env,
        kind,
    } = subject;
    let kind = *kind;
    let mut m = Measured {
        name: name.clone(),
        init_ms: vec![],
        first_ms: vec![],
        warm_ms: vec![],
        first_own_ms: vec![],
        warm_own_ms: vec![],
        peak_rss_kib: 0,
        cpu_us: 0.0,
        load,
    };
    let tag = format!("{}-{}", name.replace(' ', "-"), std::process::id());
    for run in 0..runs {
        let cold = kind.event(s, &format!("{tag}-cold"), run).await?;
        let inst = Instance::spawn(program, env, cwd).await?;
        let answer = inst.invoke(&cold, DEADLINE).await?;
        let first = answer.at - inst.started;
        let init = inst.api.first_poll().map_or(first, |t| t - inst.started);
        let warm_event = kind.event(s, &format!("{tag}-warm"), run).await?;
        let t = Instant::now();
        let warm = inst.invoke(&warm_event, DEADLINE).await?;
        let warm_took = warm.at - t;
        m.warm_ms.push(ms(warm_took));
        m.warm_own_ms
            .push(ms(warm_took.saturating_sub(proxy.busy(t, warm.at))));
        m.first_ms.push(ms(first));
        m.first_own_ms
            .push(ms(first.saturating_sub(proxy.busy(inst.started, answer.at))));
        m.init_ms.push(ms(init));
        inst.stop().await;
    }
    let inst = Instance::spawn(program, env, cwd).await?;
    inst.invoke(&kind.event(s, &format!("{tag}-load"), load).await?, DEADLINE)
        .await?;
    let mut cpu = Duration::ZERO;
    for n in 0..load {
        let event = kind.event(s, &format!("{tag}-load"), n).await?;
        let before = inst.cpu();
        inst.invoke(&event, DEADLINE).await?;
        cpu += inst.cpu().saturating_sub(before);
    }
    m.peak_rss_kib = inst.peak_rss_kib();
    m.cpu_us = cpu.as_secs_f64() * 1e6 / load.max(1) as f64;
    inst.stop().await;
    Ok(m)
}

/// Every function of the template.
pub async fn all(
    s: &TestStack,
    proxy: &TimingProxy,
    runs: usize,
    load: usize,
    root: &Path,
) -> Result<Vec<Measured>, BenchError> {
    let mut out = Vec::new();
    for f in FUNCTIONS {
        let memory = if f.binary == "supplier-feed" { 256 } else { 128 };
        let subject = Subject {
            name: f.binary.into(),
            program: Program::binary(f.binary)?,
            env: through(proxy, environment(s, f.logical_id, memory)),
            kind: Kind::of(&f),
        };
        // Each feed event uploads a file first: fewer of them.
        let load = if matches!(subject.kind, Kind::Feed) {
            load / 5
        } else {
            load
        };
        eprintln!("  {}: {runs} cold starts, {load} warm invocations", f.binary);
        out.push(measure(s, proxy, &subject, runs, load, root).await?);
    }
    Ok(out)
}

/// The Python/boto3 sale handler, measured exactly as `sale-webhook` is.
pub async fn baseline(
    s: &TestStack,
    proxy: &TimingProxy,
    runs: usize,
    load: usize,
    root: &Path,
) -> Result<Measured, BenchError> {
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        return Err(BenchError::Missing(format!(
            "{} (run `make tools`)",
            python.display()
        )));
    }
    let mut env = through(proxy, environment(s, "SaleWebhookFunction", 128));
    env.insert("PYTHONDONTWRITEBYTECODE".into(), "1".into());
    let subject = Subject {
        name: "python-boto3 sale".into(),
        program: Program {
            exe: python,
            args: vec![root.join("bench/baseline/runtime.py").display().to_string()],
        },
        env,
        kind: Kind::Sale,
    };
    eprintln!("  python baseline: {runs} cold starts, {load} warm invocations");
    measure(s, proxy, &subject, runs, load, root).await
}

/// Points a function's AWS endpoint at the timing proxy.
fn through(proxy: &TimingProxy, mut env: BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.insert("AWS_ENDPOINT_URL".into(), proxy.endpoint());
    env
}

impl Measured {
    pub fn first(&self) -> f64 {
        median(&self.first_ms)
    }
    pub fn init(&self) -> f64 {
        median(&self.init_ms)
    }
    pub fn warm(&self) -> f64 {
        median(&self.warm_ms)
    }
    pub fn first_own(&self) -> f64 {
        median(&self.first_own_ms)
    }
    pub fn warm_own(&self) -> f64 {
        median(&self.warm_own_ms)
    }
    pub fn rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
}

/// Cold start, memory and CPU of every function, and the Python baseline beside sale-webhook.
pub async fn sections(
    s: &TestStack,
    runs: usize,
    load: usize,
    root: &Path,
) -> Result<Vec<Section>, BenchError> {
    prepare(s).await;
    let proxy = TimingProxy::in_front_of_emulator().await?;
    let measured = all(s, &proxy, runs, load, root).await?;
    let python = baseline(s, &proxy, runs, load, root).await?;

    let mut cold = Section::new("Cold start: process start to first invocation answered");
    for m in measured.iter().chain([&python]) {
        let row = Row::new(
            if m.name == python.name {
                "baseline: Python 3.11 + boto3 sale handler"
            } else {
                &m.name
            },
            format!(
                "{:.1} ms without the emulator's time ({:.1} ms with it); init {:.1} ms; a warm invocation {:.1} ms ({:.1} ms with the emulator)",
                m.first_own(),
                m.first(),
                m.init(),
                m.warm_own(),
                m.warm()
            ),
            format!(
                "median of {} fresh processes against a local Runtime API (the bench's own), each given a real event that reads and writes the emulator; the emulator's time is what a timing proxy in front of it saw a request outstanding; init = start to first poll for work",
                m.first_ms.len()
            ),
        );
        cold.rows.push(if m.name == python.name {
            row
        } else {
            row.target("median < 20 ms", m.first_own() < 20.0)
        });
    }
    cold.notes.push(
        "The target is judged without the emulator: moto (Python, one request at a time) takes 1–5 ms a request, and a fan-out or feed event makes several. Both figures are shown.".into(),
    );

    let mut memory = Section::new("Memory and CPU under load");
    for m in &measured {
        memory.rows.push(
            Row::new(
                format!("{}: peak RSS", m.name),
                format!("{:.1} MiB", m.rss_mib()),
                format!("VmHWM after {} sequential invocations of one process", m.load + 1),
            )
            .target("< 40 MB", m.peak_rss_kib * 1024 < 40_000_000),
        );
    }
    for m in measured.iter().chain([&python]) {
        memory.rows.push(Row::new(
            format!("{}: CPU per invocation", m.name),
            format!("{:.0} µs", m.cpu_us),
            format!(
                "process on-CPU time (all threads, schedstat) over {} warm invocations, store round trips included (runtime client, SDK signing, HTTP, JSON)",
                m.load
            ),
        ));
    }
    memory.rows.push(Row::new(
        "python-boto3 sale: peak RSS",
        format!("{:.1} MiB", python.rss_mib()),
        "the same load as sale-webhook",
    ));

    let mut base = Section::new("Baseline: the same sale flow in Python 3.11 + boto3");
    // Two times (ms), Python ÷ Rust: as measured, then without the emulator's share.
    let with_and_without_emulator = |python: [f64; 2], rust: [f64; 2]| {
        format!(
            "{}; without the emulator's time {}",
            versus(python[0], rust[0], 1, "ms"),
            versus(python[1], rust[1], 1, "ms")
        )
    };
    let sale = &measured[0];
    base.rows.push(Row::new(
        "cold start (first answer), Python ÷ Rust",
        with_and_without_emulator(
            [python.first(), python.first_own()],
            [sale.first(), sale.first_own()],
        ),
        "medians, same harness, same events, same emulator",
    ));
    base.rows.push(Row::new(
        "peak RSS, Python ÷ Rust",
        versus(python.rss_mib(), sale.rss_mib(), 1, "MiB"),
        format!("VmHWM after {} invocations each", load + 1),
    ));
    base.rows.push(Row::new(
        "CPU per sale, Python ÷ Rust",
        versus(python.cpu_us, sale.cpu_us, 0, "µs"),
        "process on-CPU time per warm invocation, store round trip included",
    ));
    base.rows.push(Row::new(
        "warm invocation, Python ÷ Rust",
        with_and_without_emulator([python.warm(), python.warm_own()], [sale.warm(), sale.warm_own()]),
        "median wall time of the second invocation",
    ));
    base.notes.push(
        "`bench/baseline/sale_handler.py` makes the same DynamoDB transaction as sale-webhook (receipt, conditional decrement, ledger entry), so the ratios compare runtimes, not designs; `bench/baseline/runtime.py` is a minimal Runtime API client like Lambda's own.".into(),
    );
    Ok(vec![cold, memory, base])
}

/// Python ÷ Rust as a ratio, then both figures: `1.50× (3.0 ms vs 2.0 ms)`.
fn versus(python: f64, rust: f64, decimals: usize, unit: &str) -> String {
    format!(
        "{} ({python:.decimals$} {unit} vs {rust:.decimals$} {unit})",
        ratio_text(python / rust)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn versus_shows_the_ratio_then_both_figures() {
        assert_eq!(super::versus(3.0, 2.0, 1, "ms"), "1.50× (3.0 ms vs 2.0 ms)");
        assert_eq!(super::versus(150.4, 100.0, 0, "µs"), "1.50× (150 µs vs 100 µs)");
    }
}
