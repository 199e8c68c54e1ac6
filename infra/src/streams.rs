//! The local DynamoDB stream poller: what Lambda's event source mapping does
//! for a stream trigger in the cloud. It reads each shard of the table's
//! stream, applies the trigger's `FilterCriteria`, invokes the function with
//! Lambda's DynamoDB event, and honours `ReportBatchItemFailures`,
//! `BisectBatchOnFunctionError`, `MaximumRetryAttempts` and the on-failure
//! destination, so a poison record ends in the dead-letter queue without
//! holding back the records after it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::bootstrap::Stack;
use crate::http::{HttpClient, Reply};
use crate::template::{TriggerSource, TriggerSpec};
use crate::triggers::{batch_result, BatchResult, TriggerError};

/// How often an idle shard is read again.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How often the shard list is refreshed (shards split and close).
const SHARD_REFRESH: Duration = Duration::from_secs(5);
/// The pause before a failed batch is retried.
const RETRY_PAUSE: Duration = Duration::from_millis(150);

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Invokes a function with an event; the trigger runners use it, so tests
/// can put a handler in their own process where `cargo lambda watch` would be.
pub trait Invoke: Send + Sync {
    /// Invokes `function` (its binary name) with a JSON `payload`.
    fn invoke<'a>(&'a self, function: &'a str, payload: Vec<u8>) -> BoxFuture<'a, Result<Reply, String>>;
}

/// Invokes through the Lambda invoke API that `cargo lambda watch` serves.
#[derive(Clone)]
pub struct HttpInvoker {
    http: HttpClient,
    base: String,
}

impl HttpInvoker {
    pub fn new(base: &str) -> Self {
        Self {
            http: HttpClient::new(Duration::from_secs(120)),
            base: base.trim_end_matches('/').to_owned(),
        }
    }
}

impl Invoke for HttpInvoker {
    fn invoke<'a>(&'a self, function: &'a str, payload: Vec<u8>) -> BoxFuture<'a, Result<Reply, String>> {
        Box::pin(async move {
            let url = format!("{}/2015-03-31/functions/{function}/invocations", self.base);
            self.http
                .send(
                    "POST",
                    &url,
                    &[("content-type", "application/json".into())],
                    payload,
                )
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Whether an event matches an EventBridge-style filter pattern: every key
/// of the pattern must match; a list holds the allowed values (literals, or
/// `{"exists": bool}`); a nested object matches a nested object.
pub fn matches(pattern: &Value, event: &Value) -> bool {
    match pattern {
        Value::Object(fields) => fields.iter().all(|(k, p)| match p {
            Value::Array(allowed) => {
                let v = event.get(k);
                allowed.iter().any(|a| match a {
                    Value::Object(rule) => match rule.get("exists").and_then(Value::as_bool) {
                        Some(want) => v.is_some() == want,
                        None => false,
                    },
                    literal => v == Some(literal),
                })
            }
            Value::Object(_) => event.get(k).is_some_and(|v| matches(p, v)),
            _ => false,
        }),
        _ => false,
    }
}

/// An attribute value in DynamoDB JSON, as Lambda delivers it.
pub fn attribute_json(a: &AttributeValue) -> Value {
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        base64::engine::general_purpose::STANDARD.encode(b.as_ref())
    };
    match a {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        AttributeValue::Null(_) => json!({"NULL": true}),
        AttributeValue::B(b) => json!({"B": b64(b)}),
        AttributeValue::Ss(v) => json!({"SS": v}),
        AttributeValue::Ns(v) => json!({"NS": v}),
        AttributeValue::Bs(v) => json!({"BS": v.iter().map(b64).collect::<Vec<_>>()}),
        AttributeValue::L(v) => json!({"L": v.iter().map(attribute_json).collect::<Vec<_>>()}),
        AttributeValue::M(m) => json!({"M": image_json(m)}),
        _ => Value::Null,
    }
}

fn image_json(m: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), attribute_json(v)))
            .collect::<Map<_, _>>(),
    )
}

