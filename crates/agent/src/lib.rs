//! The ESB agent.
