//! Reading requests: a bounded head parsed by `httparse`, then a `Content-Length` body.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::Instant;

use crate::response::Response;
use crate::server::Limits;

/// Most headers one request may carry.
const HEADERS_MAX: usize = 64;

/// One HTTP request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Method, as sent (`GET`, `POST`, ...).
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// The path: the target up to the first `?`.
    pub path: String,
    /// The raw query string after the first `?` (empty when absent).
    pub query: String,
    /// Headers in order, names as sent; non-UTF-8 bytes in values are replaced.
    pub headers: Vec<(String, String)>,
    /// The body (empty without `Content-Length`).
    pub body: Vec<u8>,
    /// HTTP minor version (0 for HTTP/1.0, 1 for HTTP/1.1).
    pub version_minor: u8,
    /// The peer's address, when known.
    pub peer: Option<SocketAddr>,
}

impl Request {
    /// The first header with this name (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a header's comma-separated value list contains `token` (case-insensitive).
    #[must_use]
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The query parameters, percent-decoded (`+` is a space), in order.
    #[must_use]
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (percent_decode(k), percent_decode(v)),
                None => (percent_decode(p), String::new()),
            })
            .collect()
    }

    /// The first query parameter with this name, percent-decoded.
    #[must_use]
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Whether this is a WebSocket upgrade request (`GET` with `Connection: upgrade` and
    /// `Upgrade: websocket`).
    #[must_use]
    pub fn is_websocket_upgrade(&self) -> bool {
        self.method == "GET"
            && self.header_has_token("connection", "upgrade")
            && self.header_has_token("upgrade", "websocket")
    }

    /// Whether the connection should be closed after the response (HTTP/1.0 without
    /// keep-alive, or `Connection: close`).
    #[must_use]
    pub fn wants_close(&self) -> bool {
        if self.header_has_token("connection", "close") {
            return true;
        }
        self.version_minor == 0 && !self.header_has_token("connection", "keep-alive")
    }
}

/// Percent-decodes a query component (`+` is a space; invalid UTF-8 is replaced).
#[must_use]
pub fn percent_decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// Why no request could be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The peer closed the connection cleanly between requests.
    #[error("connection closed")]
    Closed,
    /// The read timed out (idle between requests, or a slow request).
    #[error("read timed out")]
    Timeout,
    /// A socket error.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The head is not valid HTTP/1.x.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The head exceeds [`Limits::head_bytes_max`] or has too many headers.
    #[error("request head too large: {0}")]
    HeadTooLarge(String),
    /// The request did not arrive within [`Limits::request_timeout`] of its first byte.
    #[error("request not received within {0:?} of its first byte")]
    TooSlow(std::time::Duration),
    /// The body exceeds [`Limits::body_bytes_max`].
    #[error("request body of {length} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// Declared `Content-Length`.
        length: u64,
        /// The limit.
        limit: usize,
    },
}

impl HttpError {
    /// The response to send before closing, if the peer should get one (none for a closed
    /// connection, a timeout or a socket error).
    #[must_use]
    pub fn response(&self) -> Option<Response> {
        let status = match self {
            HttpError::Closed | HttpError::Timeout | HttpError::Io(_) => return None,
            HttpError::Malformed(_) => 400,
            HttpError::HeadTooLarge(_) => 431,
            HttpError::TooSlow(_) => 408,
            HttpError::BodyTooLarge { .. } => 413,
        };
        Some(Response::text(status, &format!("{self}\n")))
    }
}

