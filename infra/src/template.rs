//! Reads `template.yaml`: the one description of every resource. The local
//! stack and the tests create what it declares, so local and cloud cannot drift.

use std::collections::BTreeMap;
use std::path::Path;

use serde_norway::{Mapping, Value};

use crate::bootstrap::Stack;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("template.yaml: {0}")]
    Shape(String),
}

/// A DynamoDB table as the template declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub logical_id: String,
    pub name: String,
    /// (attribute, type) pairs.
    pub attributes: Vec<(String, String)>,
    /// (attribute, HASH|RANGE) pairs.
    pub key_schema: Vec<(String, String)>,
    pub stream_view: Option<String>,
    pub ttl_attribute: Option<String>,
    pub indexes: Vec<IndexSpec>,
}

/// A global secondary index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: String,
    pub key_schema: Vec<(String, String)>,
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection: String,
    pub non_key_attributes: Vec<String>,
}

/// An SQS queue as the template declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub logical_id: String,
    pub name: String,
    pub fifo: bool,
    /// The logical id of its dead-letter queue, with maxReceiveCount.
    pub dead_letter: Option<(String, u32)>,
    pub visibility_timeout: Option<u32>,
}

/// An S3 bucket as the template declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSpec {
    pub logical_id: String,
    pub name: String,
    pub versioned: bool,
    /// Notifications to SQS: (queue logical id, event, key prefix).
    pub queue_notifications: Vec<(String, String, Option<String>)>,
}

/// Where an asynchronous trigger reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerSource {
    /// An SQS queue, by logical id.
    Queue(String),
    /// A table's stream, by the table's logical id.
    Stream(String),
}

/// An SQS or DynamoDB-stream event source mapping of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerSpec {
    pub function: String,
    pub event: String,
    pub source: TriggerSource,
    pub batch_size: u32,
    pub report_batch_item_failures: bool,
    /// The `FilterCriteria` patterns, as JSON text.
    pub filters: Vec<String>,
    /// Streams: `TRIM_HORIZON` or `LATEST`.
    pub starting_position: String,
    /// Streams: retries of a failing batch before it goes to the on-failure destination.
    pub maximum_retry_attempts: u32,
    /// Streams: split a failing batch in two and retry each half.
    pub bisect_on_error: bool,
    /// Streams: the on-failure destination queue, by logical id.
    pub on_failure: Option<String>,
}

/// A function: its binary and whether it has a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    pub logical_id: String,
    pub binary: String,
    pub has_url: bool,
    /// The function's own `Environment.Variables`, unresolved.
    pub env: BTreeMap<String, Value>,
}

/// What the local stack needs from the template.
#[derive(Debug, Clone, Default)]
pub struct Template {
    pub tables: Vec<TableSpec>,
    pub queues: Vec<QueueSpec>,
    pub buckets: Vec<BucketSpec>,
    pub functions: Vec<FunctionSpec>,
    pub triggers: Vec<TriggerSpec>,
    /// Environment variables set to `!Ref <resource>`: (variable, logical id).
    pub env_refs: Vec<(String, String)>,
    /// `Globals.Function.Environment.Variables`, unresolved.
    pub global_env: BTreeMap<String, Value>,
    /// Template parameters and their defaults.
    pub parameters: BTreeMap<String, String>,
    /// The stack name resources are named for.
    pub stack: String,
}

fn shape(msg: impl Into<String>) -> TemplateError {
    TemplateError::Shape(msg.into())
}

/// The account and region the local stack pretends to be in.
pub const LOCAL_ACCOUNT: &str = "123456789012";
pub const LOCAL_REGION: &str = "us-east-1";

/// What a pseudo parameter stands for in the local stack named `stack`.
fn pseudo(name: &str, stack: &str) -> Option<String> {
    match name {
        "AWS::StackName" => Some(stack.to_owned()),
        "AWS::Region" => Some(LOCAL_REGION.to_owned()),
        "AWS::AccountId" => Some(LOCAL_ACCOUNT.to_owned()),
        "AWS::Partition" => Some("aws".to_owned()),
        _ => None,
    }
}

