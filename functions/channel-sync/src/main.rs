// mimalloc, as every function: many small allocations per invocation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use stockroom::aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

async fn run(
    app: &'static channel_sync::App,
    event: lambda_runtime::LambdaEvent<SqsEvent>,
) -> SqsBatchResponse {
    let deadline = stockroom::runtime::deadline(&event.context);
    channel_sync::handle(app, event.payload, deadline).await
}

fn main() -> Result<(), stockroom::runtime::Error> {
    stockroom::runtime::serve(channel_sync::App::from_env(), run)
}
