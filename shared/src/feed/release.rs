//! Releasing a held stock file: an ops decision, made through the stock API
//! (IAM in the cloud) with who and why, never by anything a supplier can
//! set on an upload. The release is recorded in the object's state, its
//! report and the ledger entries its rows produce.

use serde::{Deserialize, Serialize};

use super::message::{continuation, ObjectRef};
use super::{FeedKey, FeedSource, FeedState};
use crate::domain::{Actor, InvalidInput};
use crate::store::{StockStore, StoreError};

/// Who released a held file, why, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub actor: String,
    pub reason: String,
    pub at: String,
}

impl Release {
    /// What the ledger entries of a released file's rows say of it.
    pub fn note(&self) -> String {
        format!("released by {}: {}", self.actor, self.reason)
    }
}

/// A release as ops ask for it: `POST /feeds/release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRequest {
    /// The held object's key (`feeds/<supplier>/stock/...`).
    pub feed: FeedKey,
    /// The held object's ETag, as its report and alert give it.
    pub etag: String,
    pub actor: Actor,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
struct Body {
    feed: Option<String>,
    etag: Option<String>,
    actor: Option<String>,
    reason: Option<String>,
}

/// Longest reason kept (it goes into the ledger with every row).
pub const MAX_REASON: usize = 500;

impl ReleaseRequest {
    /// Parses a release request. The actor is the caller's IAM identity when
    /// there is one, else the body's `actor`.
    pub fn parse(body: &[u8], identity: Option<&str>) -> Result<Self, InvalidInput> {
        let b: Body = serde_json::from_slice(body)
            .map_err(|e| InvalidInput::field("body", format!("not a release request: {e}")))?;
        let required = |v: Option<String>, field: &'static str| {
            v.map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| InvalidInput::field(field, "is required"))
        };
        let feed = FeedKey::parse(&required(b.feed, "feed")?)
            .map_err(|e| InvalidInput::field("feed", e.to_string()))?;
        let etag = required(b.etag, "etag")?.trim_matches('"').to_owned();
        let actor = match identity {
            Some(arn) => Actor::system(arn),
            None => Actor::parse(&required(b.actor, "actor")?)?,
        };
        let reason = required(b.reason, "reason")?;
        if reason.chars().count() > MAX_REASON || reason.chars().any(char::is_control) {
            return Err(InvalidInput::field(
                "reason",
                format!("must be 1 to {MAX_REASON} characters without control characters"),
            ));
        }
        Ok(Self {
            feed,
            etag,
            actor,
            reason,
        })
    }
}

/// Why a release changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseRefused {
    #[error("no feed with that key and ETag has been seen")]
    Unknown,
    #[error("the feed is not held: it is {0}")]
    NotHeld(&'static str),
}

/// What releasing an object does, from what the store remembers of it:
/// a held file becomes released (keeping the time it arrived, so its counts
/// keep what moved since); one already released is released again (its
/// import is queued again, nothing else changes); anything else is refused.
pub fn decide(state: Option<FeedState>, release: Release) -> Result<FeedState, ReleaseRefused> {
    match state {
        None => Err(ReleaseRefused::Unknown),
        Some(FeedState::Held { as_of, .. }) => Ok(FeedState::Released { release, as_of }),
        Some(released @ FeedState::Released { .. }) => Ok(released),
        Some(FeedState::InProgress { .. }) => Err(ReleaseRefused::NotHeld("being imported")),
        Some(FeedState::Done { .. }) => Err(ReleaseRefused::NotHeld("imported")),
        Some(FeedState::Unreadable { .. }) => Err(ReleaseRefused::NotHeld("unreadable")),
        Some(FeedState::Refused { .. }) => Err(ReleaseRefused::NotHeld("refused")),
        Some(FeedState::Stopped { .. }) => Err(ReleaseRefused::NotHeld("stopped")),
    }
}

/// Where a released file goes to be imported: the feed bucket it is in and
/// the feed queue (`FEED_BUCKET`, `FEED_QUEUE_URL`).
#[derive(Debug, Clone)]
pub struct FeedQueue {
    pub bucket: String,
    pub queue_url: String,
    pub sqs: aws_sdk_sqs::Client,
}

