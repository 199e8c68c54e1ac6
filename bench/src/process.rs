//! Function processes as Lambda runs them: a fresh process per cold start,
//! given the template's environment (resolved to the local stack) and the
//! address of its own Runtime API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use stockroom_tests::{emulator, secrets_json, TestStack};
use tokio::process::{Child, Command};

use crate::runtime_api::{Answer, RuntimeApi};
use crate::stats;
use crate::BenchError;

/// A deployed function: its template logical id and its binary.
#[derive(Debug, Clone, Copy)]
pub struct Function {
    pub logical_id: &'static str,
    pub binary: &'static str,
}

/// Every function of `template.yaml`, in the order the report lists them.
pub const FUNCTIONS: [Function; 5] = [
    Function {
        logical_id: "SaleWebhookFunction",
        binary: "sale-webhook",
    },
    Function {
        logical_id: "ReturnProcessorFunction",
        binary: "return-processor",
    },
    Function {
        logical_id: "StockApiFunction",
        binary: "stock-api",
    },
    Function {
        logical_id: "StockFanoutFunction",
        binary: "stock-fanout",
    },
    Function {
        logical_id: "SupplierFeedFunction",
        binary: "supplier-feed",
    },
];

/// What to run: a built function binary, or an interpreter and its script.
#[derive(Debug, Clone)]
pub struct Program {
    pub exe: PathBuf,
    pub args: Vec<String>,
}

impl Program {
    /// A function binary built beside the bench (`target/release/<name>`).
    pub fn binary(name: &str) -> Result<Self, BenchError> {
        let exe = std::env::current_exe()?
            .parent()
            .map(|d| d.join(name))
            .ok_or_else(|| BenchError::Missing(name.into()))?;
        if !exe.exists() {
            return Err(BenchError::Missing(format!(
                "{} (build it with `cargo build --release --bins`)",
                exe.display()
            )));
        }
        Ok(Self { exe, args: vec![] })
    }
}

/// The environment a function gets in the cloud, pointed at the local stack.
pub fn environment(s: &TestStack, logical_id: &str, memory_mb: u32) -> BTreeMap<String, String> {
    let mut env = s.template.function_env(logical_id, &s.stack);
    let secrets = secrets_json();
    for (k, v) in [
        ("AWS_ENDPOINT_URL", emulator().endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("WEBHOOK_SECRET", secrets.as_str()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
    ] {
        env.insert(k.into(), v.into());
    }
    env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), logical_id.into());
    env.insert("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), memory_mb.to_string());
    env
}

/// One running function process and its Runtime API.
pub struct Instance {
    pub api: RuntimeApi,
    child: Child,
    pub pid: u32,
    pub started: Instant,
}

impl Instance {
    /// Starts the process with only `env` (plus `PATH` and `HOME`), its
    /// output discarded as Lambda ships it elsewhere.
    pub async fn spawn(
        program: &Program,
        env: &BTreeMap<String, String>,
        cwd: &Path,
    ) -> Result<Self, BenchError> {
        let api = RuntimeApi::start().await?;
        let mut cmd = Command::new(&program.exe);
        cmd.args(&program.args)
            .current_dir(cwd)
            .env_clear()
            .envs(
                ["PATH", "HOME"]
                    .iter()
                    .filter_map(|k| Some((*k, std::env::var(k).ok()?))),
            )
            .envs(env)
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let started = Instant::now();
        let child = cmd.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError::Runtime("the process exited at once".into()))?;
        Ok(Self {
            api,
            child,
            pid,
            started,
        })
    }

    /// Waits until the process has asked for its first event (init done).
    pub async fn ready(&self, wait: Duration) -> Result<(), BenchError> {
        let until = Instant::now() + wait;
        while self.api.first_poll().is_none() {
            if Instant::now() > until {
                return Err(BenchError::Runtime(format!(
                    "{} did not poll for work within {} s",
                    self.pid,
                    wait.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Invokes with `event`; an error answer is an error here.
    pub async fn invoke(&self, event: &[u8], deadline: Duration) -> Result<Answer, BenchError> {
        let answer = self
            .api
            .invoke(event.to_vec(), deadline, deadline + Duration::from_secs(30))
            .await?;
        if !answer.ok {
            return Err(BenchError::Runtime(format!(
                "the function answered with an error: {}",
                String::from_utf8_lossy(&answer.body)
            )));
        }
        Ok(answer)
    }

    pub fn peak_rss_kib(&self) -> u64 {
        stats::peak_rss_kib(self.pid).unwrap_or(0)
    }

    pub fn cpu(&self) -> Duration {
        stats::process_cpu(self.pid)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