/// A stream record as one entry of Lambda's DynamoDB event `Records`.
pub fn record_json(r: &Record, stream_arn: &str, region: &str) -> Value {
    let d = r.dynamodb();
    let mut dynamodb = Map::new();
    if let Some(t) = d.and_then(|d| d.approximate_creation_date_time()) {
        // Whole seconds, as Lambda sends them.
        dynamodb.insert("ApproximateCreationDateTime".into(), json!(t.secs()));
    }
    for (name, image) in [
        ("Keys", d.and_then(|d| d.keys())),
        ("NewImage", d.and_then(|d| d.new_image())),
        ("OldImage", d.and_then(|d| d.old_image())),
    ] {
        if let Some(m) = image {
            dynamodb.insert(name.into(), image_json(m));
        }
    }
    dynamodb.insert(
        "SequenceNumber".into(),
        json!(d.and_then(|d| d.sequence_number()).unwrap_or_default()),
    );
    dynamodb.insert(
        "SizeBytes".into(),
        json!(d.and_then(|d| d.size_bytes()).unwrap_or(0)),
    );
    if let Some(v) = d.and_then(|d| d.stream_view_type()) {
        dynamodb.insert("StreamViewType".into(), json!(v.as_str()));
    }
    json!({
        "eventID": r.event_id().unwrap_or_default(),
        "eventName": r.event_name().map(|e| e.as_str()).unwrap_or_default(),
        "eventVersion": r.event_version().unwrap_or("1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": r.aws_region().unwrap_or(region),
        "dynamodb": Value::Object(dynamodb),
        "eventSourceARN": stream_arn,
    })
}

fn sequence_of(record: &Value) -> &str {
    record["dynamodb"]["SequenceNumber"].as_str().unwrap_or_default()
}

/// What to do after a batch's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Continue with the next records.
    Next,
    /// Retry from the head (possibly a smaller batch) after a pause.
    Retry,
    /// The head batch of this many records exhausted its retries: hand it to
    /// the on-failure destination and move past it.
    GiveUp(usize),
}

/// The records of one shard waiting to be delivered, and the retry state of
/// the batch at their head: the event source mapping as a state machine.
#[derive(Debug)]
pub struct Pending {
    records: VecDeque<Value>,
    batch_size: usize,
    max_retries: u32,
    bisect: bool,
    /// The size the head batch is cut to after bisecting.
    limit: usize,
    /// Failed attempts of the head batch at its current size.
    attempts: u32,
}

impl Pending {
    pub fn new(trigger: &TriggerSpec) -> Self {
        let batch_size = trigger.batch_size.clamp(1, 10_000) as usize;
        Self {
            records: VecDeque::new(),
            batch_size,
            max_retries: trigger.maximum_retry_attempts,
            bisect: trigger.bisect_on_error,
            limit: batch_size,
            attempts: 0,
        }
    }

