//! Wire contracts shared by ESB's processes. No I/O.

pub mod trace;

/// The agent <-> gateway gRPC API (`proto/esb/agent/v1/agent.proto`).
pub mod agent {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("esb.agent.v1");
}
