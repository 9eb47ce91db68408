//! API Gateway's request size quotas on the template's routes (API Gateway
//! developer guide, "Amazon API Gateway quotas"):
//! - "Length, in characters, of the URL for a regional API": 10240 (REST);
//! - "Total combined size of request line and header values": 10240 bytes
//!   (REST and HTTP APIs).
//!
//! The URL is counted as its request target (path and query), since ESB
//! serves every API at the root of its host; the request line as
//! `METHOD SP target SP HTTP/x.y`; header values without their names, as
//! the quota says. The status codes are ESB's choice where AWS documents
//! none: `414` (the developer guide names "414 Request URI too long" for
//! over-long method ARNs) and `431` for the headers.

use http::{HeaderMap, Method, Uri};

use crate::error::ApiError;

/// Longest request target, in characters.
pub const MAX_URL_LENGTH: usize = 10_240;
/// Largest request line plus header values, in bytes.
pub const MAX_REQUEST_LINE_AND_HEADERS: usize = 10_240;

/// Refuses a request over API Gateway's URL or header quota.
pub fn check(method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    let target = uri
        .path_and_query()
        .map_or_else(|| uri.path().len(), |target| target.as_str().len());
    if target > MAX_URL_LENGTH {
        return Err(ApiError::UriTooLong {
            length: target,
            limit: MAX_URL_LENGTH,
        });
    }
    // "GET /path HTTP/1.1"
    let request_line = method.as_str().len() + 1 + target + " HTTP/1.1".len();
    let size = request_line + headers.values().map(|v| v.len()).sum::<usize>();
    if size > MAX_REQUEST_LINE_AND_HEADERS {
        return Err(ApiError::HeadersTooLarge {
            size,
            limit: MAX_REQUEST_LINE_AND_HEADERS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn uri(target: &str) -> Uri {
        target.parse().expect("uri")
    }

    #[test]
    fn long_urls_are_refused() {
        let at_limit = format!("/{}", "a".repeat(MAX_URL_LENGTH - 1));
        let err = check(&Method::GET, &uri(&at_limit), &HeaderMap::new())
            .expect_err("the request line counts too");
        assert!(matches!(err, ApiError::HeadersTooLarge { .. }), "{err:?}");
        let over = format!("/x?q={}", "a".repeat(MAX_URL_LENGTH));
        let err = check(&Method::GET, &uri(&over), &HeaderMap::new()).expect_err("too long");
        assert!(
            matches!(err, ApiError::UriTooLong { length, limit } if length == over.len() && limit == MAX_URL_LENGTH),
            "{err:?}"
        );
        assert!(check(&Method::GET, &uri("/items/1?x=1"), &HeaderMap::new()).is_ok());
    }

    #[test]
    fn request_line_and_header_values_are_counted() {
        let request_line = "GET /a HTTP/1.1".len();
        let mut headers = HeaderMap::new();
        let fill = MAX_REQUEST_LINE_AND_HEADERS - request_line;
        headers.insert(
            "x-big",
            HeaderValue::from_str(&"v".repeat(fill)).expect("value"),
        );
        assert!(
            check(&Method::GET, &uri("/a"), &headers).is_ok(),
            "exactly at the limit"
        );
        headers.append("x-more", HeaderValue::from_static("1"));
        let err = check(&Method::GET, &uri("/a"), &headers).expect_err("one byte over");
        assert!(
            matches!(err, ApiError::HeadersTooLarge { size, .. } if size == MAX_REQUEST_LINE_AND_HEADERS + 1),
            "{err:?}"
        );
    }
}
