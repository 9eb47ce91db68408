//! ESB storage: an S3-compatible object store.
//!
//! The S3 protocol (routing, XML, SigV4, presigned URLs) comes from the `s3s`
//! crate and the filesystem backend from `s3s-fs`: every bucket is a
//! directory under [`Settings::data_dir`] and every object a file, so the data
//! survives restarts. This crate adds the box's credentials, a readiness
//! route ([`HEALTH_PATH`]), bucket lifecycle expiration (see
//! [`LifecycleSettings`]) and the server lifecycle (injected listener,
//! graceful shutdown on a [`CancellationToken`]).

mod auth;
pub mod config;
mod error;
mod lifecycle;
mod server;
mod store;

pub use config::{Config, Credentials, HealthcheckConfig, Settings};
pub use error::StorageError;
pub use lifecycle::LifecycleSettings;
pub use server::{serve, HEALTH_PATH};

#[doc(no_inline)]
pub use tokio_util::sync::CancellationToken;
