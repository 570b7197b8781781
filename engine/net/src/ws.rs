//! The WebSocket client: glommio TCP, rustls, tungstenite.
//!
//! One [`WsConnection`] is one Kalshi WebSocket connection, owned by one task on one shard
//! core. It is `!Send` on purpose: it lives and dies on the core that opened it.
//!
//! # Timeouts and liveness
//! Connecting, the TLS handshake and the WebSocket upgrade each run under
//! [`WsConfig::connect_timeout`]; every send runs under [`WsConfig::write_timeout`]. Liveness is
//! judged by *any* frame received (protocol.md §5.2: busy connections may see no pings), not by
//! ping cadence: [`WsConnection::recv`] returns [`WsEvent::Silent`] when no frame at all has
//! arrived for [`WsConfig::liveness_timeout`]. The liveness check uses one timer per window, not
//! one per frame, so the per-frame path arms nothing.
//!
//! # Pings
//! tungstenite queues the pong for a server ping itself and writes it on the next read or write
//! of the connection, which is the next [`WsConnection::recv`]; the caller does nothing.
//!
//! # Cancel safety
//! [`WsConnection::recv`] is cancel safe: if its future is dropped, no frame is lost (the frame
//! stays in tungstenite's buffer). [`WsConnection::send_text`] is not: a dropped send may have
//! written part of a frame, after which the connection must be closed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use futures_lite::{AsyncRead, AsyncWrite};
use futures_util::StreamExt;
use glommio::net::TcpStream;
use glommio::timer::Timer;
use rustls_pki_types::ServerName;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::http::header::HeaderName;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, Utf8Bytes};

/// A parsed `ws://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `true` for `wss://` (TLS).
    pub secure: bool,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// TCP port (default 443 for wss, 80 for ws).
    pub port: u16,
    /// Path, starting with `/` (for Kalshi `/trade-api/ws/v2`); this is what gets signed.
    pub path: String,
}

