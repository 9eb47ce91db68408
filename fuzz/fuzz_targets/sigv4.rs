//! SigV4 verification (`esb_gateway::sigv4`).
//!
//! Two kinds of input:
//! - text in the shape of an HTTP request (`METHOD TARGET`, `name: value`
//!   lines, an empty line, the body): authorized and verified against the
//!   box key at the fixture's time; whatever the header says must not panic,
//!   and verifying twice gives the same answer (the canonical request is
//!   built the same way each time);
//! - anything else drives a request built from arbitrary parts that the AWS
//!   SDK's signer (`aws-sigv4`) signs with the box key: the verifier must
//!   accept it, and refuse it once its body changes.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use esb_fuzz::{parse_http_text, percent_encode, request_parts, METHODS};
use esb_gateway::auth::Clock;
use esb_gateway::sigv4::{AccessKey, SigV4Error, Verifier};
use http::request::Parts;
use libfuzzer_sys::fuzz_target;

const KEY_ID: &str = "AKIDESBEXAMPLE000001";
const SECRET: &str = "esb/Secret+Example0123456789abcdefghijkl";
/// 2024-05-15T06:01:09Z, the time of the botocore fixture.
const FIXTURE_TIME: u64 = 1_715_752_869;
const HOST: &str = "localhost:8443";

#[derive(Debug)]
struct FixedClock(SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}

fn verifier(now: SystemTime) -> Verifier {
    Verifier::new(
        Some(AccessKey::new(KEY_ID.to_owned(), SECRET.to_owned())),
        "us-east-1",
        "lambda",
        Arc::new(FixedClock(now)),
    )
}

fn check(v: &Verifier, parts: &Parts, body: &[u8]) -> Result<(), SigV4Error> {
    let auth = v.authorize(parts)?;
    v.verify(&auth, parts, body)
}

#[derive(Debug, Arbitrary)]
struct Signed {
    method: u8,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    headers: Vec<(u8, String)>,
    body: Vec<u8>,
    /// Seconds after 2000-01-01.
    time: u32,
    /// The verifier's clock, in seconds from the signing time (kept within
    /// the allowed skew).
    skew: i16,
}

const HEADER_NAMES: &[&str] = &[
    "content-type",
    "x-amz-invocation-type",
    "x-amz-log-type",
    "x-amz-client-context",
    "x-custom",
    "X-Mixed-Case",
];

/// Only what a header value may hold, without tabs: `aws-sigv4` keeps a
/// tab inside a value where botocore (and the verifier) collapse it with
/// the spaces around it.
fn header_text(value: &str) -> String {
    value
        .chars()
        .filter(|c| *c == ' ' || c.is_ascii_graphic())
        .collect()
}

fn signed(input: Signed) {
    let method = METHODS[usize::from(input.method) % METHODS.len()];
    let path: String = input
        .segments
        .iter()
        .take(8)
        .map(|s| format!("/{}", percent_encode(s)))
        .collect();
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let query: Vec<String> = input
        .query
        .iter()
        .take(8)
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let target = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    };
    let url = format!("https://{HOST}{target}");
    let headers: Vec<(&str, String)> = input
        .headers
        .iter()
        .take(8)
        .map(|(i, v)| {
            (
                HEADER_NAMES[usize::from(*i) % HEADER_NAMES.len()],
                header_text(v),
            )
        })
        .collect();
    let signed_at = UNIX_EPOCH + Duration::from_secs(946_684_800 + u64::from(input.time));

    let identity =
        aws_credential_types::Credentials::new(KEY_ID, SECRET, None, None, "fuzz").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("lambda")
        .time(signed_at)
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let Ok(signable) = SignableRequest::new(
        method,
        &url,
        headers.iter().map(|(n, v)| (*n, v.as_str())),
        SignableBody::Bytes(&input.body),
    ) else {
        return;
    };
    let Ok(output) = sign(signable, &params) else {
        // The SDK refuses some header values; nothing to verify then.
        return;
    };
    let (instructions, _) = output.into_parts();

    let mut builder = http::Request::builder()
        .method(method)
        .uri(&target)
        .header("host", HOST);
    for (name, value) in &headers {
        builder = builder.header(*name, value.as_str());
    }
    for (name, value) in instructions.headers() {
        builder = builder.header(name, value);
    }
    let (parts, ()) = builder
        .body(())
        .expect("a signed request is valid")
        .into_parts();

    let skew = i64::from(input.skew) % (14 * 60);
    let now = if skew >= 0 {
        signed_at + Duration::from_secs(skew.unsigned_abs())
    } else {
        signed_at - Duration::from_secs(skew.unsigned_abs())
    };
    let v = verifier(now);
    if let Err(e) = check(&v, &parts, &input.body) {
        panic!("a request aws-sigv4 signed is refused: {e:?}\n{parts:?}");
    }
    let mut tampered = input.body.clone();
    tampered.push(b'!');
    assert_eq!(
        check(&v, &parts, &tampered),
        Err(SigV4Error::Mismatch),
        "a changed body still verifies"
    );
}

fuzz_target!(|data: &[u8]| {
    if let Some(text) = parse_http_text(data) {
        let Some(parts) = request_parts(&text) else {
            return;
        };
        let v = verifier(UNIX_EPOCH + Duration::from_secs(FIXTURE_TIME));
        let first = check(&v, &parts, text.body);
        let second = check(&v, &parts, text.body);
        assert_eq!(first, second, "verification is not deterministic");
        if let Err(e) = first {
            assert!(!e.error_type().is_empty());
            assert!(!e.client_message().is_empty());
        }
        return;
    }
    if let Ok(input) = Signed::arbitrary_take_rest(Unstructured::new(data)) {
        signed(input);
    }
});
