//! Creates what `template.yaml` declares on the local emulator. Idempotent:
//! what exists is left as it is, so a second `make dev` just works.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::template::Template;

#[derive(Debug, thiserror::Error)]
#[error("bootstrap failed at {what}: {message}")]
pub struct BootstrapError {
    pub what: String,
    pub message: String,
}

fn fail<E: std::error::Error>(what: impl Into<String>) -> impl FnOnce(E) -> BootstrapError {
    let what = what.into();
    move |e| BootstrapError {
        what,
        message: aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string(),
    }
}

/// The physical names and URLs of a created stack, by logical id.
#[derive(Debug, Clone, Default)]
pub struct Stack {
    pub tables: HashMap<String, String>,
    pub queue_urls: HashMap<String, String>,
    pub buckets: HashMap<String, String>,
}

/// Creates every table, queue and bucket of the template that is missing.
pub async fn bootstrap(sdk: &aws_config::SdkConfig, template: &Template) -> Result<Stack, BootstrapError> {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let s3 = aws_sdk_s3::Client::new(sdk);
    let mut stack = Stack::default();

    for t in &template.tables {
        let exists = ddb.describe_table().table_name(&t.name).send().await.is_ok();
        if !exists {
            let mut req = ddb
                .create_table()
                .table_name(&t.name)
                .billing_mode(BillingMode::PayPerRequest);
            for (attr, ty) in &t.attributes {
                req = req.attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(attr)
                        .attribute_type(ScalarAttributeType::from(ty.as_str()))
                        .build()
                        .map_err(fail(format!("table {}", t.name)))?,
                );
            }
            for key in key_schema(&t.key_schema, || format!("table {}", t.name))? {
                req = req.key_schema(key);
            }
            for index in &t.indexes {
                let mut gsi = GlobalSecondaryIndex::builder()
                    .index_name(&index.name)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(index.projection.as_str()))
                            .set_non_key_attributes(
                                (!index.non_key_attributes.is_empty())
                                    .then(|| index.non_key_attributes.clone()),
                            )
                            .build(),
                    );
                for key in key_schema(&index.key_schema, || format!("index {}", index.name))? {
                    gsi = gsi.key_schema(key);
                }
                req =
                    req.global_secondary_indexes(gsi.build().map_err(fail(format!("index {}", index.name)))?);
            }
            if let Some(view) = &t.stream_view {
                req = req.stream_specification(
                    StreamSpecification::builder()
                        .stream_enabled(true)
                        .stream_view_type(StreamViewType::from(view.as_str()))
                        .build()
                        .map_err(fail(format!("table {}", t.name)))?,
                );
            }
            req.send()
                .await
                .map_err(fail(format!("create table {}", t.name)))?;
            if let Some(attr) = &t.ttl_attribute {
                ddb.update_time_to_live()
                    .table_name(&t.name)
                    .time_to_live_specification(
                        TimeToLiveSpecification::builder()
                            .attribute_name(attr)
                            .enabled(true)
                            .build()
                            .map_err(fail(format!("ttl {}", t.name)))?,
                    )
                    .send()
                    .await
                    .map_err(fail(format!("ttl {}", t.name)))?;
            }
        }
        stack.tables.insert(t.logical_id.clone(), t.name.clone());
    }

    // Dead-letter queues first, so the queues that use them can point at their ARNs.
    let mut queues = template.queues.clone();
    queues.sort_by_key(|q| q.dead_letter.is_some());
    for q in &queues {
        let mut req = sqs.create_queue().queue_name(&q.name);
        if q.fifo {
            req = req.attributes(QueueAttributeName::FifoQueue, "true");
        }
        if let Some(v) = q.visibility_timeout {
            req = req.attributes(QueueAttributeName::VisibilityTimeout, v.to_string());
        }
        if let Some((dlq, max)) = &q.dead_letter {
            let arn = queue_arn(&sqs, &stack, dlq, || BootstrapError {
                what: format!("queue {}", q.name),
                message: format!("dead-letter queue {dlq} is not declared"),
            })
            .await?;
            req = req.attributes(
                QueueAttributeName::RedrivePolicy,
                serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max}).to_string(),
            );
        }
        let out = req
            .send()
            .await
            .map_err(fail(format!("create queue {}", q.name)))?;
        stack.queue_urls.insert(
            q.logical_id.clone(),
            out.queue_url().unwrap_or_default().to_owned(),
        );
    }

    for b in &template.buckets {
        let exists = s3.head_bucket().bucket(&b.name).send().await.is_ok();
        if !exists {
            s3.create_bucket()
                .bucket(&b.name)
                .send()
                .await
                .map_err(fail(format!("create bucket {}", b.name)))?;
        }
        if b.versioned {
            s3.put_bucket_versioning()
                .bucket(&b.name)
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder()
                        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .map_err(fail(format!("versioning on bucket {}", b.name)))?;
        }
        if !b.queue_notifications.is_empty() {
            let mut config = aws_sdk_s3::types::NotificationConfiguration::builder();
            for (queue, event, prefix) in &b.queue_notifications {
                let arn = queue_arn(&sqs, &stack, queue, || BootstrapError {
                    what: format!("bucket {}", b.name),
                    message: format!("notification queue {queue} is not declared"),
                })
                .await?;
                let mut q = aws_sdk_s3::types::QueueConfiguration::builder()
                    .queue_arn(arn)
                    .events(aws_sdk_s3::types::Event::from(event.as_str()));
                if let Some(prefix) = prefix {
                    q = q.filter(
                        aws_sdk_s3::types::NotificationConfigurationFilter::builder()
                            .key(
                                aws_sdk_s3::types::S3KeyFilter::builder()
                                    .filter_rules(
                                        aws_sdk_s3::types::FilterRule::builder()
                                            .name(aws_sdk_s3::types::FilterRuleName::Prefix)
                                            .value(prefix)
                                            .build(),
                                    )
                                    .build(),
                            )
                            .build(),
                    );
                }
                config = config.queue_configurations(q.build().map_err(fail(format!("bucket {}", b.name)))?);
            }
            s3.put_bucket_notification_configuration()
                .bucket(&b.name)
                .notification_configuration(config.build())
                .send()
                .await
                .map_err(fail(format!("notifications on bucket {}", b.name)))?;
        }
        stack.buckets.insert(b.logical_id.clone(), b.name.clone());
    }
    Ok(stack)
}

