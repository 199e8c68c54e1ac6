//! `stockroom`, the ops command line: every stock API operation (SigV4-signed
//! to the function URL in the cloud, plain HTTP to the local stack with
//! `--local`) and `dlq replay`. The pieces are testable functions: requests
//! ([`api`]), signing ([`sign`]), tables ([`render`]), exit codes
//! ([`error`]), the replay ([`dlq`]); [`run`] ties them to the arguments.

pub mod api;
pub mod args;
pub mod client;
pub mod commands;
pub mod dlq;
pub mod error;
pub mod render;
pub mod sign;

use std::ffi::OsString;

use clap::Parser;

pub use args::Cli;
pub use commands::Shown;
pub use error::CliError;

/// What a command printed on stdout and its exit code (errors and progress go
/// to stderr).
pub async fn run<I, T>(args: I) -> (String, u8)
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version print to stdout and exit 0; mistakes exit 2.
            let code = u8::try_from(e.exit_code()).unwrap_or(error::code::USAGE);
            let _ = e.print();
            return (String::new(), code);
        }
    };
    let result = commands::execute(&cli).await;
    output(cli.json, result)
}

/// The stdout text and exit code of a command's result: `--json` prints the
/// document (an API's error document too), else the table; errors on stderr.
pub fn output(json: bool, result: Result<Shown, CliError>) -> (String, u8) {
    match result {
        Ok(shown) => {
            let text = if json { pretty(&shown.json) } else { shown.text };
            (text, shown.code)
        }
        Err(e) => {
            eprintln!("stockroom: {e}");
            let text = match (json, e.api_body()) {
                (true, Some(body)) => pretty(body),
                _ => String::new(),
            };
            (text, e.exit_code())
        }
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_prints_the_document_and_errors_keep_their_codes() {
        let shown = Shown {
            json: json!({"a": 1}),
            text: "a 1\n".into(),
            code: 0,
        };
        assert_eq!(output(false, Ok(shown.clone())), ("a 1\n".into(), 0));
        let (text, code) = output(true, Ok(shown));
        assert_eq!(
            (serde_json::from_str::<serde_json::Value>(&text).unwrap(), code),
            (json!({"a": 1}), 0)
        );
        let refused = error::check_status(409, json!({"error": "below_zero", "current": 0})).unwrap_err();
        let (text, code) = output(true, Err(refused));
        assert_eq!(code, 3);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["current"],
            0
        );
        assert_eq!(
            output(false, Err(CliError::Unreachable("x".into()))),
            (String::new(), 4)
        );
    }

    #[tokio::test]
    async fn usage_mistakes_exit_2_and_no_target_is_one() {
        assert_eq!(run(["stockroom", "stock"]).await.1, 2);
        assert_eq!(run(["stockroom", "adjust", "A"]).await.1, 2);
        // Neither --local nor --url (nor STOCKROOM_API_URL, unset in tests).
        if std::env::var_os("STOCKROOM_API_URL").is_none() {
            assert_eq!(run(["stockroom", "stock", "get", "A"]).await.1, 2);
        }
        assert_eq!(
            run([
                "stockroom",
                "--local",
                "--env-file",
                "/nonexistent",
                "stock",
                "get",
                "A"
            ])
            .await
            .1,
            2
        );
    }
}