impl WsUrl {
    /// Parses `ws://host[:port]/path` or `wss://host[:port]/path`.
    ///
    /// # Errors
    /// [`ConnectError::BadUrl`] naming what is wrong (scheme, host, port, query strings are not
    /// allowed because Kalshi's WebSocket takes none).
    pub fn parse(url: &str) -> Result<WsUrl, ConnectError> {
        let bad = |why: &str| ConnectError::BadUrl {
            url: url.to_owned(),
            reason: why.to_owned(),
        };
        let (secure, rest) = if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (false, rest)
        } else {
            return Err(bad("the scheme must be ws:// or wss://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if path.contains('?') || path.contains('#') {
            return Err(bad("a query string or fragment is not allowed"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host:port"))?;
        let port = match port {
            Some(p) => p,
            None if secure => 443,
            None => 80,
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        Ok(WsUrl {
            secure,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// The URL back as text.
    pub fn as_string(&self) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            format!("{scheme}://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`. `None` when the port is not a number.
pub(crate) fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        if after.is_empty() {
            return Some((host, None));
        }
        let port = after.strip_prefix(':')?.parse().ok()?;
        return Some((host, Some(port)));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

/// Connection settings.
#[derive(Clone)]
pub struct WsConfig {
    /// Bound on each of TCP connect, TLS handshake and WebSocket upgrade.
    pub connect_timeout: Duration,
    /// Bound on each send (commands, pongs, close).
    pub write_timeout: Duration,
    /// No frame at all for this long means the connection is dead.
    pub liveness_timeout: Duration,
    /// Largest accepted message (and frame); larger ones fail the connection with
    /// [`ConnectError::Protocol`].
    pub frame_bytes_max: usize,
    /// TLS settings for `wss://` URLs (required for them).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for WsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConfig")
            .field("connect_timeout", &self.connect_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("liveness_timeout", &self.liveness_timeout)
            .field("frame_bytes_max", &self.frame_bytes_max)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Why a connection could not be opened or was lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is malformed.
    #[error("WebSocket URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The handshake was answered 401: the key, the environment or the clock is wrong. Fatal.
    #[error("handshake refused with HTTP 401: {body}")]
    Auth {
        /// The response body, verbatim (lossy UTF-8), for the log.
        body: String,
    },
    /// The handshake was answered 429: too many connection attempts.
    #[error("handshake refused with HTTP 429 (rate limited): {body}")]
    RateLimited {
        /// The response body.
        body: String,
    },
    /// Another HTTP status in answer to the upgrade.
    #[error("handshake refused with HTTP {status}: {body}")]
    Http {
        /// The status code.
        status: u16,
        /// The response body.
        body: String,
    },
    /// A step did not finish within its timeout.
    #[error("timed out while {0}")]
    Timeout(&'static str),
    /// TCP-level failure (refused, reset, DNS).
    #[error("transport: {0}")]
    Transport(String),
    /// TLS failure (certificate, handshake).
    #[error("TLS: {0}")]
    Tls(String),
    /// WebSocket protocol violation, including a frame above the size limit.
    #[error("WebSocket protocol: {0}")]
    Protocol(String),
    /// The server closed the connection (close frame or EOF).
    #[error("closed by the server: {0}")]
    Closed(String),
}

impl ConnectError {
    /// `true` when retrying cannot help until an operator acts (a 401, a bad URL).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ConnectError::Auth { .. } | ConnectError::BadUrl { .. }
        )
    }

    /// Short label for metrics: `auth`, `rate_limited`, `http`, `timeout`, `transport`, `tls`,
    /// `protocol`, `closed`, `config`.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectError::BadUrl { .. } => "config",
            ConnectError::Auth { .. } => "auth",
            ConnectError::RateLimited { .. } => "rate_limited",
            ConnectError::Http { .. } => "http",
            ConnectError::Timeout(_) => "timeout",
            ConnectError::Transport(_) => "transport",
            ConnectError::Tls(_) => "tls",
            ConnectError::Protocol(_) => "protocol",
            ConnectError::Closed(_) => "closed",
        }
    }
}

/// TCP, or TLS over TCP.
enum Stream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// What [`WsConnection::recv`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent {
    /// A text frame; its bytes are in the caller's scratch buffer.
    Text,
    /// A binary frame (Kalshi sends none); its bytes are in the scratch buffer.
    Binary,
    /// A ping (answered automatically) or pong: proof of life, nothing to do.
    Control,
    /// No frame for [`WsConfig::liveness_timeout`]: the connection should be dropped.
    Silent,
}

/// Runs `fut` with a deadline. `None` on timeout.
async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        Timer::new(limit).await;
        None
    })
    .await
}

/// One open WebSocket connection.
pub struct WsConnection {
    ws: WebSocketStream<Stream>,
    write_timeout: Duration,
    liveness_timeout: Duration,
    /// Armed once per liveness window; see the module docs.
    watchdog: Timer,
    watchdog_armed_at: Instant,
    last_frame_at: Instant,
}

impl WsConnection {
    /// Connects, runs TLS for `wss://`, and performs the WebSocket upgrade with `headers`
    /// added to the request (the `KALSHI-ACCESS-*` signature headers).
    ///
    /// # Errors
    /// [`ConnectError`] classified by cause; see [`ConnectError::is_fatal`].
    pub async fn connect(
        url: &WsUrl,
        headers: &[(&str, String)],
        config: &WsConfig,
    ) -> Result<WsConnection, ConnectError> {
        let limit = config.connect_timeout;
        let addr = (url.host.as_str(), url.port);
        let tcp = within(limit, TcpStream::connect(addr))
            .await
            .ok_or(ConnectError::Timeout("connecting over TCP"))?
            .map_err(|e| ConnectError::Transport(format!("{}:{}: {e}", url.host, url.port)))?;
        // Small command frames must not wait for Nagle.
        tcp.set_nodelay(true)
            .map_err(|e| ConnectError::Transport(format!("TCP_NODELAY: {e}")))?;
        let stream = if url.secure {
            let tls = config.tls.clone().ok_or_else(|| {
                ConnectError::Tls("a wss:// URL needs a TLS configuration".to_owned())
            })?;
            let name = ServerName::try_from(url.host.clone())
                .map_err(|e| ConnectError::Tls(format!("server name {:?}: {e}", url.host)))?;
            let connector = futures_rustls::TlsConnector::from(tls);
            let tls_stream = within(limit, connector.connect(name, tcp))
                .await
                .ok_or(ConnectError::Timeout("in the TLS handshake"))?
                .map_err(|e| ConnectError::Tls(e.to_string()))?;
            Stream::Tls(Box::new(tls_stream))
        } else {
            Stream::Plain(tcp)
        };

        let mut request =
            url.as_string()
                .into_client_request()
                .map_err(|e| ConnectError::BadUrl {
                    url: url.as_string(),
                    reason: e.to_string(),
                })?;
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ConnectError::Protocol(format!("header name {name:?}: {e}")))?;
            // Values are never echoed in the error: they may be signatures.
            let value = HeaderValue::from_str(value)
                .map_err(|_| ConnectError::Protocol(format!("header {name} has a bad value")))?;
            request.headers_mut().insert(name, value);
        }
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(config.frame_bytes_max))
            .max_frame_size(Some(config.frame_bytes_max));
        let (ws, _response) = within(
            limit,
            async_tungstenite::client_async_with_config(request, stream, Some(ws_config)),
        )
        .await
        .ok_or(ConnectError::Timeout("in the WebSocket upgrade"))?
        .map_err(classify_handshake_error)?;
        let now = Instant::now();
        Ok(WsConnection {
            ws,
            write_timeout: config.write_timeout,
            liveness_timeout: config.liveness_timeout,
            watchdog: Timer::new(config.liveness_timeout),
            watchdog_armed_at: now,
            last_frame_at: now,
        })
    }

    /// Waits for the next frame and copies its payload into `scratch` (cleared first; its
    /// capacity is reused, so a warm buffer does not allocate). See the module docs for
    /// liveness and cancel safety.
    ///
    /// # Errors
    /// [`ConnectError::Closed`] on a close frame or EOF, [`ConnectError::Protocol`] on a
    /// protocol violation or an oversized frame, [`ConnectError::Transport`] on I/O errors.
    pub async fn recv(&mut self, scratch: &mut Vec<u8>) -> Result<WsEvent, ConnectError> {
        loop {
            let WsConnection { ws, watchdog, .. } = self;
            let next = futures_lite::future::or(async { Some(ws.next().await) }, async {
                watchdog.await;
                None
            })
            .await;
            let Some(next) = next else {
                // The watchdog fired: dead if nothing arrived in the window, else re-arm it for
                // what is left of the window counted from the last frame.
                let now = Instant::now();
                let quiet = now.saturating_duration_since(self.last_frame_at);
                if quiet >= self.liveness_timeout {
                    return Ok(WsEvent::Silent);
                }
                self.watchdog = Timer::new(self.liveness_timeout - quiet);
                self.watchdog_armed_at = now;
                continue;
            };
            self.last_frame_at = Instant::now();
            let message = match next {
                None => return Err(ConnectError::Closed("end of stream".to_owned())),
                Some(Err(e)) => return Err(classify_stream_error(e)),
                Some(Ok(m)) => m,
            };
            scratch.clear();
            return Ok(match message {
                Message::Text(text) => {
                    scratch.extend_from_slice(text.as_bytes());
                    WsEvent::Text
                }
                Message::Binary(bytes) => {
                    scratch.extend_from_slice(&bytes);
                    WsEvent::Binary
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => WsEvent::Control,
                Message::Close(frame) => {
                    let why = match frame {
                        Some(f) => format!("close frame {} {:?}", u16::from(f.code), f.reason),
                        None => "close frame without a code".to_owned(),
                    };
                    return Err(ConnectError::Closed(why));
                }
            });
        }
    }

    /// Time of the last frame received (any kind).
    pub fn last_frame_at(&self) -> Instant {
        self.last_frame_at
    }

    /// Sends one text frame (a command) and flushes it.
    ///
    /// # Errors
    /// [`ConnectError::Timeout`] after [`WsConfig::write_timeout`], or the transport error.
    pub async fn send_text(&mut self, text: &str) -> Result<(), ConnectError> {
        let message = Message::Text(Utf8Bytes::from(text));
        within(self.write_timeout, self.ws.send(message))
            .await
            .ok_or(ConnectError::Timeout("sending a command"))?
            .map_err(classify_stream_error)
    }

    /// Sends a close frame and waits (bounded) for the close to be written.
    pub async fn close(mut self) {
        let _ = within(self.write_timeout, self.ws.close(None)).await;
    }
}

fn lossy(body: Option<&Vec<u8>>) -> String {
    match body {
        Some(b) => {
            let cut = &b[..b.len().min(512)];
            String::from_utf8_lossy(cut).into_owned()
        }
        None => String::new(),
    }
}

fn classify_handshake_error(error: tungstenite::Error) -> ConnectError {
    match error {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let body = lossy(response.body().as_ref());
            match status {
                401 => ConnectError::Auth { body },
                429 => ConnectError::RateLimited { body },
                _ => ConnectError::Http { status, body },
            }
        }
        other => classify_stream_error(other),
    }
}

fn classify_stream_error(error: tungstenite::Error) -> ConnectError {
    use tungstenite::Error as E;
    match error {
        E::ConnectionClosed | E::AlreadyClosed => ConnectError::Closed("connection closed".into()),
        E::Io(e) => ConnectError::Transport(e.to_string()),
        E::Tls(e) => ConnectError::Tls(e.to_string()),
        E::Capacity(e) => ConnectError::Protocol(format!("size limit: {e}")),
        E::Http(r) => ConnectError::Http {
            status: r.status().as_u16(),
            body: lossy(r.body().as_ref()),
        },
        other => ConnectError::Protocol(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = WsUrl::parse("wss://external-api-ws.kalshi.com/trade-api/ws/v2").unwrap();
        assert!(u.secure);
        assert_eq!(u.host, "external-api-ws.kalshi.com");
        assert_eq!(u.port, 443);
        assert_eq!(u.path, "/trade-api/ws/v2");
        let u = WsUrl::parse("ws://127.0.0.1:4567/trade-api/ws/v2").unwrap();
        assert_eq!((u.secure, u.port), (false, 4567));
        assert_eq!(u.as_string(), "ws://127.0.0.1:4567/trade-api/ws/v2");
        let u = WsUrl::parse("ws://[::1]:9/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        assert_eq!(u.as_string(), "ws://[::1]:9/x");
        for bad in [
            "http://x/",
            "ws://:80/",
            "ws://h:notaport/",
            "ws://h/p?q=1",
            "wss://",
        ] {
            assert!(WsUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
