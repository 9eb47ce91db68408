//! Bucket lifecycle configuration and the expiration sweep.
//!
//! A bucket's configuration is stored as JSON next to `s3s-fs`'s own
//! metadata files in the data directory's root (`.esb-lifecycle.<bucket>.json`;
//! the leading dot keeps it out of bucket listings). Only `Expiration` with
//! `Days` is enforced: a periodic sweep deletes objects, matching an enabled
//! rule's prefix, whose last modification is at least `Days` days old.
//! Rules filtering on tags or size, or expiring by date, are refused with
//! `NotImplemented`; transitions and other actions are stored but ignored.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use s3s::dto::{
    BucketLifecycleConfiguration, DeleteObjectInput, LifecycleRule, ListObjectsV2Input,
};
use s3s::{s3_error, S3Error, S3Request, S3Result, S3};
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Timing of lifecycle enforcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleSettings {
    /// Length of one lifecycle "day" (24 hours; shorter only in tests).
    pub day: Duration,
    /// How often the expiration sweep runs.
    pub sweep_interval: Duration,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            day: Duration::from_secs(24 * 60 * 60),
            sweep_interval: Duration::from_secs(10 * 60),
        }
    }
}

const FILE_PREFIX: &str = ".esb-lifecycle.";
const FILE_SUFFIX: &str = ".json";

pub(crate) fn config_path(root: &Path, bucket: &str) -> PathBuf {
    root.join(format!("{FILE_PREFIX}{bucket}{FILE_SUFFIX}"))
}

/// Rejects configurations this store would silently not enforce as written.
pub(crate) fn validate(config: &BucketLifecycleConfiguration) -> S3Result<()> {
    if config.rules.is_empty() {
        return Err(s3_error!(
            MalformedXML,
            "a lifecycle configuration needs a rule"
        ));
    }
    for rule in &config.rules {
        // Filters this store cannot evaluate would widen a rule to every
        // object under its prefix: refuse them rather than delete too much.
        if let Some(filter) = &rule.filter {
            let and_unsupported = filter.and.as_ref().is_some_and(|a| {
                a.tags.is_some()
                    || a.object_size_greater_than.is_some()
                    || a.object_size_less_than.is_some()
            });
            if filter.tag.is_some()
                || filter.object_size_greater_than.is_some()
                || filter.object_size_less_than.is_some()
                || and_unsupported
            {
                return Err(s3_error!(
                    NotImplemented,
                    "lifecycle filters on tags or object size are not supported"
                ));
            }
        }
        if rule.expiration.as_ref().is_some_and(|e| e.date.is_some()) {
            return Err(s3_error!(
                NotImplemented,
                "lifecycle expiration by date is not supported; use Days"
            ));
        }
        if let Some(days) = rule.expiration.as_ref().and_then(|e| e.days) {
            if days <= 0 {
                return Err(s3_error!(
                    InvalidArgument,
                    "'Days' for Expiration action must be a positive integer"
                ));
            }
        }
    }
    Ok(())
}

/// The key prefix a rule applies to (`Filter.Prefix`, `Filter.And.Prefix`
/// or the legacy top-level `Prefix`); empty means the whole bucket.
fn rule_prefix(rule: &LifecycleRule) -> String {
    rule.filter
        .as_ref()
        .and_then(|f| {
            f.prefix
                .clone()
                .or_else(|| f.and.as_ref().and_then(|a| a.prefix.clone()))
        })
        .or_else(|| rule.prefix.clone())
        .unwrap_or_default()
}

fn internal_request<T>(input: T) -> S3Request<T> {
    S3Request {
        input,
        method: http::Method::GET,
        uri: http::Uri::from_static("/"),
        headers: http::HeaderMap::new(),
        extensions: http::Extensions::new(),
        credentials: None,
        region: None,
        service: None,
        trailing_headers: None,
    }
}

/// Runs the sweep every `settings.sweep_interval` until `shutdown`.
pub(crate) async fn run(store: Store, settings: LifecycleSettings, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(settings.sweep_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let expired = sweep(&store, SystemTime::now(), settings.day, &shutdown).await;
        if expired > 0 {
            tracing::info!(expired, "lifecycle expiration deleted objects");
        }
    }
}

/// One pass over every bucket with a lifecycle configuration; returns the
/// number of objects deleted. Failures are logged and skipped.
pub(crate) async fn sweep(
    store: &Store,
    now: SystemTime,
    day: Duration,
    shutdown: &CancellationToken,
) -> usize {
    let mut deleted = 0;
    let mut dir = match tokio::fs::read_dir(store.root()).await {
        Ok(dir) => dir,
        Err(e) => {
            tracing::warn!(error = %e, "lifecycle sweep cannot read the data directory");
            return 0;
        }
    };
    loop {
        let entry = match dir.next_entry().await {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "lifecycle sweep cannot read the data directory");
                break;
            }
        };
        let name = entry.file_name();
        let Some(bucket) = name
            .to_str()
            .and_then(|n| n.strip_prefix(FILE_PREFIX))
            .and_then(|n| n.strip_suffix(FILE_SUFFIX))
        else {
            continue;
        };
        let config = match store.lifecycle(bucket).await {
            Ok(Some(config)) => config,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(bucket, error = %e, "lifecycle configuration unreadable");
                continue;
            }
        };
        for rule in &config.rules {
            if shutdown.is_cancelled() {
                return deleted;
            }
            if rule.status.as_str() != s3s::dto::ExpirationStatus::ENABLED {
                continue;
            }
            let Some(days) = rule.expiration.as_ref().and_then(|e| e.days) else {
                continue;
            };
            let Ok(days) = u32::try_from(days) else {
                continue;
            };
            let Some(cutoff) = now.checked_sub(day.saturating_mul(days)) else {
                continue;
            };
            match expire(store, bucket, &rule_prefix(rule), cutoff).await {
                Ok(n) => deleted += n,
                Err(e) => tracing::warn!(bucket, error = %e, "lifecycle expiration failed"),
            }
        }
    }
    deleted
}

/// Deletes the objects under `prefix` last modified at or before `cutoff`.
async fn expire(
    store: &Store,
    bucket: &str,
    prefix: &str,
    cutoff: SystemTime,
) -> Result<usize, S3Error> {
    let mut deleted = 0;
    let mut token: Option<String> = None;
    loop {
        let input = ListObjectsV2Input {
            bucket: bucket.to_owned(),
            prefix: Some(prefix.to_owned()),
            continuation_token: token.take(),
            ..Default::default()
        };
        let page = store
            .fs()
            .list_objects_v2(internal_request(input))
            .await?
            .output;
        for object in page.contents.unwrap_or_default() {
            let Some(key) = object.key else { continue };
            let path = store.root().join(bucket).join(&key);
            let modified = match tokio::fs::metadata(&path).await.and_then(|m| m.modified()) {
                Ok(t) => t,
                Err(_) => continue, // Deleted meanwhile.
            };
            if modified > cutoff {
                continue;
            }
            let input = DeleteObjectInput {
                bucket: bucket.to_owned(),
                key: key.clone(),
                ..Default::default()
            };
            store.fs().delete_object(internal_request(input)).await?;
            tracing::debug!(bucket, key, "expired by lifecycle rule");
            deleted += 1;
        }
        match (page.is_truncated, page.next_continuation_token) {
            (Some(true), Some(next)) => token = Some(next),
            _ => return Ok(deleted),
        }
    }
}
