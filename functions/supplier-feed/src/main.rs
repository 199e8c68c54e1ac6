// mimalloc: an invocation is thousands of small allocations (the SDK's
// request builders, JSON), where glibc's allocator spent about 40 % of the
// handler's CPU (`make bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), stockroom::runtime::Error> {
    stockroom::runtime::serve(stockroom::feed::Importer::from_env(), |app, event| {
        let deadline = stockroom::runtime::deadline(&event.context);
        supplier_feed::handle(app, event.payload, deadline)
    })
}
