//! What can go wrong, and the exit code each maps to (scripts gate on them).

use serde_json::Value;

/// Exit codes: 0 done, 2 usage, 3 refused or a run failed, 4 unreachable or
/// 5xx, 5 `channels drift` found unexplained drift.
pub mod code {
    pub const OK: u8 = 0;
    pub const USAGE: u8 = 2;
    pub const REFUSED: u8 = 3;
    pub const UNREACHABLE: u8 = 4;
    pub const DRIFT: u8 = 5;
}

/// Why a command did not finish as asked.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The invocation cannot work (a bad URL, no target, an unreadable env file).
    #[error("{0}")]
    Usage(String),
    /// The API answered 4xx.
    #[error("refused (HTTP {status}): {}", describe(body))]
    Refused { status: u16, body: Value },
    /// The API answered 5xx (or something that is not its JSON).
    #[error("the API failed (HTTP {status}): {}", describe(body))]
    Server { status: u16, body: Value },
    /// The API or AWS could not be reached (or no credentials were found).
    #[error("{0}")]
    Unreachable(String),
    /// A reconcile or import run ended `failed`.
    #[error("run {id} failed: {message}")]
    RunFailed { id: String, message: String },
    /// `channels drift` found this many SKUs whose drift nothing explains.
    #[error("{0} SKU(s) drift with nothing in flight to explain it")]
    Drift(usize),
}

impl CliError {
    /// The process's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => code::USAGE,
            CliError::Refused { .. } | CliError::RunFailed { .. } => code::REFUSED,
            CliError::Server { .. } | CliError::Unreachable(_) => code::UNREACHABLE,
            CliError::Drift(_) => code::DRIFT,
        }
    }

    /// The API's error document, printed unchanged under `--json`.
    pub fn api_body(&self) -> Option<&Value> {
        match self {
            CliError::Refused { body, .. } | CliError::Server { body, .. } => Some(body),
            _ => None,
        }
    }
}

/// An answer's status and body as a result: 2xx is the document, 4xx refused,
/// anything else (5xx, 1xx, 3xx) a failure of the API.
pub fn check_status(status: u16, body: Value) -> Result<Value, CliError> {
    match status {
        200..=299 => Ok(body),
        400..=499 => Err(CliError::Refused { status, body }),
        _ => Err(CliError::Server { status, body }),
    }
}

/// An error and its causes on one line ("connection refused" is a cause).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `<code>: <message>` from the API's `{"error", "message"}`, else the body.
fn describe(body: &Value) -> String {
    match (body["error"].as_str(), body["message"].as_str()) {
        (Some(e), Some(m)) => format!("{e}: {m}"),
        (Some(e), None) => e.to_owned(),
        _ => match body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_map_to_the_documented_exit_codes() {
        assert_eq!(check_status(200, json!({"a": 1})).unwrap(), json!({"a": 1}));
        assert!(check_status(202, json!({})).is_ok());
        for s in [400, 403, 404, 405, 409, 422] {
            assert_eq!(
                check_status(s, json!({})).unwrap_err().exit_code(),
                code::REFUSED,
                "{s}"
            );
        }
        for s in [500, 502, 503, 301] {
            assert_eq!(
                check_status(s, json!({})).unwrap_err().exit_code(),
                code::UNREACHABLE,
                "{s}"
            );
        }
        assert_eq!(CliError::Unreachable("x".into()).exit_code(), 4);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(
            CliError::RunFailed {
                id: "r".into(),
                message: "m".into()
            }
            .exit_code(),
            3
        );
        assert_eq!(CliError::Drift(2).exit_code(), 5);
    }

    #[test]
    fn a_refusal_reads_as_the_api_said_it() {
        let e = check_status(
            409,
            json!({"error": "below_zero", "message": "only 1", "current": 1}),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "refused (HTTP 409): below_zero: only 1");
        assert_eq!(e.api_body().unwrap()["current"], 1);
        let e = check_status(502, Value::String("Bad Gateway".into())).unwrap_err();
        assert_eq!(e.to_string(), "the API failed (HTTP 502): Bad Gateway");
    }
}
