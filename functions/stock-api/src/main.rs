// mimalloc: an invocation is thousands of small allocations (the SDK's
// request builders, JSON), where glibc's allocator spent about 40 % of the
// handler's CPU (`make bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), stockroom::runtime::Error> {
    stockroom::runtime::serve_http(stock_api::App::from_env(), stock_api::handle)
}
