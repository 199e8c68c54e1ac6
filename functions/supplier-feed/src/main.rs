use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

// mimalloc: an invocation is thousands of small allocations (the SDK's
// request builders, JSON), where glibc's allocator spent about 40 % of the
// handler's CPU (`make bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread: Lambda runs one invocation at a time per instance, with a
// fraction of a vCPU at 128 MB; no cross-thread hand-offs to pay for.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = stockroom::feed::Importer::from_env().await?;
    let app = &app;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        // Lambda's deadline (ms since the epoch) as a monotonic instant.
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let left = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
        let deadline = tokio::time::Instant::now() + left;
        Ok::<_, std::convert::Infallible>(supplier_feed::handle(app, event.payload, deadline).await)
    }))
    .await
}
