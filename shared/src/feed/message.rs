//! What a feed queue message names: the objects S3 says were created, none
//! for S3's test event, or the object an import continues.

use aws_lambda_events::event::s3::S3Entity;
use serde::{Deserialize, Serialize};

use super::{decode_s3_key, FeedError};

/// One object to import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub bucket: String,
    /// Decoded.
    pub key: String,
    pub etag: Option<String>,
    pub version_id: Option<String>,
}

/// Why a message names no object we can read.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("not a feed message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("neither an S3 event nor a continuation")]
    Unknown,
    #[error("S3 record without a key")]
    NoKey,
    #[error("S3 record without a bucket")]
    NoBucket,
    #[error(transparent)]
    Key(#[from] FeedError),
}

/// A message body, whichever kind it is.
#[derive(Deserialize)]
struct Body {
    /// An import's own continuation.
    #[serde(rename = "continue")]
    resume: Option<ObjectRef>,
    /// `s3:TestEvent` when the notification was set up.
    #[serde(rename = "Event")]
    event: Option<String>,
    #[serde(rename = "Records")]
    records: Option<Vec<Record>>,
}

/// One record of an S3 event notification. Only what an import reads is
/// required: `S3EventRecord` also requires `userIdentity`,
/// `requestParameters` and `eventTime`, which not every sender includes.
#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName", default)]
    event_name: Option<String>,
    s3: S3Entity,
}

impl Record {
    fn object(self) -> Result<ObjectRef, MessageError> {
        let raw_key = self.s3.object.key.ok_or(MessageError::NoKey)?;
        Ok(ObjectRef {
            bucket: self.s3.bucket.name.ok_or(MessageError::NoBucket)?,
            key: decode_s3_key(&raw_key)?,
            etag: self.s3.object.e_tag.map(|e| e.trim_matches('"').to_owned()),
            version_id: self.s3.object.version_id,
        })
    }
}

/// Reads an SQS message body: an S3 event notification (keys URL-encoded;
/// only `ObjectCreated` records name objects to import), S3's test event,
/// or an import's own continuation.
pub fn objects_in(body: &str) -> Result<Vec<ObjectRef>, MessageError> {
    let body: Body = serde_json::from_str(body)?;
    if let Some(object) = body.resume {
        return Ok(vec![object]);
    }
    if body.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    body.records
        .ok_or(MessageError::Unknown)?
        .into_iter()
        .filter(|r| {
            r.event_name
                .as_deref()
                .is_some_and(|n| n.starts_with("ObjectCreated"))
        })
        .map(Record::object)
        .collect()
}

/// The message that continues an import of `object` in a new invocation.
pub fn continuation(object: &ObjectRef) -> String {
    serde_json::json!({ "continue": object }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn s3_events_continuations_and_test_events() {
        let event = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},
            "object":{"key":"feeds/acme/deliveries/Nov+22+%282%29.csv","eTag":"abc","versionId":"v1"}}},
            {"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"x"}}}]}"#;
        let o = objects_in(event).unwrap();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].key, "feeds/acme/deliveries/Nov 22 (2).csv");
        assert_eq!(
            (o[0].etag.as_deref(), o[0].version_id.as_deref()),
            (Some("abc"), Some("v1"))
        );
        let c = serde_json::to_string(&json!({"continue": o[0]})).unwrap();
        assert_eq!(objects_in(&c).unwrap(), o);
        assert!(objects_in(r#"{"Event":"s3:TestEvent"}"#).unwrap().is_empty());
        assert!(objects_in("nope").is_err());
    }

    #[test]
    fn a_full_s3_notification_is_read() {
        // As S3 sends it: every field, a quoted ETag, an escaped `+`.
        let event = json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
            "eventTime": "2026-11-22T08:00:00.000Z", "eventName": "ObjectCreated:Copy",
            "userIdentity": {"principalId": "AWS:X"}, "requestParameters": {"sourceIPAddress": "10.0.0.1"},
            "responseElements": {"x-amz-request-id": "r"},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "feeds",
                "bucket": {"name": "feeds-bucket", "arn": "arn:aws:s3:::feeds-bucket"},
                "object": {"key": "feeds/acme/stock/a%2Bb+c.csv", "size": 12, "eTag": "\"e1\"", "sequencer": "0A"}}
        }]});
        assert_eq!(
            objects_in(&event.to_string()).unwrap(),
            [ObjectRef {
                bucket: "feeds-bucket".into(),
                key: "feeds/acme/stock/a+b c.csv".into(),
                etag: Some("e1".into()),
                version_id: None,
            }]
        );
    }

    #[test]
    fn messages_that_name_nothing_readable_are_errors() {
        for body in [
            r#"{"hello": 1}"#,
            r#"{"Event": "s3:Other"}"#,
            r#"{"continue": {"bucket": "b"}}"#,
            r#"{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {}}}]}"#,
            r#"{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {}, "object": {"key": "k"}}}]}"#,
            r#"{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "%zz"}}}]}"#,
        ] {
            assert!(objects_in(body).is_err(), "{body}");
        }
    }

    #[test]
    fn a_continuation_names_the_object_again() {
        let object = ObjectRef {
            bucket: "b".into(),
            key: "feeds/acme/deliveries/big file.csv".into(),
            etag: Some("e1".into()),
            version_id: None,
        };
        let body = continuation(&object);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            json!({"continue": {"bucket": "b", "key": "feeds/acme/deliveries/big file.csv",
                "etag": "e1", "version_id": null}})
        );
        assert_eq!(objects_in(&body).unwrap(), [object]);
    }
}
