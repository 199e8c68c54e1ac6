//! `dlq replay`: moves a dead-letter queue's messages back to the queue they
//! came from with the SQS API, one at a time and in order, deleting each from
//! the DLQ only after its send succeeded (a failure leaves it where it was).

use std::collections::HashMap;

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::CliError;

/// A DLQ's messages stay invisible this long while one is moved (seconds).
const VISIBILITY_SECONDS: i32 = 60;

/// The DLQ and the queue its messages go back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queues {
    pub dlq_url: String,
    pub source_url: String,
}

/// What a replay did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub dlq: String,
    pub source: String,
    pub dry_run: bool,
    pub moved: u64,
    /// The DLQ's approximate depth before the replay.
    pub waiting: u64,
}

impl Report {
    /// The report as the one JSON document `--json` prints.
    pub fn to_json(&self) -> Value {
        json!({"dlq": self.dlq, "source": self.source, "dry_run": self.dry_run,
               "moved": self.moved, "waiting": self.waiting})
    }

    /// One line for people.
    pub fn render(&self) -> String {
        if self.dry_run {
            format!(
                "would move about {} message(s) from {} to {} (dry run: nothing moved)\n",
                self.waiting, self.dlq, self.source
            )
        } else {
            format!(
                "moved {} message(s) from {} to {}\n",
                self.moved, self.dlq, self.source
            )
        }
    }
}

/// A queue's name: the last segment of its URL, or the argument itself.
pub fn queue_name(queue: &str) -> &str {
    queue.trim_end_matches('/').rsplit('/').next().unwrap_or(queue)
}

/// The source queue's name by convention: the DLQ's without `-dlq`
/// (`x-dlq` → `x`, `x-dlq.fifo` → `x.fifo`).
pub fn source_name_for(dlq_name: &str) -> Option<String> {
    let (stem, fifo) = match dlq_name.strip_suffix(".fifo") {
        Some(stem) => (stem, ".fifo"),
        None => (dlq_name, ""),
    };
    stem.strip_suffix("-dlq")
        .filter(|s| !s.is_empty())
        .map(|s| format!("{s}{fifo}"))
}

/// Whether a queue is FIFO (by its name, which SQS requires to end `.fifo`).
pub fn is_fifo(queue: &str) -> bool {
    queue_name(queue).ends_with(".fifo")
}

/// The deduplication id a replayed FIFO message is sent with: derived from
/// its original id and its message id in the DLQ. Not the original itself:
/// SQS drops a send whose id it saw in the last five minutes, and a message
/// that died quickly would be deleted from the DLQ without arriving. Derived
/// from the DLQ message, a replay interrupted between send and delete and run
/// again sends the same id, and SQS drops the second copy.
pub fn replay_dedup_id(original: Option<&str>, dlq_message_id: &str) -> String {
    let digest = Sha256::digest(format!("{}\n{dlq_message_id}", original.unwrap_or("")));
    format!("replay-{}", hex::encode(digest))
}

/// What a message is sent back as.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub body: String,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub attributes: Option<HashMap<String, MessageAttributeValue>>,
}

/// The send for one DLQ message: the same body and message attributes; to a
/// FIFO queue, the same group id and a replay deduplication id.
pub fn outgoing(m: &Message, fifo: bool) -> Outgoing {
    let system = |name: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&name)).cloned();
    let (group_id, dedup_id) = if fifo {
        let original = system(MessageSystemAttributeName::MessageDeduplicationId);
        (
            system(MessageSystemAttributeName::MessageGroupId),
            Some(replay_dedup_id(original.as_deref(), m.message_id().unwrap_or(""))),
        )
    } else {
        (None, None)
    };
    Outgoing {
        body: m.body().unwrap_or("").to_owned(),
        group_id,
        dedup_id,
        attributes: m.message_attributes().filter(|a| !a.is_empty()).cloned(),
    }
}