/// Reads requests from one connection, keeping bytes read past a request for the next one.
#[derive(Debug)]
pub struct RequestReader {
    buf: Vec<u8>,
    limits: Limits,
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl RequestReader {
    /// A reader with these limits.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            buf: Vec::with_capacity(4096),
            limits,
        }
    }

    /// Bytes read past the last request (e.g. the first frames after an upgrade request),
    /// removed from the reader.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.buf)
    }

    /// Reads one request.
    ///
    /// # Errors
    /// [`HttpError::Closed`] on a clean end of stream before any byte of a request;
    /// [`HttpError::Timeout`] when the socket's read timeout expires; [`HttpError::Malformed`],
    /// [`HttpError::HeadTooLarge`], [`HttpError::BodyTooLarge`] for bad requests (send
    /// [`HttpError::response`], then close); [`HttpError::Io`] for socket errors.
    pub fn read_request<S: Read>(
        &mut self,
        stream: &mut S,
        peer: Option<SocketAddr>,
    ) -> Result<Request, HttpError> {
        let head_max = self.limits.head_bytes_max;
        let mut chunk = [0_u8; 4096];
        // The request's clock starts with its first byte (bytes already buffered belong to it).
        let mut started = (!self.buf.is_empty()).then(Instant::now);
        loop {
            if !self.buf.is_empty()
                && let Some(parsed) = self.parse_head(peer)?
            {
                return self.read_body(stream, parsed, started.unwrap_or_else(Instant::now));
            }
            if let Some(t) = started
                && t.elapsed() > self.limits.request_timeout
            {
                return Err(HttpError::TooSlow(self.limits.request_timeout));
            }
            if self.buf.len() >= head_max {
                return Err(HttpError::HeadTooLarge(format!(
                    "no end of head within {head_max} bytes"
                )));
            }
            let want = chunk.len().min(head_max - self.buf.len());
            match stream.read(&mut chunk[..want]) {
                Ok(0) if self.buf.is_empty() => return Err(HttpError::Closed),
                Ok(0) => {
                    return Err(HttpError::Malformed(
                        "connection closed in the middle of the request head".into(),
                    ));
                }
                Ok(n) => {
                    started.get_or_insert_with(Instant::now);
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(HttpError::Timeout),
                Err(e) => return Err(HttpError::Io(e)),
            }
        }
    }

    /// Parses the buffered head; `None` when incomplete. On success the head's bytes are
    /// removed from the buffer and the body length is returned with the request.
    fn parse_head(
        &mut self,
        peer: Option<SocketAddr>,
    ) -> Result<Option<(Request, u64)>, HttpError> {
        let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
        let mut parsed = httparse::Request::new(&mut headers);
        let head_len = match parsed.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HttpError::HeadTooLarge(format!(
                    "more than {HEADERS_MAX} headers"
                )));
            }
            Err(e) => return Err(HttpError::Malformed(e.to_string())),
        };
        let (Some(method), Some(target), Some(version)) =
            (parsed.method, parsed.path, parsed.version)
        else {
            return Err(HttpError::Malformed("incomplete request line".into()));
        };
        let mut request = Request {
            method: method.to_owned(),
            target: target.to_owned(),
            version_minor: version,
            peer,
            ..Request::default()
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        request.path = path.to_owned();
        request.query = query.to_owned();
        let mut length: Option<u64> = None;
        for header in parsed.headers.iter() {
            let value = String::from_utf8_lossy(header.value).into_owned();
            if header.name.eq_ignore_ascii_case("content-length") {
                let parsed: u64 = value.trim().parse().map_err(|_| {
                    HttpError::Malformed(format!("invalid Content-Length {value:?}"))
                })?;
                if length.is_some_and(|l| l != parsed) {
                    return Err(HttpError::Malformed(
                        "conflicting Content-Length headers".into(),
                    ));
                }
                length = Some(parsed);
            }
            if header.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(HttpError::Malformed(format!(
                    "Transfer-Encoding {value:?} is not supported; send Content-Length"
                )));
            }
            request.headers.push((header.name.to_owned(), value));
        }
        self.buf.drain(..head_len);
        Ok(Some((request, length.unwrap_or(0))))
    }

    fn read_body<S: Read>(
        &mut self,
        stream: &mut S,
        (mut request, length): (Request, u64),
        started: Instant,
    ) -> Result<Request, HttpError> {
        let limit = self.limits.body_bytes_max;
        if length > limit as u64 {
            return Err(HttpError::BodyTooLarge { length, limit });
        }
        let length = length as usize;
        let mut chunk = [0_u8; 4096];
        while self.buf.len() < length {
            if started.elapsed() > self.limits.request_timeout {
                return Err(HttpError::TooSlow(self.limits.request_timeout));
            }
            let want = chunk.len().min(length - self.buf.len());
            match stream.read(&mut chunk[..want]) {
                Ok(0) => {
                    return Err(HttpError::Malformed(format!(
                        "connection closed after {} of {length} body bytes",
                        self.buf.len()
                    )));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(HttpError::Timeout),
                Err(e) => return Err(HttpError::Io(e)),
            }
        }
        request.body = self.buf.drain(..length).collect();
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Request, HttpError> {
        RequestReader::new(Limits::default()).read_request(&mut &bytes[..], None)
    }

    // A complete request with query and body is split into its parts.
    #[test]
    fn parses_parts() {
        let r =
            read(b"POST /a/b?x=1&y=h%20i+j HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
                .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/a/b");
        assert_eq!(r.query, "x=1&y=h%20i+j");
        assert_eq!(r.query_param("y").as_deref(), Some("h i j"));
        assert_eq!(r.header("HOST"), Some("h"));
        assert_eq!(r.body, b"abc");
        assert!(!r.wants_close());
    }

    // Two pipelined requests come out one after the other.
    #[test]
    fn pipelined() {
        let bytes = b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.0\r\n\r\n";
        let mut reader = RequestReader::new(Limits::default());
        let mut input = &bytes[..];
        assert_eq!(reader.read_request(&mut input, None).unwrap().path, "/1");
        let second = reader.read_request(&mut input, None).unwrap();
        assert_eq!(second.path, "/2");
        assert!(second.wants_close());
        assert!(matches!(
            reader.read_request(&mut input, None),
            Err(HttpError::Closed)
        ));
    }

    // Each kind of bad input maps to its status.
    #[test]
    fn bad_inputs() {
        let status = |bytes: &[u8]| read(bytes).unwrap_err().response().map(|r| r.status);
        assert_eq!(status(b"\x00\x01garbage\r\n\r\n"), Some(400));
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            Some(413)
        );
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(20_000, b'a');
        assert_eq!(status(&long), Some(431));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..70 {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&many), Some(431));
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost"), Some(400));
        assert!(matches!(read(b""), Err(HttpError::Closed)));
    }

    // Upgrade detection follows the Connection/Upgrade tokens.
    #[test]
    fn upgrade() {
        let r = read(
            b"GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .unwrap();
        assert!(r.is_websocket_upgrade());
        let r = read(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").unwrap();
        assert!(!r.is_websocket_upgrade());
    }
}
