//! The feed bucket as an import uses it: an object's head, its rows as a
//! stream, and the files written next to it.

use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use tokio::io::{AsyncRead, BufReader};

use super::import::ImportError;
use super::report::{Rejects, Report};
use super::{FeedFormat, FeedReader, ObjectRef, Position, ReadOptions};
use crate::clock;

/// An object's body, streamed.
pub(crate) type Body = BufReader<Box<dyn AsyncRead + Send + Unpin>>;

fn s3_err<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_s3::error::SdkError<E, R>,
) -> ImportError {
    ImportError::S3(aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
}

/// What the object's head says.
pub(crate) struct Head {
    /// Its ETag (unquoted), else the notification's, else empty.
    pub etag: String,
    /// In [`clock`] format; now when S3 does not say.
    pub last_modified: String,
    /// Its size in bytes (0 when S3 does not say).
    pub size: u64,
}

/// The object's head; `None` when it is gone.
pub(crate) async fn head(s3: &Client, object: &ObjectRef) -> Result<Option<Head>, ImportError> {
    let request = s3
        .head_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_version_id(object.version_id.clone());
    let head = match request.send().await {
        Ok(h) => h,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => return Ok(None),
        Err(e) => return Err(s3_err(e)),
    };
    let etag = head
        .e_tag()
        .map(|e| e.trim_matches('"').to_owned())
        .or_else(|| object.etag.clone())
        .unwrap_or_default();
    Ok(Some(Head {
        etag,
        size: head
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        last_modified: head
            .last_modified()
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok())
            .map(clock::format)
            .unwrap_or_else(clock::now),
    }))
}

/// The object's bytes from `offset` on (a ranged GET, `Range: bytes=<offset>-`),
/// only while it is still the object `head` described (`If-Match` its ETag):
/// an object replaced meanwhile fails the read rather than mixing two files.
async fn body_from(s3: &Client, object: &ObjectRef, head: &Head, offset: u64) -> Result<Body, ImportError> {
    let stream: Box<dyn AsyncRead + Send + Unpin> = if offset > 0 && head.size > 0 && offset >= head.size {
        // Nothing is left (S3 refuses a range that starts at or past the end).
        Box::new(tokio::io::empty())
    } else {
        let got = s3
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .set_if_match((!head.etag.is_empty()).then(|| format!("\"{}\"", head.etag)))
            .set_range((offset > 0).then(|| format!("bytes={offset}-")))
            .send()
            .await
            .map_err(s3_err)?;
        Box::new(got.body.into_async_read())
    };
    Ok(BufReader::with_capacity(64 * 1024, stream))
}

/// Opens the object as a stream of rows, from its first byte (`at`: `None`)
/// or from where an earlier invocation stopped.
pub(crate) async fn open(
    s3: &Client,
    object: &ObjectRef,
    head: &Head,
    format: FeedFormat,
    options: ReadOptions,
    at: Option<Position>,
) -> Result<FeedReader<Body>, ImportError> {
    let body = body_from(s3, object, head, at.map_or(0, |p| p.offset)).await?;
    Ok(match at {
        Some(at) => FeedReader::resume(body, format, options, at),
        None => FeedReader::open(body, format, options).await?,
    })
}

async fn put(
    s3: &Client,
    bucket: &str,
    key: &str,
    body: ByteStream,
    content_type: &str,
) -> Result<(), ImportError> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(body)
        .send()
        .await
        .map_err(s3_err)?;
    Ok(())
}

/// Writes the report next to its feed.
pub(crate) async fn put_report(s3: &Client, report: &Report) -> Result<(), ImportError> {
    let body = serde_json::to_vec_pretty(report).map_err(|e| ImportError::S3(e.to_string()))?;
    put(
        s3,
        &report.subject.bucket,
        &report.key(),
        ByteStream::from(body),
        "application/json",
    )
    .await
}

/// Uploads a local CSV file.
pub(crate) async fn put_csv(s3: &Client, bucket: &str, key: &str, path: &Path) -> Result<(), ImportError> {
    let body = ByteStream::from_path(path)
        .await
        .map_err(|e| ImportError::S3(e.to_string()))?;
    put(s3, bucket, key, body, "text/csv").await
}

/// Appends an object (a part of the rejects) to a local rejects file, as it streams in.
pub(crate) async fn append_to(
    s3: &Client,
    bucket: &str,
    key: &str,
    to: &mut Rejects,
) -> Result<(), ImportError> {
    let mut body = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(s3_err)?
        .body;
    while let Some(bytes) = body
        .try_next()
        .await
        .map_err(|e| ImportError::S3(e.to_string()))?
    {
        to.append(&bytes)?;
    }
    Ok(())
}

/// Deletes an object (a part of the rejects, once joined).
pub(crate) async fn delete(s3: &Client, bucket: &str, key: &str) -> Result<(), ImportError> {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(s3_err)?;
    Ok(())
}