    pub fn push(&mut self, record: Value) {
        self.records.push_back(record);
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Failed attempts so far of the batch at the head.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The next batch to deliver.
    pub fn batch(&self) -> Vec<Value> {
        let n = self.limit.min(self.batch_size).min(self.records.len());
        self.records.iter().take(n).cloned().collect()
    }

    fn drop_front(&mut self, n: usize) {
        for _ in 0..n {
            self.records.pop_front();
        }
    }

    /// Records the result for a batch of `len` records from the head.
    pub fn settle(&mut self, len: usize, result: &BatchResult) -> Step {
        let failed_at = match result {
            BatchResult::AllOk => {
                self.drop_front(len);
                self.limit = self.batch_size;
                self.attempts = 0;
                return Step::Next;
            }
            // Lambda checkpoints before the lowest failed sequence number.
            BatchResult::Failed(ids) => self
                .records
                .iter()
                .take(len)
                .position(|r| ids.iter().any(|id| id == sequence_of(r)))
                .unwrap_or(0),
            BatchResult::Error(_) => 0,
        };
        if failed_at > 0 {
            self.drop_front(failed_at);
            self.attempts = 0;
        }
        let remaining = len - failed_at;
        if self.bisect && remaining > 1 {
            // Halving is how the bad record is found; it is not a retry of it.
            self.limit = remaining.div_ceil(2);
            return Step::Retry;
        }
        self.attempts += 1;
        if self.attempts > self.max_retries {
            Step::GiveUp(remaining.min(self.limit).max(1))
        } else {
            Step::Retry
        }
    }

    /// Moves past a batch that was handed to the on-failure destination.
    pub fn give_up(&mut self, n: usize) -> Vec<Value> {
        let gone: Vec<Value> = self.records.iter().take(n).cloned().collect();
        self.drop_front(n);
        self.limit = self.batch_size;
        self.attempts = 0;
        gone
    }
}

/// The record Lambda writes to an on-failure destination for a stream batch.
pub fn failure_record(
    function: &str,
    shard: &str,
    stream_arn: &str,
    batch: &[Value],
    attempts: u32,
    last: &BatchResult,
) -> Value {
    let first = batch.first().cloned().unwrap_or(Value::Null);
    let last_record = batch.last().cloned().unwrap_or(Value::Null);
    let arrival = |r: &Value| {
        r["dynamodb"]["ApproximateCreationDateTime"]
            .as_f64()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp_nanos((s * 1e9) as i128).ok())
            .map(stockroom::clock::format)
    };
    json!({
        "requestContext": {
            "requestId": format!("{:032x}", fastrand::u128(..)),
            "functionArn": format!("arn:aws:lambda:us-east-1:123456789012:function:{function}"),
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": attempts + 1,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": match last {
                BatchResult::Error(e) => Value::String(e.chars().take(200).collect()),
                _ => Value::Null,
            },
        },
        "version": "1.0",
        "timestamp": stockroom::clock::now(),
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": sequence_of(&first),
            "endSequenceNumber": sequence_of(&last_record),
            "approximateArrivalOfFirstRecord": arrival(&first),
            "approximateArrivalOfLastRecord": arrival(&last_record),
            "batchSize": batch.len(),
            "streamArn": stream_arn,
        },
    })
}

fn setup(t: &TriggerSpec, message: impl Into<String>) -> TriggerError {
    TriggerError::Setup {
        function: t.function.clone(),
        event: t.event.clone(),
        message: message.into(),
    }
}