/// What `${Name}` or `!Ref Name` stands for, where it is known.
type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// The text of a substitution and its own variables, if `v` is one: the
/// short `!Sub` or the long `Fn::Sub`, each with a string or with the list
/// `[text, {name: value}]`.
fn sub_parts(v: &Value) -> Option<(&str, Option<&Mapping>)> {
    let body = match v {
        Value::Tagged(t) if t.tag == "!Sub" || t.tag == "Fn::Sub" => &t.value,
        Value::Mapping(m) => m.get("Fn::Sub")?,
        _ => return None,
    };
    match body {
        Value::String(text) => Some((text, None)),
        Value::Sequence(list) => match list.as_slice() {
            [Value::String(text), Value::Mapping(vars)] => Some((text, Some(vars))),
            _ => None,
        },
        _ => None,
    }
}

/// `text` with each `${Name}` replaced by what `lookup` says and each
/// `${!Literal}` written as `${Literal}`, as `Fn::Sub` does. None when a
/// name is unknown: a value that is half resolved is worse than none.
fn substitute(text: &str, lookup: &Lookup) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}')?;
        let name = &after[..end];
        match name.strip_prefix('!') {
            Some(literal) => {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            }
            None => out.push_str(&lookup(name)?),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Resolves a plain scalar, `!Ref`/`Ref`, or `!Sub`/`Fn::Sub` (a list
/// form's own variables first, then `lookup`). None for anything else, or
/// when a reference is unknown.
fn resolve_with(v: &Value, lookup: &Lookup) -> Option<String> {
    if let Some((text, vars)) = sub_parts(v) {
        return substitute(text, &|name| match vars.and_then(|m| m.get(name)) {
            Some(value) => resolve_with(value, lookup),
            None => lookup(name),
        });
    }
    match v {
        Value::Tagged(t) if t.tag == "!Ref" => lookup(t.value.as_str()?),
        Value::Mapping(m) => m.get("Ref").and_then(Value::as_str).and_then(lookup),
        other => scalar(other),
    }
}

/// The logical id behind `!GetAtt X.Arn`, `!Ref X` or `!GetAtt X.StreamArn`.
fn referenced(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) if t.tag == "!GetAtt" || t.tag == "!Ref" => match &t.value {
            Value::String(s) => s.split('.').next().map(str::to_owned),
            Value::Sequence(seq) => seq.first().and_then(Value::as_str).map(str::to_owned),
            _ => None,
        },
        Value::Mapping(m) => m
            .get("Fn::GetAtt")
            .and_then(|g| g.as_sequence()?.first()?.as_str().map(str::to_owned))
            .or_else(|| m.get("Ref").and_then(Value::as_str).map(str::to_owned)),
        _ => None,
    }
}

/// The binary a function runs: `Metadata.Binary`, or
/// `Metadata.BuildProperties.Binary` as cargo lambda's SAM integration names it.
pub(crate) fn function_binary(resource: &Value) -> Option<&str> {
    let meta = resource.get("Metadata");
    meta.and_then(|m| m.get("Binary"))
        .or_else(|| meta?.get("BuildProperties")?.get("Binary"))
        .and_then(Value::as_str)
}

/// A plain scalar as text.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn env_map(vars: &Value) -> BTreeMap<String, Value> {
    vars.as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone())))
        .collect()
}