impl FeedQueue {
    /// From `FEED_BUCKET` and `FEED_QUEUE_URL`; `None` unless both are set.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Option<Self> {
        let bucket = crate::config::var("FEED_BUCKET")?;
        let queue_url = crate::config::var("FEED_QUEUE_URL")?;
        Some(Self {
            bucket,
            queue_url,
            sqs: aws_sdk_sqs::Client::new(sdk),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Refused(#[from] ReleaseRefused),
    /// The state changed between the read and the write (an import, another release).
    #[error("the feed's state changed meanwhile; ask again")]
    Moved,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not queue the import: {0}")]
    Queue(String),
}

/// Releases a held file: records the release (a compare-and-set on the
/// object's state), then queues its import. Asking again after a failure
/// is safe: a released file is queued again, nothing else changes.
pub async fn release(
    store: &StockStore,
    feeds: &FeedQueue,
    request: &ReleaseRequest,
    at: &str,
) -> Result<FeedState, ReleaseError> {
    let src = FeedSource {
        bucket: feeds.bucket.clone(),
        key: request.feed.key.clone(),
        version: request.etag.clone(),
        supplier: request.feed.supplier.clone(),
        note: None,
    };
    let current = store.feed_state(&src).await?;
    let release = Release {
        actor: request.actor.as_str().to_owned(),
        reason: request.reason.clone(),
        at: at.to_owned(),
    };
    let released = decide(current.clone(), release)?;
    if let Some(was) = current.as_ref().filter(|was| **was != released) {
        if !store.replace_feed_state(&src, was, &released).await? {
            return Err(ReleaseError::Moved);
        }
    }
    let object = ObjectRef {
        bucket: src.bucket,
        key: src.key,
        etag: Some(src.version),
        version_id: None,
    };
    feeds
        .sqs
        .send_message()
        .queue_url(&feeds.queue_url)
        .message_body(continuation(&object))
        .send()
        .await
        .map_err(|e| ReleaseError::Queue(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()))?;
    tracing::info!(feed = %object.key, etag = ?object.etag, actor = request.actor.as_str(), "feed released");
    Ok(released)
}

/// The request that releases a held file, as its report and alert give it
/// (ops add `actor` and `reason`).
pub fn release_request(key: &str, etag: &str) -> serde_json::Value {
    serde_json::json!({"method": "POST", "path": "/feeds/release", "body": {"feed": key, "etag": etag}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release() -> Release {
        Release {
            actor: "maria".into(),
            reason: "checked with acme".into(),
            at: "2026-11-22T10:00:00.000000Z".into(),
        }
    }

    #[test]
    fn only_a_held_file_is_released_and_it_keeps_when_it_arrived() {
        let held = FeedState::Held {
            reason: "zeroes half the pool".into(),
            as_of: Some("2026-11-22T06:00:00.000000Z".into()),
        };
        let released = decide(Some(held), release()).unwrap();
        assert_eq!(
            released,
            FeedState::Released {
                release: release(),
                as_of: Some("2026-11-22T06:00:00.000000Z".into())
            }
        );
        // Released twice: the same release stands.
        let again = Release {
            actor: "someone else".into(),
            ..release()
        };
        assert_eq!(decide(Some(released.clone()), again), Ok(released));
        assert_eq!(decide(None, release()), Err(ReleaseRefused::Unknown));
        let done = FeedState::Done { report: "r".into() };
        assert_eq!(
            decide(Some(done), release()),
            Err(ReleaseRefused::NotHeld("imported"))
        );
        // A refused or stopped file is past what a release can change.
        let refused = FeedState::Refused {
            reason: "supplier initech is not configured".into(),
        };
        assert_eq!(
            decide(Some(refused), release()),
            Err(ReleaseRefused::NotHeld("refused"))
        );
        let stopped = FeedState::Stopped {
            reason: "more than 20 invocations".into(),
            report: "r".into(),
        };
        assert_eq!(
            decide(Some(stopped), release()),
            Err(ReleaseRefused::NotHeld("stopped"))
        );
    }

    #[test]
    fn a_release_needs_the_feed_its_etag_an_actor_and_a_reason() {
        let ok = br#"{"feed": "feeds/acme/stock/a.csv", "etag": "\"abc\"", "actor": "maria", "reason": "checked"}"#;
        let r = ReleaseRequest::parse(ok, None).unwrap();
        assert_eq!((r.etag.as_str(), r.actor.as_str()), ("abc", "maria"));
        let r = ReleaseRequest::parse(ok, Some("arn:aws:iam::1:user/ops")).unwrap();
        assert_eq!(r.actor.as_str(), "arn:aws:iam::1:user/ops");
        for (body, field) in [
            (r#"{"etag": "e", "actor": "a", "reason": "r"}"#, "feed"),
            (
                r#"{"feed": "reports/x.json", "etag": "e", "actor": "a", "reason": "r"}"#,
                "feed",
            ),
            (
                r#"{"feed": "feeds/acme/stock/a.csv", "actor": "a", "reason": "r"}"#,
                "etag",
            ),
            (
                r#"{"feed": "feeds/acme/stock/a.csv", "etag": "e", "reason": "r"}"#,
                "actor",
            ),
            (
                r#"{"feed": "feeds/acme/stock/a.csv", "etag": "e", "actor": "a"}"#,
                "reason",
            ),
            (
                r#"{"feed": "feeds/acme/stock/a.csv", "etag": "e", "actor": "a", "reason": " "}"#,
                "reason",
            ),
            ("[]", "body"),
        ] {
            let err = ReleaseRequest::parse(body.as_bytes(), None)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(field), "{body}: {err}");
        }
        assert_eq!(
            release_request("feeds/acme/stock/a.csv", "abc")["body"]["etag"],
            "abc"
        );
    }
}
