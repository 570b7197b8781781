//! Responses and writing them.

use std::io::{self, Write};

/// One HTTP response. `Content-Length` and `Connection` are added when written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers (`Content-Type` among them).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body of the given content type.
    #[must_use]
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".to_owned(), content_type.to_owned())],
            body,
        }
    }

    /// An `application/json` response.
    #[must_use]
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "application/json", body.into())
    }

    /// A `text/plain` response.
    #[must_use]
    pub fn text(status: u16, body: &str) -> Self {
        Self::new(
            status,
            "text/plain; charset=utf-8",
            body.as_bytes().to_vec(),
        )
    }

    /// 404 naming the path.
    #[must_use]
    pub fn not_found(path: &str) -> Self {
        Self::text(404, &format!("no such endpoint: {path}\n"))
    }

    /// 405 naming the allowed methods (also in an `Allow` header).
    #[must_use]
    pub fn method_not_allowed(method: &str, allowed: &[&str]) -> Self {
        let allow = allowed.join(", ");
        Self::text(
            405,
            &format!("method {method} not allowed here; allowed: {allow}\n"),
        )
        .with_header("Allow", &allow)
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// The reason phrase of a status code.
#[must_use]
pub const fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes `response` with `Content-Length` and `Connection` headers (`close` unless
/// `keep_alive`); with `head_only` the body is left out (answer to `HEAD`). One `write_all`
/// for head and body.
///
/// # Errors
/// Socket errors.
pub fn write_response<W: Write>(
    out: &mut W,
    response: &Response,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(128 + response.body.len());
    let _ = write!(
        bytes,
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason_phrase(response.status)
    );
    for (name, value) in &response.headers {
        // A header value must not smuggle a line break into the head.
        let clean: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        let _ = write!(bytes, "{name}: {clean}\r\n");
    }
    let _ = write!(
        bytes,
        "Content-Length: {}\r\nConnection: {}\r\n\r\n",
        response.body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    if !head_only {
        bytes.extend_from_slice(&response.body);
    }
    out.write_all(&bytes)?;
    out.flush()
}
