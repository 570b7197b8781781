//! # kalshi-net: the gatherer's network adapters
//!
//! The engine's cores are sans-IO (`kalshi-wire`, `kalshi-gather`); this crate is where bytes
//! meet sockets. It has two clients:
//!
//! * [`ws`]: the WebSocket client that runs inside a pinned glommio executor (one per shard
//!   core). TCP comes from glommio (io_uring), TLS from rustls through `futures-rustls`, and the
//!   WebSocket protocol from tungstenite through `async-tungstenite`. Every await is bounded by a
//!   timeout chosen by the caller, the frame size is capped, and a refused handshake is
//!   classified (401 auth, 429 rate limit, other HTTP status, transport, TLS, timeout) so that the
//!   connection manager can decide between retrying and stopping.
//! * [`rest`]: the blocking REST client used by the control plane (market discovery, the
//!   snapshot poller, trade backfill). It is `ureq` over rustls, with a response size cap and a
//!   global timeout, and it returns 4xx/5xx bodies instead of hiding them, so that a 429 or a
//!   401 can be reported verbatim.
//!
//! Request signing is not done here: callers pass the three `KALSHI-ACCESS-*` headers, computed
//! with `kalshi-auth`, so that this crate holds no secrets.
//!
//! [`tls`] builds the rustls client configuration shared by both: the Mozilla roots from
//! `webpki-roots` for the live exchange, plus optional extra PEM roots (the simulator's test
//! certificate).

pub mod rest;
pub mod tls;
pub mod ws;

pub use rest::{RestClient, RestClientConfig, RestError, RestResponse};
pub use tls::{TlsError, client_config};
pub use ws::{ConnectError, WsConfig, WsConnection, WsEvent, WsUrl};
