//! The X-Ray trace header (`X-Amzn-Trace-Id`, `Lambda-Runtime-Trace-Id`),
//! shared by the gateway, which accepts or starts a trace per request, and
//! the shim, which does the same when called directly.

use std::time::{SystemTime, UNIX_EPOCH};

/// Longest trace header accepted from a caller.
pub const MAX_TRACE_HEADER: usize = 512;

/// A new trace header: `Root=1-<epoch seconds hex>-<96-bit hex>;Parent=<64-bit hex>;Sampled=0`.
pub fn new_trace_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let parent = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{secs:08x}-{};Parent={};Sampled=0",
        &id[..24],
        &parent[..16]
    )
}

/// Whether a caller's trace header can be passed on (it has a `Root=`
/// field, possibly after `Self=` as load balancers add, and a sane size).
pub fn is_valid_trace_header(header: &str) -> bool {
    header.len() <= MAX_TRACE_HEADER
        && header
            .split(';')
            .any(|field| field.trim_start().starts_with("Root="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_trace_ids_have_the_xray_shape() {
        let t = new_trace_id();
        let root = t.strip_prefix("Root=1-").expect("root");
        let (epoch, rest) = root.split_once('-').expect("parts");
        assert_eq!(epoch.len(), 8);
        assert_eq!(rest.split(';').next().map(str::len), Some(24));
        assert!(t.ends_with(";Sampled=0"));
        assert!(is_valid_trace_header(&t));
    }

    #[test]
    fn caller_headers_need_a_root() {
        assert!(is_valid_trace_header(
            "Root=1-5759e988-bd862e3fe1be46a994272793"
        ));
        assert!(is_valid_trace_header(
            "Self=1-67891234-12456789abcdef012345678;Root=1-67891233-abcdef012345678912345678"
        ));
        assert!(!is_valid_trace_header("Parent=53995c3f42cd8ad8"));
        assert!(!is_valid_trace_header(&format!("Root={}", "x".repeat(600))));
    }
}