/// A table's or an index's key schema from its (attribute, HASH|RANGE)
/// pairs; `what` names it in an error.
fn key_schema(
    pairs: &[(String, String)],
    what: impl Fn() -> String,
) -> Result<Vec<KeySchemaElement>, BootstrapError> {
    pairs
        .iter()
        .map(|(attr, ty)| {
            KeySchemaElement::builder()
                .attribute_name(attr)
                .key_type(KeyType::from(ty.as_str()))
                .build()
                .map_err(fail(what()))
        })
        .collect()
}

/// The ARN of a queue created earlier, by logical id (redrive policies and
/// bucket notifications name queues by ARN); `undeclared` is the error when
/// the stack has no such queue.
async fn queue_arn(
    sqs: &aws_sdk_sqs::Client,
    stack: &Stack,
    logical_id: &str,
    undeclared: impl FnOnce() -> BootstrapError,
) -> Result<String, BootstrapError> {
    let url = stack.queue_urls.get(logical_id).ok_or_else(undeclared)?;
    Ok(sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(fail(format!("queue {logical_id}")))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default())
}

impl Stack {
    /// The value a `!Ref` to this logical id resolves to: a table or bucket
    /// name, a queue URL.
    pub fn physical(&self, logical_id: &str) -> Option<&str> {
        self.tables
            .get(logical_id)
            .or_else(|| self.queue_urls.get(logical_id))
            .or_else(|| self.buckets.get(logical_id))
            .map(String::as_str)
    }

    /// Settings `env` sets that disagree with what the template created, as
    /// `(variable, configured, created)`.
    pub fn drift(&self, template: &Template, env: &HashMap<String, String>) -> Vec<(String, String, String)> {
        template
            .env_refs
            .iter()
            .filter_map(|(var, id)| {
                let created = self.physical(id)?;
                // Unset is fine: the functions get the template's value.
                match env.get(var) {
                    Some(v) if v != created => Some((var.clone(), v.clone(), created.to_owned())),
                    _ => None,
                }
            })
            .collect()
    }
}
