//! The Invoke API's function name parsing (`esb_gateway::invocation::FunctionRef`):
//! names, partial and full ARNs, qualifiers.
//!
//! Properties: no panic; what parses matches the `FunctionName` pattern
//! of the Lambda API model (never more lenient than AWS), and written back
//! as a full ARN it parses to the same function.
#![no_main]

use std::sync::OnceLock;

use esb_gateway::invocation::FunctionRef;
use libfuzzer_sys::fuzz_target;
use regex::Regex;

/// The Lambda API model's `FunctionName` pattern, anchored.
fn pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(
            "^(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST(\\.PUBLISHED)?|[a-zA-Z0-9-_]+))?$",
        )
        .expect("pattern")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = FunctionRef::parse(raw) else {
        return;
    };
    assert!(pattern().is_match(raw), "{raw:?} parsed as {parsed:?}");
    let region = parsed.region.as_deref().unwrap_or("us-east-1");
    let account = parsed.account.as_deref().unwrap_or("123456789012");
    let mut arn = format!("arn:aws:lambda:{region}:{account}:function:{}", parsed.name);
    if let Some(qualifier) = &parsed.qualifier {
        arn.push(':');
        arn.push_str(qualifier);
    }
    if arn.len() > 256 {
        return;
    }
    let again = FunctionRef::parse(&arn).unwrap_or_else(|e| panic!("{arn}: {e:?}"));
    assert_eq!(again.name, parsed.name, "{raw:?} -> {arn}");
    assert_eq!(again.qualifier, parsed.qualifier, "{raw:?} -> {arn}");
    assert_eq!(again.region.as_deref(), Some(region));
    assert_eq!(again.account.as_deref(), Some(account));
});
