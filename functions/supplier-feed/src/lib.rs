//! `supplier-feed`: supplier files dropped under `feeds/` in the feed bucket
//! (S3 `ObjectCreated` → SQS → here) become stock. This crate only turns a
//! batch of queue messages into imports and their failures into the batch
//! response; the import itself — streaming, chunks applied exactly once,
//! reports and rejects next to the feed, holds, checkpoints — is
//! [`stockroom::feed::import`].

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use stockroom::feed::{import, objects_in, Importer};
use tokio::time::Instant;

/// Handles a batch of feed messages; failures are retried, then dead-lettered.
pub async fn handle(app: &Importer, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.unwrap_or_default();
        let objects = match objects_in(record.body.as_deref().unwrap_or_default()) {
            Ok(o) => o,
            Err(e) => {
                // Retrying cannot help, but dropping would lose it: after the
                // queue's receive count it moves to the dead-letter queue.
                tracing::error!(message_id = %id, error = %e, "unreadable feed message");
                response.batch_item_failures.push(failure(id));
                continue;
            }
        };
        for object in objects {
            if let Err(e) = import::run(app, &object, deadline).await {
                tracing::error!(bucket = %object.bucket, key = %object.key, error = %e, "feed import failed; will retry");
                response.batch_item_failures.push(failure(id));
                break;
            }
        }
    }
    response
}

fn failure(message_id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = message_id;
    f
}
