use aws_lambda_events::event::dynamodb::Event;
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
    let app = stock_fanout::App::from_env().await?;
    let app = &app;
    run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<_, std::convert::Infallible>(stock_fanout::handle(app, event.payload).await)
    }))
    .await
}