/// An SQS failure as the CLI's error: a refusal (a missing queue, no access)
/// is 3, a 5xx or no answer is 4.
pub fn aws_error<E>(what: &str, e: SdkError<E, HttpResponse>) -> CliError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &e {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let status = service.raw().status().as_u16();
            let body = json!({"error": err.code().unwrap_or("unknown"),
                              "message": format!("{what}: {}", err.message().unwrap_or(""))});
            crate::error::check_status(status, body.clone())
                .err()
                .unwrap_or(CliError::Refused { status, body })
        }
        _ => CliError::Unreachable(format!("{what}: {}", crate::error::chain(&e))),
    }
}

async fn url_of(sqs: &Client, name: &str) -> Result<String, CliError> {
    let out = sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| aws_error(&format!("queue {name}"), e))?;
    out.queue_url()
        .map(str::to_owned)
        .ok_or_else(|| CliError::Unreachable(format!("queue {name}: no URL in the answer")))
}

/// The DLQ's URL and its source: the queue whose redrive policy names it
/// (`ListDeadLetterSourceQueues`), or by name the DLQ's without `-dlq`.
pub async fn resolve(sqs: &Client, queue: &str) -> Result<Queues, CliError> {
    let dlq_url = if queue.starts_with("http://") || queue.starts_with("https://") {
        queue.to_owned()
    } else {
        url_of(sqs, queue).await?
    };
    let by_name = source_name_for(queue_name(&dlq_url));
    let sources: Vec<String> = match sqs
        .list_dead_letter_source_queues()
        .queue_url(&dlq_url)
        .send()
        .await
    {
        Ok(out) => out.queue_urls().to_vec(),
        Err(e @ SdkError::ServiceError(_)) => match by_name {
            // An endpoint without the call still has the naming convention.
            Some(_) => Vec::new(),
            None => return Err(aws_error("list the DLQ's source queues", e)),
        },
        Err(e) => return Err(aws_error("list the DLQ's source queues", e)),
    };
    let source_url = match sources.as_slice() {
        [one] => one.clone(),
        [] => match &by_name {
            Some(name) => url_of(sqs, name).await?,
            None => {
                return Err(CliError::Usage(format!(
                    "no queue names {} as its dead-letter queue, and its name does not end in -dlq",
                    queue_name(&dlq_url)
                )))
            }
        },
        several => match several.iter().find(|u| Some(queue_name(u)) == by_name.as_deref()) {
            Some(u) => u.clone(),
            None => {
                return Err(CliError::Usage(format!(
                    "several queues send to {}: {}",
                    queue_name(&dlq_url),
                    several.join(", ")
                )))
            }
        },
    };
    Ok(Queues { dlq_url, source_url })
}

async fn depth(sqs: &Client, url: &str) -> Result<u64, CliError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| aws_error(&format!("depth of {url}"), e))?;
    Ok(out
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// Moves up to `max` messages (all with `None`) from the DLQ to its source,
/// in the order the DLQ gives them; `dry_run` counts and moves nothing.
/// `progress` hears a line now and then (the CLI prints it on stderr).
pub async fn replay(
    sqs: &Client,
    queues: &Queues,
    max: Option<u64>,
    dry_run: bool,
    mut progress: impl FnMut(&str),
) -> Result<Report, CliError> {
    let mut report = Report {
        dlq: queues.dlq_url.clone(),
        source: queues.source_url.clone(),
        dry_run,
        moved: 0,
        waiting: depth(sqs, &queues.dlq_url).await?,
    };
    if dry_run {
        return Ok(report);
    }
    let fifo = is_fifo(&queues.source_url);
    loop {
        let room = max.map_or(10, |m| m.saturating_sub(report.moved).min(10));
        if room == 0 {
            break;
        }
        let got = sqs
            .receive_message()
            .queue_url(&queues.dlq_url)
            .max_number_of_messages(room as i32)
            .visibility_timeout(VISIBILITY_SECONDS)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| aws_error("receive from the DLQ", e))?;
        let messages = got.messages();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            let moved = report.moved;
            move_one(sqs, queues, m, fifo)
                .await
                .inspect_err(|_| progress(&format!("stopped after {moved} message(s)")))?;
            report.moved += 1;
        }
        progress(&format!(
            "moved {} of about {}",
            report.moved,
            report.waiting.max(report.moved)
        ));
    }
    Ok(report)
}

