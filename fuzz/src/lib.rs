//! Helpers the fuzz targets share.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Request methods the targets pick from: the ones routes know and one they don't.
pub const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PURGE",
];

/// Everything but RFC 3986 unreserved characters.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes `text` for a path segment or a query component.
pub fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, ENCODE).to_string()
}

/// Percent-decodes `text`; invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// A request written as text, the form the seed corpora use:
///
/// ```text
/// METHOD TARGET
/// name: value
/// ...
///
/// body
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRequest<'a> {
    pub method: &'a str,
    /// The path and query.
    pub target: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

/// Reads a [`TextRequest`]; `None` when `data` does not have its shape (the
/// targets then read `data` as structured input).
pub fn parse_http_text(data: &[u8]) -> Option<TextRequest<'_>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &data[data.len()..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let (method, target) = lines.next()?.split_once(' ')?;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let headers = lines
        .map(|line| {
            line.split_once(':')
                .map(|(name, value)| (name.trim(), value.trim()))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(TextRequest {
        method,
        target,
        headers,
        body,
    })
}

/// Builds the `http` request parts of a [`TextRequest`]; `None` when the
/// method, target or a header is not valid HTTP.
pub fn request_parts(text: &TextRequest<'_>) -> Option<http::request::Parts> {
    let mut builder = http::Request::builder()
        .method(text.method)
        .uri(text.target);
    for (name, value) in &text.headers {
        builder = builder.header(*name, *value);
    }
    Some(builder.body(()).ok()?.into_parts().0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_requests_parse() {
        let text =
            parse_http_text(b"POST /a?b=c\nHost: x\nX-Y:  z \n\n{\"k\":1}\n\n").expect("text");
        assert_eq!(
            text,
            TextRequest {
                method: "POST",
                target: "/a?b=c",
                headers: vec![("Host", "x"), ("X-Y", "z")],
                body: b"{\"k\":1}\n\n",
            }
        );
        assert!(parse_http_text(b"\x00\x01garbage").is_none());
        assert!(parse_http_text(b"GET /\nno colon").is_none());
    }
}
