use std::path::PathBuf;

/// Errors of the storage server's lifecycle. S3 request errors never reach
/// this type: `s3s` turns them into S3's XML error shapes on the wire.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("data directory {path} is not usable")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the object store in {path}: {message}")]
    Backend { path: PathBuf, message: String },
    #[error("cannot read the listener's address")]
    Listener(#[source] std::io::Error),
}
