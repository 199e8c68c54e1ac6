//! `POST /feeds/release`: ops release a held supplier file, with who and why.

use lambda_http::http::StatusCode;
use lambda_http::{Request, Response};
use serde_json::json;
use stockroom::api;
use stockroom::feed::release::{self, ReleaseError, ReleaseRefused, ReleaseRequest};

use crate::{bad_request, store_error, App};

/// Ops release a held supplier file: 202 once it is recorded and queued.
pub async fn post(app: &App, req: &Request) -> Response<String> {
    let Some(feeds) = &app.feeds else {
        return api::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            "FEED_BUCKET and FEED_QUEUE_URL are not set",
        );
    };
    let identity = api::caller_identity(req);
    if let Err(e) = app.writers.check(identity.as_deref()) {
        return api::forbidden(e);
    }
    let request = match ReleaseRequest::parse(req.body(), identity.as_deref()) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    match release::release(&app.store, feeds, &request, &stockroom::clock::now()).await {
        Ok(state) => api::json(
            StatusCode::ACCEPTED,
            &json!({"feed": request.feed.key, "etag": request.etag, "state": state}),
        ),
        Err(e @ ReleaseError::Refused(ReleaseRefused::Unknown)) => {
            api::error(StatusCode::NOT_FOUND, "not_found", e)
        }
        Err(e @ (ReleaseError::Refused(_) | ReleaseError::Moved)) => {
            api::error(StatusCode::CONFLICT, "not_held", e)
        }
        Err(ReleaseError::Store(e)) => store_error(e),
        Err(e @ ReleaseError::Queue(_)) => {
            tracing::error!(error = %e, "release not queued");
            api::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the import could not be queued; ask again",
            )
        }
    }
}
