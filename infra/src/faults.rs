//! The emulator's fault mode and unit counts (`infra/faults.py`), from Rust:
//! tests, `make chaos` and the bench switch faults on for their own
//! resources (a name prefix) and read what was injected and consumed.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::{HttpClient, HttpError};

/// Which faults to inject, and how often (rates from 0 to 1). `Default` is none.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FaultConfig {
    /// Resources whose names start with this are affected (a stack's name).
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub transaction_conflict: f64,
    /// How recently a transaction must have written an item for a conflict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict_window_ms: Option<u64>,
    /// Per-partition capacity: 1,000 write and 3,000 read units a second unless set.
    pub capacity: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_units_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_units_per_second: Option<f64>,
    pub server_error: f64,
    pub lost_response: f64,
    pub sqs_send_failure: f64,
    pub sqs_redelivery: f64,
}

/// Units a table consumed, in all and by DynamoDB operation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Units {
    pub read: f64,
    pub write: f64,
    pub operations: HashMap<String, OperationUnits>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct OperationUnits {
    pub count: u64,
    pub read: f64,
    pub write: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum FaultsError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("the emulator answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the emulator's answer is not what was expected: {0}")]
    Shape(String),
}

/// The emulator's admin routes.
#[derive(Clone)]
pub struct Emulator {
    endpoint: String,
    http: HttpClient,
}

impl Emulator {
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into().trim_end_matches('/').to_owned(),
            http: HttpClient::new(Duration::from_secs(10)),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Vec<u8>) -> Result<serde_json::Value, FaultsError> {
        let reply = self
            .http
            .send(method, &format!("{}/_stockroom/{path}", self.endpoint), &[], body)
            .await?;
        if reply.status != 200 {
            return Err(FaultsError::Refused {
                status: reply.status,
                body: String::from_utf8_lossy(&reply.body).into_owned(),
            });
        }
        Ok(reply.json())
    }

    /// Switches faults on for `config.scope` (replacing any earlier config for it).
    pub async fn set_faults(&self, config: &FaultConfig) -> Result<(), FaultsError> {
        let body = serde_json::to_vec(config).map_err(|e| FaultsError::Shape(e.to_string()))?;
        self.call("POST", "faults", body).await.map(|_| ())
    }

    /// Switches faults off for a scope.
    pub async fn clear_faults(&self, scope: &str) -> Result<(), FaultsError> {
        self.call("DELETE", &format!("faults?scope={}", query(scope)), Vec::new())
            .await
            .map(|_| ())
    }

    /// The faults injected so far for a scope, by kind (`throttled` counts capacity refusals).
    pub async fn injected(&self, scope: &str) -> Result<HashMap<String, u64>, FaultsError> {
        let v = self
            .call("GET", &format!("faults?scope={}", query(scope)), Vec::new())
            .await?;
        serde_json::from_value(v["injected"].clone()).map_err(|e| FaultsError::Shape(e.to_string()))
    }

    /// What a table consumed since it was created (or last reset).
    pub async fn units(&self, table: &str) -> Result<Units, FaultsError> {
        let v = self
            .call("GET", &format!("units?table={}", query(table)), Vec::new())
            .await?;
        serde_json::from_value(v).map_err(|e| FaultsError::Shape(e.to_string()))
    }

    /// Starts counting a table's units again.
    pub async fn reset_units(&self, table: &str) -> Result<(), FaultsError> {
        self.call("DELETE", &format!("units?table={}", query(table)), Vec::new())
            .await
            .map(|_| ())
    }
}

fn query(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}
