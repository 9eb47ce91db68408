//! The `esb` command line: SAM templates to a running box (DESIGN.md §1, §5).

pub mod build;
pub mod client;
pub mod commands;
pub mod compose;
pub mod docker;
pub mod error;
pub mod logs;
pub mod project;
pub mod provision;
pub mod sam;
pub mod secrets;
