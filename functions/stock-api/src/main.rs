use lambda_http::{run, service_fn, Error, Request};

// mimalloc: an invocation is thousands of small allocations (the SDK's
// request builders, JSON), where glibc's allocator spent about 40 % of the
// handler's CPU (`make bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread: Lambda runs one invocation at a time per instance, with a
// fraction of a vCPU at 128 MB; no cross-thread hand-offs to pay for.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let app = stock_api::App::from_env().await?;
    let app = &app;
    run(service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(stock_api::handle(app, req).await)
    }))
    .await
}
