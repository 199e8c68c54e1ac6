// mimalloc, as every function: many small allocations per invocation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), stockroom::runtime::Error> {
    stockroom::runtime::serve_http(channel_events::App::from_env(), channel_events::handle)
}