/// Runs one stream trigger until the task is cancelled: reads every shard of
/// the table's stream and delivers its matching records to the function.
pub async fn poll_stream(
    sdk: aws_config::SdkConfig,
    trigger: TriggerSpec,
    stack: Stack,
    invoker: Arc<dyn Invoke>,
) -> Result<(), TriggerError> {
    let TriggerSource::Stream(table_id) = &trigger.source else {
        return Err(setup(&trigger, "not a stream trigger"));
    };
    let table = stack
        .tables
        .get(table_id)
        .cloned()
        .ok_or_else(|| setup(&trigger, format!("table {table_id} is not in the stack")))?;
    let dlq = match &trigger.on_failure {
        Some(id) => Some(
            stack
                .queue_urls
                .get(id)
                .cloned()
                .ok_or_else(|| setup(&trigger, format!("on-failure queue {id} is not in the stack")))?,
        ),
        None => None,
    };
    let patterns: Vec<Value> = trigger
        .filters
        .iter()
        .map(|p| serde_json::from_str(p).map_err(|e| setup(&trigger, format!("filter {p}: {e}"))))
        .collect::<Result<_, _>>()?;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into());
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let stream_arn = ddb
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .map_err(|e| {
            setup(
                &trigger,
                aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string(),
            )
        })?
        .table()
        .and_then(|t| t.latest_stream_arn())
        .map(str::to_owned)
        .ok_or_else(|| setup(&trigger, format!("table {table} has no stream")))?;
    println!("trigger: {} <- DynamoDB stream of {table}", trigger.function);

    let mut iterators: HashMap<String, Option<String>> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut refreshed: Option<tokio::time::Instant> = None;
    loop {
        if refreshed.is_none_or(|t| t.elapsed() >= SHARD_REFRESH) {
            refreshed = Some(tokio::time::Instant::now());
            if let Err(e) = discover_shards(&streams, &stream_arn, &trigger, &mut iterators, &finished).await
            {
                eprintln!("trigger {}: listing shards failed: {e}", trigger.function);
            }
        }
        let mut delivered_any = false;
        let shards: Vec<String> = iterators.keys().cloned().collect();
        for shard in shards {
            let Some(Some(iterator)) = iterators.get(&shard).cloned() else {
                continue;
            };
            let out = match streams
                .get_records()
                .shard_iterator(&iterator)
                .limit(1000)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    eprintln!(
                        "trigger {}: reading shard {shard} failed: {}",
                        trigger.function,
                        aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e)
                    );
                    // An expired iterator is renewed at the next shard refresh.
                    iterators.insert(shard.clone(), None);
                    refreshed = None;
                    continue;
                }
            };
            match out.next_shard_iterator() {
                Some(next) => {
                    iterators.insert(shard.clone(), Some(next.to_owned()));
                }
                None => {
                    iterators.remove(&shard);
                    finished.insert(shard.clone());
                }
            }
            let queue = pending
                .entry(shard.clone())
                .or_insert_with(|| Pending::new(&trigger));
            for r in out.records() {
                let record = record_json(r, &stream_arn, &region);
                if patterns.is_empty() || patterns.iter().any(|p| matches(p, &record)) {
                    queue.push(record);
                }
            }
            while !queue.is_empty() {
                delivered_any = true;
                let batch = queue.batch();
                let ids: Vec<String> = batch.iter().map(|r| sequence_of(r).to_owned()).collect();
                let event = serde_json::to_vec(&json!({ "Records": batch })).unwrap_or_default();
                let result = match invoker.invoke(&trigger.function, event).await {
                    Ok(reply) => batch_result(&reply, trigger.report_batch_item_failures, &ids),
                    Err(e) => BatchResult::Error(e),
                };
                match queue.settle(batch.len(), &result) {
                    Step::Next => {}
                    Step::Retry => {
                        eprintln!(
                            "trigger {}: batch of {} failed ({result:?}); retrying",
                            trigger.function,
                            batch.len()
                        );
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    Step::GiveUp(n) => {
                        let attempts = queue.attempts();
                        let gone = queue.give_up(n);
                        let record =
                            failure_record(&trigger.function, &shard, &stream_arn, &gone, attempts, &result);
                        eprintln!(
                            "trigger {}: {} record(s) from {} exhausted their retries; sent to the on-failure queue",
                            trigger.function,
                            gone.len(),
                            sequence_of(gone.first().unwrap_or(&Value::Null))
                        );
                        if let Some(url) = &dlq {
                            if let Err(e) = sqs
                                .send_message()
                                .queue_url(url)
                                .message_body(record.to_string())
                                .send()
                                .await
                            {
                                eprintln!(
                                    "trigger {}: could not write to the on-failure queue: {}",
                                    trigger.function,
                                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                                );
                            }
                        }
                    }
                }
            }
        }
        if !delivered_any {
            tokio::time::sleep(IDLE_POLL).await;
        }
    }
}

/// Finds shards not yet read and gets their iterators.
/// Every new image a table's stream holds, shard by shard, in stream order
/// within each shard (an item's changes are all in one shard): what a
/// check of every state an item went through reads.
pub async fn all_new_images(
    sdk: &aws_config::SdkConfig,
    table: &str,
) -> Result<Vec<Map<String, Value>>, String> {
    let fail = |e: String| format!("reading the stream of {table}: {e}");
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let streams = aws_sdk_dynamodbstreams::Client::new(sdk);
    let arn = ddb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| fail(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string()))?
        .table()
        .and_then(|t| t.latest_stream_arn())
        .map(str::to_owned)
        .ok_or_else(|| fail("no stream".into()))?;
    let err = |e: &dyn std::fmt::Display| fail(e.to_string());
    let desc = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .map_err(|e| err(&aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e)))?;
    let mut images = Vec::new();
    for shard in desc.stream_description().map(|d| d.shards()).unwrap_or_default() {
        let Some(id) = shard.shard_id() else { continue };
        let mut it = streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(|e| err(&aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e)))?
            .shard_iterator;
        while let Some(iterator) = it.take() {
            let out = streams
                .get_records()
                .shard_iterator(iterator)
                .limit(1000)
                .send()
                .await
                .map_err(|e| err(&aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e)))?;
            let records = out.records();
            images.extend(
                records
                    .iter()
                    .filter_map(|r| r.dynamodb().and_then(|d| d.new_image()))
                    .map(|m| image_json(m).as_object().cloned().unwrap_or_default()),
            );
            // An open shard hands out an iterator forever: stop once it is read to its end.
            if !records.is_empty() {
                it = out.next_shard_iterator;
            }
        }
    }
    Ok(images)
}

