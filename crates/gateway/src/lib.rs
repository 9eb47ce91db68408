//! The ESB gateway.

pub mod auth;
pub mod event;
pub mod route;
