//! How every function runs on Lambda: the runtime's JSON logs, one
//! current-thread async runtime, the app built once per container (its SDK
//! clients and settings), then the handler once per invocation.
//!
//! One thread because Lambda runs one invocation at a time per instance,
//! with a fraction of a vCPU at 128 MB: a second thread only adds
//! hand-offs, which cost about half the CPU of a warm invocation (`make bench`).

use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Context, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use lambda_runtime::Error;

fn block_on<A: 'static, E: Into<Error>>(
    init: impl Future<Output = Result<A, E>>,
    serve: impl AsyncFnOnce(&'static A) -> Result<(), Error>,
) -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            // The app lives as long as the container: nothing is gained by dropping it.
            let app: &'static A = Box::leak(Box::new(init.await.map_err(Into::into)?));
            serve(app).await
        })
}

/// Serves a function URL: `handler` answers each request.
pub fn serve_http<A, E, F>(
    init: impl Future<Output = Result<A, E>>,
    handler: impl Fn(&'static A, lambda_http::Request) -> F,
) -> Result<(), Error>
where
    A: Sync + 'static,
    E: Into<Error>,
    F: Future<Output = lambda_http::Response<lambda_http::Body>> + Send,
{
    block_on(init, async |app| {
        lambda_http::run(lambda_http::service_fn(|req| {
            let answer = handler(app, req);
            async move { Ok::<_, Infallible>(answer.await) }
        }))
        .await
    })
}

/// Serves an event source (a stream, a queue): `handler` answers each batch.
pub fn serve<A, T, R, E, F>(
    init: impl Future<Output = Result<A, E>>,
    handler: impl Fn(&'static A, LambdaEvent<T>) -> F,
) -> Result<(), Error>
where
    A: Sync + 'static,
    T: DeserializeOwned + Send,
    R: Serialize,
    E: Into<Error>,
    F: Future<Output = R> + Send,
{
    block_on(init, async |app| {
        lambda_runtime::run(lambda_runtime::service_fn(|event| {
            let answer = handler(app, event);
            async move { Ok::<_, Infallible>(answer.await) }
        }))
        .await
    })
}

/// The invocation's deadline (Lambda gives it in ms since the epoch) as a
/// monotonic instant.
pub fn deadline(context: &Context) -> tokio::time::Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    tokio::time::Instant::now() + Duration::from_millis(context.deadline.saturating_sub(now_ms))
}
