//! # kalshi-http: a small blocking HTTP/1.1 server
//!
//! The platform's control-plane endpoints (`/metrics`, `/health`, `/admin/...`) and the exchange
//! simulator's REST API are served by this crate. It is deliberately small: one thread per
//! connection up to a cap, blocking sockets with timeouts, `httparse` for the request head, and
//! optional TLS through rustls.
//!
//! ## Layout
//! * [`Request`], [`RequestReader`]: read one request at a time from any [`std::io::Read`], with
//!   a bounded head ([`Limits::head_bytes_max`]) and body ([`Limits::body_bytes_max`]); bytes
//!   read past the end of a request stay buffered for the next one (pipelining, or the first
//!   WebSocket frames after an upgrade request: [`RequestReader::take_buffered`]).
//! * [`Response`], [`write_response`]: status, headers, body; `Content-Length` always set.
//! * [`Stream`]: a plain or TLS server stream; [`tls_config_from_pem`] builds the rustls config.
//! * [`Server`]: the accept loop. [`Server::spawn`] serves a [`Handler`]
//!   (`Fn(&Request) -> Response`); [`Server::spawn_connections`] hands each accepted stream to
//!   a connection function instead (the simulator uses it to upgrade some requests to
//!   WebSockets).
//!
//! ## Behaviour on bad input
//! Nothing here panics on any bytes. A malformed head answers 400, a head over the limit 431,
//! a body over the limit 413, a chunked body 400 (only `Content-Length` bodies are accepted),
//! each with a plain-text body naming the problem, and the connection is closed afterwards. A
//! handler decides 404 and 405 itself ([`Response::not_found`],
//! [`Response::method_not_allowed`]).

mod request;
mod response;
mod server;
mod stream;

pub use request::{HttpError, Request, RequestReader, percent_decode};
pub use response::{Response, reason_phrase, write_response};
pub use server::{ConnectionFn, Handler, Limits, Server, ServerHandle, serve_http};
pub use stream::{Stream, TlsError, tls_config_from_pem};
