//! What a backend is doing with its workers, by worker id: the state its
//! create calls and its event watcher share. One lock, never held across an
//! await.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::BackendError;

#[derive(Debug, Default)]
pub(crate) struct Marks {
    /// Being created: the create call owns failures (their exits are not
    /// reported, their logs are captured first).
    pub starting: HashSet<String>,
    /// Being removed by the backend: their exits are not reported.
    pub removing: HashSet<String>,
    /// OOM kills seen by the event watcher.
    pub oom_kills: HashMap<String, u32>,
}

#[derive(Debug, Default)]
pub(crate) struct MarkTable(Mutex<Marks>);

impl MarkTable {
    pub fn lock(&self) -> MutexGuard<'_, Marks> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Marks a worker as starting for the lifetime of a create call.
pub(crate) struct StartingMark<'a> {
    marks: &'a MarkTable,
    worker_id: String,
}

impl<'a> StartingMark<'a> {
    /// `AlreadyExists` when a create of the same worker is under way.
    pub fn new(marks: &'a MarkTable, worker_id: &str) -> Result<Self, BackendError> {
        if !marks.lock().starting.insert(worker_id.to_owned()) {
            return Err(BackendError::AlreadyExists {
                worker_id: worker_id.to_owned(),
            });
        }
        Ok(Self {
            marks,
            worker_id: worker_id.to_owned(),
        })
    }
}

impl Drop for StartingMark<'_> {
    fn drop(&mut self) {
        self.marks.lock().starting.remove(&self.worker_id);
    }
}
