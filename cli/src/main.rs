//! `stockroom`: see the crate's documentation and `stockroom --help`.

use std::io::Write;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let (stdout, code) = stockroom_cli::run(std::env::args_os()).await;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not the command's failure.
    let _ = out.write_all(stdout.as_bytes()).and_then(|()| out.flush());
    ExitCode::from(code)
}
