//! One gateway command against the backend: validate, execute, reply.

use std::time::Instant;

use esb_contracts::agent::{command, reply, Command, CreateWorker, Done, Reply, WorkerList};
use tracing::Instrument;

use crate::backend::{Backend, BackendError};
use crate::connection::Chain;
use crate::metrics::{AgentMetrics, CommandKind};

/// Lambda's memory range.
const MEMORY_MB: std::ops::RangeInclusive<u32> = 128..=10240;
const MAX_ID_LEN: usize = 128;

/// Runs `command` and returns its one reply (same id).
pub(crate) async fn execute<B: Backend>(
    backend: &B,
    metrics: &AgentMetrics,
    command: Command,
) -> Reply {
    let id = command.id;
    let kind = CommandKind::of(command.kind.as_ref());
    let worker = match &command.kind {
        Some(command::Kind::Create(c)) => c.worker_id.clone(),
        Some(
            command::Kind::Destroy(r)
            | command::Kind::Pause(r)
            | command::Kind::Resume(r)
            | command::Kind::Metrics(r),
        ) => r.worker_id.clone(),
        Some(command::Kind::List(_)) | None => String::new(),
    };
    let span = tracing::info_span!("command", id, kind = kind.name(), worker = %worker);
    async move {
        let started = Instant::now();
        let result = run(backend, command.kind).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        metrics.command_done(kind, result.is_ok());
        let result = match result {
            Ok(r) => {
                tracing::debug!(elapsed_ms, "command done");
                r
            }
            Err(e) => {
                // The one place a backend error is logged; `to_wire` is the
                // one place it is mapped.
                tracing::warn!(elapsed_ms, error = %Chain(&e), "command failed");
                reply::Result::Error(e.to_wire())
            }
        };
        Reply {
            id,
            result: Some(result),
        }
    }
    .instrument(span)
    .await
}

async fn run<B: Backend>(
    backend: &B,
    kind: Option<command::Kind>,
) -> Result<reply::Result, BackendError> {
    let Some(kind) = kind else {
        return Err(BackendError::Invalid {
            worker_id: String::new(),
            reason: "command without a kind".into(),
        });
    };
    Ok(match kind {
        command::Kind::Create(spec) => {
            validate_create(&spec)?;
            reply::Result::Worker(backend.create(spec).await?)
        }
        command::Kind::Destroy(r) => {
            validate_worker_id(&r.worker_id)?;
            backend.destroy(&r.worker_id).await?;
            reply::Result::Done(Done {})
        }
        command::Kind::Pause(r) => {
            validate_worker_id(&r.worker_id)?;
            backend.pause(&r.worker_id).await?;
            reply::Result::Done(Done {})
        }
        command::Kind::Resume(r) => {
            validate_worker_id(&r.worker_id)?;
            backend.resume(&r.worker_id).await?;
            reply::Result::Done(Done {})
        }
        command::Kind::List(_) => reply::Result::Workers(WorkerList {
            workers: backend.list().await?,
        }),
        command::Kind::Metrics(r) => {
            validate_worker_id(&r.worker_id)?;
            reply::Result::Metrics(backend.metrics(&r.worker_id).await?)
        }
    })
}

fn invalid(worker_id: &str, reason: impl Into<String>) -> BackendError {
    BackendError::Invalid {
        worker_id: worker_id.to_owned(),
        reason: reason.into(),
    }
}

/// Worker ids end up in container names and labels: 1-128 characters of
/// `[A-Za-z0-9_.-]`, starting with a letter or digit.
fn validate_worker_id(worker_id: &str) -> Result<(), BackendError> {
    let ok = !worker_id.is_empty()
        && worker_id.len() <= MAX_ID_LEN
        && worker_id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && worker_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            worker_id,
            "worker id must be 1-128 characters of [A-Za-z0-9_.-] starting with a letter or digit",
        ))
    }
}

fn validate_create(spec: &CreateWorker) -> Result<(), BackendError> {
    validate_worker_id(&spec.worker_id)?;
    let id = spec.worker_id.as_str();
    let function_ok = !spec.function.is_empty()
        && spec.function.len() <= 140
        && spec
            .function
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !function_ok {
        return Err(invalid(
            id,
            "function name must be 1-140 characters of [A-Za-z0-9_.-]",
        ));
    }
    if spec.image.is_empty()
        || spec
            .image
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(id, "image must be a non-empty image reference"));
    }
    if !MEMORY_MB.contains(&spec.memory_mb) {
        return Err(invalid(
            id,
            format!(
                "memory_mb must be within {}-{} MB",
                MEMORY_MB.start(),
                MEMORY_MB.end()
            ),
        ));
    }
    // Names only: values are never logged or echoed.
    if let Some(key) = spec
        .env
        .iter()
        .find(|(k, v)| k.is_empty() || k.contains(['=', '\0']) || v.contains('\0'))
        .map(|(k, _)| k)
    {
        return Err(invalid(id, format!("invalid environment variable {key:?}")));
    }
    if spec.command.iter().any(|a| a.contains('\0')) {
        return Err(invalid(id, "command arguments must not contain NUL"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CreateWorker {
        CreateWorker {
            worker_id: "w-1".into(),
            function: "hello".into(),
            image: "esb-hello:latest".into(),
            memory_mb: 128,
            timeout_seconds: 3,
            env: Default::default(),
            command: Vec::new(),
            owner: "gw".into(),
        }
    }

    #[test]
    fn valid_create_passes() {
        assert!(validate_create(&spec()).is_ok());
    }

    #[test]
    fn bad_creates_are_invalid() {
        let cases: [fn(&mut CreateWorker); 8] = [
            |s| s.worker_id = String::new(),
            |s| s.worker_id = "../etc".into(),
            |s| s.worker_id = "x".repeat(129),
            |s| s.function = "a b".into(),
            |s| s.image = String::new(),
            |s| s.memory_mb = 64,
            |s| s.memory_mb = 20000,
            |s| {
                s.env.insert("A=B".into(), "v".into());
            },
        ];
        for (i, mutate) in cases.iter().enumerate() {
            let mut s = spec();
            mutate(&mut s);
            assert!(
                matches!(validate_create(&s), Err(BackendError::Invalid { .. })),
                "case {i} should be invalid"
            );
        }
    }

    #[test]
    fn env_errors_name_the_key_but_not_the_value() {
        let mut s = spec();
        s.env.insert("BAD=KEY".into(), "hunter2".into());
        let e = validate_create(&s).expect_err("invalid");
        let text = e.to_wire().message;
        assert!(
            text.contains("BAD=KEY") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