async fn move_one(sqs: &Client, queues: &Queues, m: &Message, fifo: bool) -> Result<(), CliError> {
    let out = outgoing(m, fifo);
    let id = m.message_id().unwrap_or("?");
    sqs.send_message()
        .queue_url(&queues.source_url)
        .message_body(out.body)
        .set_message_group_id(out.group_id)
        .set_message_deduplication_id(out.dedup_id)
        .set_message_attributes(out.attributes)
        .send()
        .await
        .map_err(|e| aws_error(&format!("send message {id} back (it stays in the DLQ)"), e))?;
    let receipt = m.receipt_handle().unwrap_or("");
    sqs.delete_message()
        .queue_url(&queues.dlq_url)
        .receipt_handle(receipt)
        .send()
        .await
        .map_err(|e| {
            aws_error(
                &format!("delete message {id} from the DLQ after sending it (it is in both now)"),
                e,
            )
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_the_name_without_dlq() {
        assert_eq!(source_name_for("s-feeds-dlq"), Some("s-feeds".into()));
        assert_eq!(
            source_name_for("s-channel-web-dlq.fifo"),
            Some("s-channel-web.fifo".into())
        );
        assert_eq!(source_name_for("s-alerts"), None);
        assert_eq!(source_name_for("-dlq"), None);
        assert_eq!(
            queue_name("http://127.0.0.1:4566/123456789012/s-feeds-dlq"),
            "s-feeds-dlq"
        );
        assert_eq!(queue_name("s-feeds-dlq"), "s-feeds-dlq");
        assert!(is_fifo("http://h/1/x.fifo"));
        assert!(!is_fifo("x"));
    }

    #[test]
    fn a_fifo_message_keeps_its_group_and_gets_a_stable_new_dedup_id() {
        let m = Message::builder()
            .message_id("m-1")
            .body("{\"sku\":\"A\"}")
            .attributes(MessageSystemAttributeName::MessageGroupId, "A")
            .attributes(MessageSystemAttributeName::MessageDeduplicationId, "A#7")
            .message_attributes(
                "kind",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("x")
                    .build()
                    .unwrap(),
            )
            .build();
        let out = outgoing(&m, true);
        assert_eq!(out.body, "{\"sku\":\"A\"}");
        assert_eq!(out.group_id.as_deref(), Some("A"));
        let dedup = out.dedup_id.unwrap();
        assert_ne!(dedup, "A#7");
        assert!(dedup.len() <= 128);
        assert_eq!(dedup, replay_dedup_id(Some("A#7"), "m-1"));
        assert_ne!(dedup, replay_dedup_id(Some("A#7"), "m-2"));
        assert_eq!(out.attributes.unwrap()["kind"].string_value(), Some("x"));
        let standard = outgoing(&m, false);
        assert_eq!((standard.group_id, standard.dedup_id), (None, None));
    }

    #[test]
    fn the_report_reads_both_ways() {
        let r = Report {
            dlq: "d".into(),
            source: "s".into(),
            dry_run: true,
            moved: 0,
            waiting: 3,
        };
        assert_eq!(
            r.render(),
            "would move about 3 message(s) from d to s (dry run: nothing moved)\n"
        );
        assert_eq!(r.to_json()["waiting"], 3);
        let r = Report {
            dry_run: false,
            moved: 3,
            ..r
        };
        assert_eq!(r.render(), "moved 3 message(s) from d to s\n");
    }
}
