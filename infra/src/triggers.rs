//! The local trigger runner: what Lambda's event source mappings do in the
//! cloud, for the SQS and DynamoDB stream triggers `template.yaml` declares
//! (streams: see [`crate::streams`]). It polls each
//! queue, invokes the function through `cargo lambda watch`'s invoke API with
//! an SQS event, and deletes only what succeeded (partial batch failures are
//! honoured). Failed messages come back after their visibility timeout and,
//! past `maxReceiveCount`, move to the queue's dead-letter queue.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName};
use serde_json::{json, Value};

use std::sync::Arc;

use crate::bootstrap::Stack;
use crate::streams::{HttpInvoker, Invoke};
use crate::template::{Template, TriggerSource, TriggerSpec};

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("trigger {event} of {function}: {message}")]
    Setup {
        function: String,
        event: String,
        message: String,
    },
}

/// What a function answered for one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchResult {
    /// Every record succeeded.
    AllOk,
    /// These record ids failed; the rest succeeded.
    Failed(Vec<String>),
    /// The invocation failed: every record is retried.
    Error(String),
}

/// Reads a function's answer the way Lambda does for an event source mapping.
pub fn batch_result(reply: &crate::http::Reply, report_failures: bool, ids: &[String]) -> BatchResult {
    if reply.function_error || reply.status >= 300 {
        return BatchResult::Error(String::from_utf8_lossy(&reply.body).into_owned());
    }
    if !report_failures {
        return BatchResult::AllOk;
    }
    let v: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    match v.get("batchItemFailures").and_then(Value::as_array) {
        None => BatchResult::AllOk,
        Some(f) if f.is_empty() => BatchResult::AllOk,
        Some(f) => {
            let failed: Vec<String> = f
                .iter()
                .filter_map(|x| x.get("itemIdentifier").and_then(Value::as_str).map(str::to_owned))
                .collect();
            // An identifier that is not in the batch fails the whole batch, as in Lambda.
            if failed.iter().any(|id| !ids.contains(id)) || failed.len() != f.len() {
                BatchResult::Error("batchItemFailures names an unknown record".into())
            } else {
                BatchResult::Failed(failed)
            }
        }
    }
}

/// Runs every trigger of the template until the process is stopped.
pub async fn run(
    sdk: &aws_config::SdkConfig,
    template: &Template,
    stack: &Stack,
    invoke_base: &str,
) -> Result<(), TriggerError> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    // One invoker (one connection pool) for every queue trigger.
    let invoker = HttpInvoker::new(invoke_base);
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into());
    let mut tasks = Vec::new();
    for t in &template.triggers {
        let setup = |message: String| TriggerError::Setup {
            function: t.function.clone(),
            event: t.event.clone(),
            message,
        };
        match &t.source {
            TriggerSource::Queue(q) => {
                let url = stack
                    .queue_urls
                    .get(q)
                    .cloned()
                    .ok_or_else(|| setup(format!("queue {q} is not in the stack")))?;
                let arn = sqs
                    .get_queue_attributes()
                    .queue_url(&url)
                    .attribute_names(QueueAttributeName::QueueArn)
                    .send()
                    .await
                    .map_err(|e| setup(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()))?
                    .attributes()
                    .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
                    .unwrap_or_default();
                println!("trigger: {} <- SQS {}", t.function, url);
                tasks.push(tokio::spawn(poll_queue(
                    sqs.clone(),
                    invoker.clone(),
                    t.clone(),
                    url,
                    arn,
                    region.clone(),
                )));
            }
            TriggerSource::Stream(_) => {
                tasks.push(tokio::spawn({
                    let (sdk, t, stack) = (sdk.clone(), t.clone(), stack.clone());
                    let invoker = Arc::new(HttpInvoker::new(invoke_base));
                    async move {
                        if let Err(e) = crate::streams::poll_stream(sdk, t, stack, invoker).await {
                            eprintln!("{e}");
                        }
                    }
                }));
            }
        }
    }
    if tasks.is_empty() {
        println!("trigger runner: template.yaml declares no SQS or stream triggers");
        std::future::pending::<()>().await;
    }
    futures::future::join_all(tasks).await;
    Ok(())
}

async fn poll_queue(
    sqs: aws_sdk_sqs::Client,
    invoker: HttpInvoker,
    t: TriggerSpec,
    url: String,
    arn: String,
    region: String,
) {
    loop {
        let got = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(t.batch_size.clamp(1, 10) as i32)
            // Short polls: the emulator serves one request at a time, and a
            // long poll on an empty queue would hold every other caller up.
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        let msgs = match got {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                eprintln!(
                    "trigger {}: receive failed: {}",
                    t.function,
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if msgs.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let records: Vec<Value> = msgs
            .iter()
            .map(|m| {
                let attrs: HashMap<String, String> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attrs,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": region,
                })
            })
            .collect();
        let ids: Vec<String> = msgs
            .iter()
            .filter_map(|m| m.message_id().map(str::to_owned))
            .collect();
        let event = serde_json::to_vec(&json!({ "Records": records })).unwrap_or_default();
        let result = match invoker.invoke(&t.function, event).await {
            Ok(reply) => batch_result(&reply, t.report_batch_item_failures, &ids),
            Err(e) => BatchResult::Error(e),
        };
        let delete: Vec<_> = match &result {
            BatchResult::AllOk => msgs.iter().collect(),
            BatchResult::Failed(failed) => msgs
                .iter()
                .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
                .collect(),
            BatchResult::Error(e) => {
                eprintln!(
                    "trigger {}: invocation failed, batch will be retried: {e}",
                    t.function
                );
                Vec::new()
            }
        };
        if let BatchResult::Failed(f) = &result {
            eprintln!(
                "trigger {}: {} of {} records failed and will be retried",
                t.function,
                f.len(),
                ids.len()
            );
        }
        let entries: Vec<DeleteMessageBatchRequestEntry> = delete
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .ok()
            })
            .collect();
        if !entries.is_empty() {
            if let Err(e) = sqs
                .delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                eprintln!(
                    "trigger {}: delete failed: {}",
                    t.function,
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Reply;

    fn reply(status: u16, function_error: bool, body: &str) -> Reply {
        Reply {
            status,
            function_error,
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn partial_batch_failures_are_read_like_lambda() {
        let ids = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(
            batch_result(&reply(200, false, "{}"), true, &ids),
            BatchResult::AllOk
        );
        assert_eq!(
            batch_result(
                &reply(200, false, r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#),
                true,
                &ids
            ),
            BatchResult::Failed(vec!["b".into()])
        );
        assert!(matches!(
            batch_result(
                &reply(200, false, r#"{"batchItemFailures":[{"itemIdentifier":"zz"}]}"#),
                true,
                &ids
            ),
            BatchResult::Error(_)
        ));
        assert!(matches!(
            batch_result(&reply(200, true, "boom"), true, &ids),
            BatchResult::Error(_)
        ));
        // Without ReportBatchItemFailures the answer's body is not read.
        assert_eq!(
            batch_result(
                &reply(200, false, r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#),
                false,
                &ids
            ),
            BatchResult::AllOk
        );
    }
}
