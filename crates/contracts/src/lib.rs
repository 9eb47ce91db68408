//! Contracts shared by ESB's processes: the gRPC API, trace ids, the box's
//! PKI and file names, the health probe of the service images, and how a
//! service binary logs and stops.

pub mod health;
pub mod pki;
pub mod service;
pub mod trace;

/// The agent <-> gateway gRPC API (`proto/esb/agent/v1/agent.proto`).
pub mod agent {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("esb.agent.v1");
}