async fn discover_shards(
    streams: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
    trigger: &TriggerSpec,
    iterators: &mut HashMap<String, Option<String>>,
    finished: &HashSet<String>,
) -> Result<(), String> {
    let mut start: Option<String> = None;
    loop {
        let out = streams
            .describe_stream()
            .stream_arn(stream_arn)
            .set_exclusive_start_shard_id(start.clone())
            .send()
            .await
            .map_err(|e| aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e).to_string())?;
        let Some(desc) = out.stream_description() else {
            return Ok(());
        };
        for shard in desc.shards() {
            let Some(id) = shard.shard_id() else { continue };
            if finished.contains(id) || matches!(iterators.get(id), Some(Some(_))) {
                continue;
            }
            // A child of a shard we read starts at its beginning; a shard
            // found at start-up starts where the trigger says.
            let from_start = trigger.starting_position != "LATEST"
                || shard
                    .parent_shard_id()
                    .is_some_and(|p| finished.contains(p) || iterators.contains_key(p));
            let kind = if from_start {
                ShardIteratorType::TrimHorizon
            } else {
                ShardIteratorType::Latest
            };
            let it = streams
                .get_shard_iterator()
                .stream_arn(stream_arn)
                .shard_id(id)
                .shard_iterator_type(kind)
                .send()
                .await
                .map_err(|e| aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e).to_string())?;
            iterators.insert(id.to_owned(), it.shard_iterator().map(str::to_owned));
        }
        match desc.last_evaluated_shard_id() {
            Some(last) => start = Some(last.to_owned()),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(batch_size: u32, retries: u32, bisect: bool) -> TriggerSpec {
        TriggerSpec {
            function: "f".into(),
            event: "e".into(),
            source: TriggerSource::Stream("T".into()),
            batch_size,
            report_batch_item_failures: true,
            filters: vec![],
            starting_position: "TRIM_HORIZON".into(),
            maximum_retry_attempts: retries,
            bisect_on_error: bisect,
            on_failure: None,
        }
    }

    fn rec(seq: u32) -> Value {
        json!({"dynamodb": {"SequenceNumber": format!("{seq:06}")}})
    }

    fn seqs(batch: &[Value]) -> Vec<String> {
        batch.iter().map(|r| sequence_of(r).to_owned()).collect()
    }

    #[test]
    fn filters_match_like_event_source_mappings() {
        let p: Value =
            serde_json::from_str(r#"{"dynamodb": {"NewImage": {"kind": {"S": ["level"]}}}}"#).unwrap();
        let level = json!({"dynamodb": {"NewImage": {"kind": {"S": "level"}, "available": {"N": "3"}}}});
        let ledger = json!({"dynamodb": {"NewImage": {"kind": {"S": "ledger"}}}});
        let removed = json!({"dynamodb": {"OldImage": {"kind": {"S": "level"}}}});
        assert!(matches(&p, &level));
        assert!(!matches(&p, &ledger));
        assert!(!matches(&p, &removed));
        let exists: Value =
            serde_json::from_str(r#"{"dynamodb": {"OldImage": [{"exists": false}]}}"#).unwrap();
        assert!(matches(&exists, &level));
        assert!(!matches(&exists, &removed));
        let names: Value = serde_json::from_str(r#"{"eventName": ["INSERT", "MODIFY"]}"#).unwrap();
        assert!(matches(&names, &json!({"eventName": "MODIFY"})));
        assert!(!matches(&names, &json!({"eventName": "REMOVE"})));
    }

    #[test]
    fn records_convert_to_lambda_dynamodb_events() {
        use aws_sdk_dynamodbstreams::types::{OperationType, StreamRecord, StreamViewType};
        let record = Record::builder()
            .event_id("e1")
            .event_name(OperationType::Modify)
            .aws_region("us-east-1")
            .dynamodb(
                StreamRecord::builder()
                    .approximate_creation_date_time(aws_sdk_dynamodbstreams::primitives::DateTime::from_secs(
                        1_700_000_000,
                    ))
                    .keys("pk", AttributeValue::S("SKU#A".into()))
                    .keys("sk", AttributeValue::S("LEVEL#warehouse".into()))
                    .new_image("available", AttributeValue::N("4".into()))
                    .new_image("tags", AttributeValue::Ss(vec!["x".into()]))
                    .new_image(
                        "m",
                        AttributeValue::M(HashMap::from([("b".into(), AttributeValue::Bool(true))])),
                    )
                    .old_image("available", AttributeValue::N("5".into()))
                    .sequence_number("000100")
                    .size_bytes(64)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build(),
            )
            .build();
        let v = record_json(&record, "arn:stream", "us-east-1");
        assert_eq!(v["eventName"], "MODIFY");
        assert_eq!(v["eventSourceARN"], "arn:stream");
        assert_eq!(v["dynamodb"]["Keys"]["pk"], json!({"S": "SKU#A"}));
        assert_eq!(
            v["dynamodb"]["NewImage"]["m"],
            json!({"M": {"b": {"BOOL": true}}})
        );
        assert_eq!(v["dynamodb"]["ApproximateCreationDateTime"], json!(1_700_000_000));
        let event: aws_lambda_events::event::dynamodb::Event =
            serde_json::from_value(json!({"Records": [v]})).unwrap();
        assert_eq!(event.records[0].change.sequence_number.as_deref(), Some("000100"));
        assert_eq!(
            event.records[0].change.approximate_creation_date_time.timestamp(),
            1_700_000_000
        );
    }

    #[test]
    fn partial_failures_resume_at_the_failed_record() {
        let mut p = Pending::new(&trigger(3, 2, false));
        for i in 1..=5 {
            p.push(rec(i));
        }
        assert_eq!(seqs(&p.batch()), ["000001", "000002", "000003"]);
        let step = p.settle(3, &BatchResult::Failed(vec!["000002".into()]));
        assert_eq!(step, Step::Retry);
        assert_eq!(seqs(&p.batch()), ["000002", "000003", "000004"]);
        assert_eq!(p.settle(3, &BatchResult::AllOk), Step::Next);
        assert_eq!(seqs(&p.batch()), ["000005"]);
    }

    #[test]
    fn bisecting_isolates_a_poison_record_then_it_goes_to_the_dlq() {
        let mut p = Pending::new(&trigger(8, 2, true));
        for i in 1..=8 {
            p.push(rec(i));
        }
        let poison = "000006";
        let mut delivered = Vec::new();
        let mut dead = Vec::new();
        let mut invocations = 0;
        while !p.is_empty() {
            invocations += 1;
            assert!(invocations < 50, "does not terminate");
            let batch = p.batch();
            // The function fails as a whole whenever the poison record is in its batch.
            let result = if seqs(&batch).iter().any(|s| s == poison) {
                BatchResult::Error("boom".into())
            } else {
                BatchResult::AllOk
            };
            if result == BatchResult::AllOk {
                delivered.extend(seqs(&batch));
            }
            if let Step::GiveUp(n) = p.settle(batch.len(), &result) {
                dead.extend(seqs(&p.give_up(n)));
            }
        }
        assert_eq!(dead, [poison]);
        assert_eq!(
            delivered,
            ["000001", "000002", "000003", "000004", "000005", "000007", "000008"]
        );
    }

    #[test]
    fn without_bisect_a_failing_batch_is_given_up_whole_after_its_retries() {
        let mut p = Pending::new(&trigger(2, 1, false));
        p.push(rec(1));
        p.push(rec(2));
        p.push(rec(3));
        let err = BatchResult::Error("x".into());
        assert_eq!(p.settle(2, &err), Step::Retry);
        assert_eq!(p.settle(2, &err), Step::GiveUp(2));
        assert_eq!(seqs(&p.give_up(2)), ["000001", "000002"]);
        assert_eq!(seqs(&p.batch()), ["000003"]);
    }
}