fn pairs(v: Option<&Value>, a: &str, b: &str) -> Vec<(String, String)> {
    v.and_then(Value::as_sequence)
        .map(|seq| {
            seq.iter()
                .filter_map(|e| Some((e.get(a)?.as_str()?.to_owned(), e.get(b)?.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

impl Template {
    pub fn load(path: &Path, stack: &str) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|e| TemplateError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text, stack)
    }

    /// Parses the template, naming resources for the stack `stack`.
    pub fn parse(text: &str, stack: &str) -> Result<Self, TemplateError> {
        let doc: Value = serde_norway::from_str(text).map_err(|e| shape(e.to_string()))?;
        let resources = doc
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| shape("no Resources"))?;
        let mut out = Template {
            stack: stack.to_owned(),
            ..Template::default()
        };
        for (k, v) in doc
            .get("Parameters")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            if let (Some(k), Some(d)) = (k.as_str(), v.get("Default").and_then(scalar)) {
                out.parameters.insert(k.to_owned(), d);
            }
        }
        let mut env_blocks: Vec<&Value> = Vec::new();
        if let Some(vars) = doc
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get("Environment"))
            .and_then(|e| e.get("Variables"))
        {
            env_blocks.push(vars);
            out.global_env = env_map(vars);
        }
        for res in resources.values() {
            if let Some(vars) = res
                .get("Properties")
                .and_then(|p| p.get("Environment"))
                .and_then(|e| e.get("Variables"))
            {
                env_blocks.push(vars);
            }
        }
        for vars in env_blocks {
            for (k, v) in vars.as_mapping().into_iter().flatten() {
                if let (Some(k), Value::Tagged(t)) = (k.as_str(), v) {
                    if t.tag == "!Ref" {
                        if let Some(id) = t.value.as_str().filter(|id| resources.contains_key(*id)) {
                            out.env_refs.push((k.to_owned(), id.to_owned()));
                        }
                    }
                }
            }
        }
        let sorted: BTreeMap<String, &Value> = resources
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v)))
            .collect();
        for (id, res) in sorted {
            let ty = res.get("Type").and_then(Value::as_str).unwrap_or_default();
            let props = res.get("Properties").cloned().unwrap_or(Value::Null);
            // Names are resolved before anything exists: pseudo parameters and
            // parameter defaults only. What cannot be resolved gets the name
            // the stack would give a resource without one.
            let named = |field: &str| {
                props
                    .get(field)
                    .and_then(|v| {
                        resolve_with(v, &|n| {
                            pseudo(n, stack).or_else(|| out.parameters.get(n).cloned())
                        })
                    })
                    .unwrap_or_else(|| format!("{stack}-{}", id.to_ascii_lowercase()))
            };
            match ty {
                "AWS::DynamoDB::Table" => out.tables.push(TableSpec {
                    name: named("TableName"),
                    attributes: pairs(
                        props.get("AttributeDefinitions"),
                        "AttributeName",
                        "AttributeType",
                    ),
                    key_schema: pairs(props.get("KeySchema"), "AttributeName", "KeyType"),
                    stream_view: props
                        .get("StreamSpecification")
                        .and_then(|s| s.get("StreamViewType"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    ttl_attribute: props
                        .get("TimeToLiveSpecification")
                        .and_then(|s| s.get("AttributeName"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    indexes: props
                        .get("GlobalSecondaryIndexes")
                        .and_then(Value::as_sequence)
                        .into_iter()
                        .flatten()
                        .filter_map(|i| {
                            let projection = i.get("Projection");
                            Some(IndexSpec {
                                name: i.get("IndexName")?.as_str()?.to_owned(),
                                key_schema: pairs(i.get("KeySchema"), "AttributeName", "KeyType"),
                                projection: projection
                                    .and_then(|p| p.get("ProjectionType"))
                                    .and_then(Value::as_str)
                                    .unwrap_or("ALL")
                                    .to_owned(),
                                non_key_attributes: projection
                                    .and_then(|p| p.get("NonKeyAttributes"))
                                    .and_then(Value::as_sequence)
                                    .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                                    .unwrap_or_default(),
                            })
                        })
                        .collect(),
                    logical_id: id.clone(),
                }),
                "AWS::SQS::Queue" => out.queues.push(QueueSpec {
                    name: named("QueueName"),
                    fifo: props.get("FifoQueue").and_then(Value::as_bool).unwrap_or(false),
                    dead_letter: props.get("RedrivePolicy").and_then(|r| {
                        let dlq = referenced(r.get("deadLetterTargetArn")?)?;
                        let max = r.get("maxReceiveCount").and_then(Value::as_u64).unwrap_or(5) as u32;
                        Some((dlq, max))
                    }),
                    visibility_timeout: props
                        .get("VisibilityTimeout")
                        .and_then(Value::as_u64)
                        .map(|v| v as u32),
                    logical_id: id.clone(),
                }),
                "AWS::S3::Bucket" => out.buckets.push(BucketSpec {
                    name: named("BucketName"),
                    versioned: props
                        .get("VersioningConfiguration")
                        .and_then(|v| v.get("Status"))
                        .and_then(Value::as_str)
                        == Some("Enabled"),
                    queue_notifications: props
                        .get("NotificationConfiguration")
                        .and_then(|n| n.get("QueueConfigurations"))
                        .and_then(Value::as_sequence)
                        .into_iter()
                        .flatten()
                        .filter_map(|q| {
                            let prefix = q
                                .get("Filter")
                                .and_then(|f| f.get("S3Key"))
                                .and_then(|k| k.get("Rules"))
                                .and_then(Value::as_sequence)
                                .and_then(|rules| {
                                    rules
                                        .iter()
                                        .find(|r| r.get("Name").and_then(Value::as_str) == Some("prefix"))
                                })
                                .and_then(|r| r.get("Value"))
                                .and_then(Value::as_str)
                                .map(str::to_owned);
                            Some((
                                referenced(q.get("Queue")?)?,
                                q.get("Event")?.as_str()?.to_owned(),
                                prefix,
                            ))
                        })
                        .collect(),
                    logical_id: id.clone(),
                }),
                "AWS::Serverless::Function" => {
                    let binary = function_binary(res)
                        .ok_or_else(|| shape(format!("{id}: Metadata.Binary is required")))?
                        .to_owned();
                    out.functions.push(FunctionSpec {
                        logical_id: id.clone(),
                        binary: binary.clone(),
                        has_url: props.get("FunctionUrlConfig").is_some(),
                        env: props
                            .get("Environment")
                            .and_then(|e| e.get("Variables"))
                            .map(env_map)
                            .unwrap_or_default(),
                    });
                    for (event, spec) in props
                        .get("Events")
                        .and_then(Value::as_mapping)
                        .into_iter()
                        .flatten()
                    {
                        let ev_type = spec.get("Type").and_then(Value::as_str).unwrap_or_default();
                        let p = spec.get("Properties").cloned().unwrap_or(Value::Null);
                        let source = match ev_type {
                            "SQS" => TriggerSource::Queue(
                                p.get("Queue")
                                    .and_then(referenced)
                                    .ok_or_else(|| shape(format!("{id}: SQS Queue")))?,
                            ),
                            "DynamoDB" => TriggerSource::Stream(
                                p.get("Stream")
                                    .and_then(referenced)
                                    .ok_or_else(|| shape(format!("{id}: Stream")))?,
                            ),
                            _ => continue,
                        };
                        let filters = p
                            .get("FilterCriteria")
                            .and_then(|f| f.get("Filters"))
                            .and_then(Value::as_sequence)
                            .map(|fs| {
                                fs.iter()
                                    .filter_map(|f| {
                                        f.get("Pattern").and_then(Value::as_str).map(str::to_owned)
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        out.triggers.push(TriggerSpec {
                            function: binary.clone(),
                            event: event.as_str().unwrap_or_default().to_owned(),
                            source,
                            batch_size: p.get("BatchSize").and_then(Value::as_u64).unwrap_or(10) as u32,
                            report_batch_item_failures: p
                                .get("FunctionResponseTypes")
                                .and_then(Value::as_sequence)
                                .is_some_and(|s| {
                                    s.iter().any(|t| t.as_str() == Some("ReportBatchItemFailures"))
                                }),
                            filters,
                            starting_position: p
                                .get("StartingPosition")
                                .and_then(Value::as_str)
                                .unwrap_or("TRIM_HORIZON")
                                .to_owned(),
                            // Lambda's default (-1) retries until the records expire; locally, a few.
                            maximum_retry_attempts: p
                                .get("MaximumRetryAttempts")
                                .and_then(Value::as_i64)
                                .filter(|n| *n >= 0)
                                .map_or(5, |n| n as u32),
                            bisect_on_error: p
                                .get("BisectBatchOnFunctionError")
                                .and_then(Value::as_bool)
                                .unwrap_or(false),
                            on_failure: p
                                .get("DestinationConfig")
                                .and_then(|d| d.get("OnFailure"))
                                .and_then(|o| o.get("Destination"))
                                .and_then(referenced),
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// A function's environment as the cloud would set it, resolved against
    /// the local stack: globals, then the function's own variables.
    /// Variables naming something the local stack does not create (the
    /// webhook secret, say) are left out.
    pub fn function_env(&self, function: &str, stack: &Stack) -> BTreeMap<String, String> {
        let Some(f) = self
            .functions
            .iter()
            .find(|f| f.logical_id == function || f.binary == function)
        else {
            return BTreeMap::new();
        };
        self.global_env
            .iter()
            .chain(&f.env)
            .filter_map(|(k, v)| Some((k.clone(), self.resolve(v, stack)?)))
            .collect()
    }

    /// Resolves a value against the local stack: pseudo parameters,
    /// parameter defaults, and what the stack created (`!Ref X` and
    /// `${X}`: a table's name, a queue's URL, a bucket's name). An attribute
    /// (`${X.Arn}`) is not resolved: the variable is left out.
    fn resolve(&self, v: &Value, stack: &Stack) -> Option<String> {
        resolve_with(v, &|name| {
            pseudo(name, &self.stack)
                .or_else(|| self.parameters.get(name).cloned())
                .or_else(|| stack.physical(name).map(str::to_owned))
        })
    }

    pub fn table(&self, logical_id: &str) -> Option<&TableSpec> {
        self.tables.iter().find(|t| t.logical_id == logical_id)
    }

    pub fn queue(&self, logical_id: &str) -> Option<&QueueSpec> {
        self.queues.iter().find(|q| q.logical_id == logical_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_project_template() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
        let t = Template::load(&path, "local").unwrap();
        let table = t.table("StockTable").unwrap();
        assert_eq!(table.name, "local-stock");
        assert_eq!(
            table.key_schema,
            vec![("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]
        );
        assert_eq!(table.ttl_attribute.as_deref(), Some("expires_at"));
        assert_eq!(table.stream_view.as_deref(), Some("NEW_AND_OLD_IMAGES"));
        assert_eq!(t.queue("AlertQueue").unwrap().name, "local-alerts");
        assert!(t.env_refs.contains(&("STOCK_TABLE".into(), "StockTable".into())));
        assert!(t
            .env_refs
            .contains(&("ALERT_QUEUE_URL".into(), "AlertQueue".into())));
        let bins: Vec<_> = t.functions.iter().map(|f| f.binary.as_str()).collect();
        assert!(bins.contains(&"sale-webhook") && bins.contains(&"stock-api"));
    }

    #[test]
    fn resolves_a_function_environment_against_the_local_stack() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
        let t = Template::load(&path, "local").unwrap();
        let mut stack = Stack::default();
        stack.tables.insert("StockTable".into(), "local-stock".into());
        for q in ["WebChannelQueue", "PosChannelQueue", "MarketplaceChannelQueue"] {
            stack.queue_urls.insert(q.into(), format!("http://sqs/{q}"));
        }
        let env = t.function_env("StockFanoutFunction", &stack);
        assert_eq!(env["STOCK_TABLE"], "local-stock");
        assert_eq!(
            env["CHANNELS"],
            "web=warehouse,pos=downtown,marketplace=warehouse/2"
        );
        assert_eq!(
            env["CHANNEL_QUEUES"],
            "web=http://sqs/WebChannelQueue,pos=http://sqs/PosChannelQueue,marketplace=http://sqs/MarketplaceChannelQueue"
        );
        assert_eq!(env["DEFAULT_LOCATION"], "warehouse");
        // The webhook secret is not created locally: local.env says WEBHOOK_SECRET instead.
        let sale = t.function_env("sale-webhook", &stack);
        assert!(!sale.contains_key("WEBHOOK_SECRET_ARN"));
        assert_eq!(sale["STOCK_TABLE"], "local-stock");
        let trigger = t.triggers.iter().find(|x| x.function == "stock-fanout").unwrap();
        assert_eq!(trigger.source, TriggerSource::Stream("StockTable".into()));
        assert_eq!(
            (trigger.maximum_retry_attempts, trigger.bisect_on_error),
            (5, true)
        );
        assert_eq!(trigger.on_failure.as_deref(), Some("FanoutDLQ"));
        assert_eq!(t.table("StockTable").unwrap().indexes[0].name, "by-location");
        let bucket = t.buckets.iter().find(|b| b.logical_id == "FeedBucket").unwrap();
        assert_eq!(bucket.name, "local-feeds-123456789012-us-east-1");
        assert!(bucket.versioned);
        assert_eq!(
            bucket.queue_notifications,
            vec![(
                "FeedQueue".into(),
                "s3:ObjectCreated:*".into(),
                Some("feeds/".into())
            )]
        );
    }

    #[test]
    fn the_connector_reads_both_of_its_queues() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
        let t = Template::load(&path, "local").unwrap();
        let mut sources: Vec<_> = t
            .triggers
            .iter()
            .filter(|x| x.function == "channel-sync")
            .map(|x| {
                assert!(x.report_batch_item_failures && x.batch_size == 10, "{x:?}");
                x.source.clone()
            })
            .collect();
        sources.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(
            sources,
            vec![
                TriggerSource::Queue("ChannelEditsQueue".into()),
                TriggerSource::Queue("WebChannelQueue".into())
            ]
        );
        assert!(t.queue("WebChannelQueue").unwrap().fifo);
        let edits = t.queue("ChannelEditsQueue").unwrap();
        assert_eq!(edits.name, "local-channel-edits");
        // Standard: per-message delays (the grace period) exist only there.
        assert!(!edits.fifo);
        assert_eq!(edits.dead_letter, Some(("ChannelEditsDLQ".into(), 5)));
        assert!(edits.visibility_timeout.unwrap() >= 6 * 60);
        let events = t.functions.iter().find(|f| f.binary == "channel-events").unwrap();
        assert!(events.has_url);

        let mut stack = Stack::default();
        stack.tables.insert("StockTable".into(), "local-stock".into());
        for q in ["AlertQueue", "ChannelEditsQueue"] {
            stack.queue_urls.insert(q.into(), format!("http://sqs/{q}"));
        }
        let sync = t.function_env("ChannelSyncFunction", &stack);
        assert_eq!(sync["STOCK_TABLE"], "local-stock");
        assert_eq!(sync["ALERT_QUEUE_URL"], "http://sqs/AlertQueue");
        assert_eq!(sync["CHANNEL_EDITS_QUEUE_URL"], "http://sqs/ChannelEditsQueue");
        assert_eq!(sync["CONNECTORS"], "");
        assert_eq!(sync["SHOPIFY_API_VERSION"], "2026-10");
        assert_eq!(sync["SHOPIFY_ADMIN_URL"], "https://{shop}");
        assert_eq!(sync["CHANNEL_EDIT_GRACE_SECONDS"], "60");
        assert!(sync.contains_key("CHANNELS"));
        // The tokens are not created locally: local.env says SHOPIFY_TOKENS instead.
        assert!(!sync.contains_key("SHOPIFY_TOKENS_ARN"));
        let events = t.function_env("channel-events", &stack);
        assert_eq!(events["CHANNEL_EDITS_QUEUE_URL"], "http://sqs/ChannelEditsQueue");
        assert_eq!(events["CHANNEL_EDIT_GRACE_SECONDS"], "60");
        assert!(!events.contains_key("WEBHOOK_SECRET_ARN"));
    }

    /// `infra/local.env` against the local stack template.yaml creates: a
    /// resource it names is the one the emulator will have (the bootstrap
    /// refuses a stack that drifts), and every secret a function reads by
    /// ARN, which the local stack does not create, it gives plainly.
    #[test]
    fn local_env_agrees_with_the_template() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let env = crate::envfile::load(&root.join("local.env")).unwrap();
        let t = Template::load(&root.join("../template.yaml"), &env["STACK_NAME"]).unwrap();
        let endpoint = env["AWS_ENDPOINT_URL"].trim_end_matches('/');
        let mut stack = Stack::default();
        for table in &t.tables {
            stack.tables.insert(table.logical_id.clone(), table.name.clone());
        }
        for q in &t.queues {
            stack.queue_urls.insert(
                q.logical_id.clone(),
                format!("{endpoint}/{LOCAL_ACCOUNT}/{}", q.name),
            );
        }
        for b in &t.buckets {
            stack.buckets.insert(b.logical_id.clone(), b.name.clone());
        }
        assert_eq!(stack.drift(&t, &env), vec![]);
        for f in &t.functions {
            let resolved = t.function_env(&f.logical_id, &stack);
            for var in f.env.keys().filter(|k| !resolved.contains_key(*k)) {
                let plain = var.strip_suffix("_ARN").unwrap_or(var);
                assert!(
                    env.contains_key(plain),
                    "{}: {var} is not created locally and local.env has no {plain}",
                    f.logical_id
                );
            }
        }
        for var in ["CHANNEL_EDITS_QUEUE_URL", "ALERT_QUEUE_URL", "STOCK_TABLE"] {
            assert!(env.contains_key(var), "{var} in local.env");
        }
    }

    #[test]
    fn reads_triggers_and_dead_letter_queues() {
        let text = r#"
Resources:
  Q:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-q"
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt D.Arn
        maxReceiveCount: 3
  D:
    Type: AWS::SQS::Queue
  F:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: f
    Properties:
      Events:
        FromQ:
          Type: SQS
          Properties:
            Queue: !GetAtt Q.Arn
            BatchSize: 5
            FunctionResponseTypes: [ReportBatchItemFailures]
        FromStream:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt T.StreamArn
            FilterCriteria:
              Filters:
                - Pattern: '{"dynamodb": {}}'
"#;
        let t = Template::parse(text, "s").unwrap();
        assert_eq!(t.queue("Q").unwrap().name, "s-q");
        assert_eq!(t.queue("Q").unwrap().dead_letter, Some(("D".into(), 3)));
        assert_eq!(t.queue("D").unwrap().name, "s-d");
        assert_eq!(t.triggers.len(), 2);
        let q = t.triggers.iter().find(|x| x.event == "FromQ").unwrap();
        assert_eq!((q.batch_size, q.report_batch_item_failures), (5, true));
        let s = t.triggers.iter().find(|x| x.event == "FromStream").unwrap();
        assert_eq!(s.source, TriggerSource::Stream("T".into()));
        assert_eq!(s.filters, vec![r#"{"dynamodb": {}}"#.to_owned()]);
    }

    /// `yaml` (one value) resolved as a function's environment would be,
    /// in stack `s` with parameter `P` (default `p`) and a created table `T`.
    fn env_value(yaml: &str) -> Option<String> {
        let t = Template {
            stack: "s".into(),
            parameters: BTreeMap::from([("P".to_owned(), "p".to_owned())]),
            ..Template::default()
        };
        let mut stack = Stack::default();
        stack.tables.insert("T".into(), "s-t".into());
        let v: Value = serde_norway::from_str(yaml).unwrap();
        t.resolve(&v, &stack)
    }

    #[test]
    fn one_resolver_reads_both_sub_forms() {
        for yaml in [
            r#"!Sub "${AWS::StackName}/${AWS::Region}/${AWS::AccountId}/${AWS::Partition}""#,
            r#"{"Fn::Sub": "${AWS::StackName}/${AWS::Region}/${AWS::AccountId}/${AWS::Partition}"}"#,
        ] {
            assert_eq!(
                env_value(yaml).as_deref(),
                Some("s/us-east-1/123456789012/aws"),
                "{yaml}"
            );
        }
        // Parameters and created resources, by `${X}` and by `!Ref`/`Ref`.
        assert_eq!(env_value(r#"!Sub "${T}:${P}""#).as_deref(), Some("s-t:p"));
        assert_eq!(env_value("!Ref T").as_deref(), Some("s-t"));
        assert_eq!(env_value(r#"{"Ref": "P"}"#).as_deref(), Some("p"));
        // The list form: its own variables first (themselves resolved), then the rest.
        for yaml in [
            r#"!Sub ["${A}-${B}-${T}", {A: x, B: !Ref P}]"#,
            r#"{"Fn::Sub": ["${A}-${B}-${T}", {A: x, B: {"Ref": "P"}}]}"#,
        ] {
            assert_eq!(env_value(yaml).as_deref(), Some("x-p-s-t"), "{yaml}");
        }
        // `${!X}` is written literally, as Fn::Sub does.
        assert_eq!(env_value(r#"!Sub "${!T}-${T}""#).as_deref(), Some("${T}-s-t"));
        // Unknown names and attributes leave the value unresolved, not half done.
        assert_eq!(env_value(r#"!Sub "${Nope}-${T}""#), None);
        assert_eq!(env_value(r#"!Sub "${T.Arn}""#), None);
        assert_eq!(env_value(r#"!Sub "${T""#), None);
        assert_eq!(env_value("!GetAtt T.Arn"), None);
        assert_eq!(env_value("plain").as_deref(), Some("plain"));
    }

    #[test]
    fn resource_names_resolve_pseudo_parameters_and_parameter_defaults() {
        let text = r#"
Parameters:
  Env:
    Type: String
    Default: dev
Resources:
  A:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-${Env}-a"
  B:
    Type: AWS::SQS::Queue
    Properties:
      QueueName:
        Fn::Sub: "${AWS::StackName}-${AWS::Region}-b"
  C:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub ["${AWS::StackName}-${Kind}", {Kind: !Ref Env}]
  D:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-${Unknown}"
  E:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: plain-e
"#;
        let t = Template::parse(text, "s").unwrap();
        let name = |id: &str| t.queue(id).unwrap().name.clone();
        assert_eq!(name("A"), "s-dev-a");
        assert_eq!(name("B"), "s-us-east-1-b");
        assert_eq!(name("C"), "s-dev");
        // What cannot be resolved gets the name of a resource without one.
        assert_eq!(name("D"), "s-d");
        assert_eq!(name("E"), "plain-e");
    }
}
