//! # kalshi-sim-core: the sans-IO core of the Kalshi exchange simulator
//!
//! This crate is the exchange the platform's tests, benchmarks and demo talk to, minus the
//! sockets. It has no threads, reads no clock and does no I/O: time is the `now_us` argument of
//! every call (µs since the Unix epoch), and all randomness comes from one ChaCha8 generator
//! seeded at construction, so the same seed and [`ExchangeConfig`] give byte-identical events,
//! frames and truth logs. The network server (WebSocket, HTTP, TLS, auth, heartbeats) is built
//! on top of this API.
//!
//! ## Layout
//! * [`exchange`]: the market model. [`Exchange::new`]`(config, seed)` builds series; the first
//!   [`Exchange::step`] lists the initial events and markets; every later step spreads seeded
//!   order flow (adds, cancels, takes) over the elapsed time, then applies lifecycle transitions
//!   (open, close, determine, settle, pause/reactivate, close-date moves) and new listings, and
//!   returns the [`ExchangeEvent`]s in exchange order. Tickers look like
//!   `KXSIMBTCD-26NOV3017-T95049.99` (ASCII, well under 47 bytes). Each series has one of the
//!   three documented price level structures; flow only rests prices on the structure's grid
//!   and never crosses the book.
//! * [`book`]: aggregated YES/NO bid books keyed by exact micro-dollar price.
//! * [`price`]: `price_level_structure`, `price_ranges` and tick arithmetic.
//! * [`session`]: one WebSocket connection's protocol state machine.
//! * [`rest`]: REST response bodies ([`rest::route`]; [`rest::route_load`] in load mode;
//!   [`rest::too_many_requests`] and [`rest::unauthorized`] for the 429 and 401 bodies).
//! * [`load`]: load mode, a cheap deterministic frame generator for benchmarks
//!   ([`LoadGen`], [`LoadRoute`], [`Pacer`]); see its module docs.
//! * [`clock`]: [`VirtualClock`], the fixed step grid that keeps the truth log deterministic.
//! * [`rate`]: [`RateLimiter`], a token bucket (REST 429s, forced-429 fault).
//! * [`heartbeat`]: [`Heartbeat`], ping cadence and the missed-pong close decision.
//!
//! ## Model facts
//! * A trade by a YES taker lifts the best NO bid at YES price `1 − p`, a NO taker hits the best
//!   YES bid at `p`; each trade is preceded by the negative `orderbook_delta` on the hit level,
//!   `yes_price + no_price = 1`, and `taker_side = taker_outcome_side`, `taker_book_side` = `bid`
//!   for YES and `ask` for NO.
//! * A `ticker` event follows any change of its values, which are derived from the book as in
//!   `protocol.md` §4 (empty NO side → ask 1.0000 size 0; empty YES side → bid 0 size 0).
//! * Lifecycle: `created` (with `additional_metadata`, preceded by `event_lifecycle` for the new
//!   event), `deactivated` / `activated`, `close_date_updated`, `determined` (result and
//!   settlement value), `settled`. As on Kalshi, opening and closing by time emit no event.
//! * Every event carries `exchange_ts` (non-decreasing) and, for market events, `market_seq`:
//!   the market's count of applied deltas (a delta carries its own number, starting at 1; other
//!   market events carry the count at the time they happened).
//!
//! ## Truth log format
//! [`Exchange::truth_log`] holds one line per exchange event, in exchange order:
//!
//! ```text
//! {"market_seq":12,"record":{"type":"orderbook_delta","sid":null,"seq":null,"ticker":"…",…}}
//! {"market_seq":null,"record":{"type":"event_lifecycle",…}}
//! ```
//!
//! `record` is exactly kalshi-wire's canonical record JSON (`write_canonical`), with no `sid`
//! or `seq` (null) and NO prices in NO-leg price (`use_yes_price: false`). `market_seq` is null
//! for event-level records. [`Exchange::write_final_books`] writes the final books in the same
//! wrapper around canonical `orderbook_snapshot` records, and [`Exchange::final_books`] returns
//! them as values. Books start empty when a market is listed, so replaying the log's deltas
//! from empty books reproduces every final book.
//!
//! ## How a server drives it
//! 1. Own one [`Exchange`] and one [`Session`] per WebSocket connection.
//! 2. On a timer, `let events = exchange.advance(&mut clock, now_us, max_ticks)` (a
//!    [`VirtualClock`] with a fixed tick, e.g. 10 ms: **never step at raw wall-clock times**,
//!    or the truth log depends on scheduling jitter; see [`clock`]), then for every session
//!    `session.deliver(&exchange, &events, &mut frames)` and send the frames. Persist
//!    `exchange.take_truth_log()` as it grows.
//! 3. For each client text frame, `session.handle_command(now_us, text, &exchange)` and send the
//!    returned frames, in order. Deliver all events of past steps before handling a command:
//!    snapshots are taken from the exchange's current books, and deltas delivered later must
//!    follow them.
//! 4. REST: [`rest::route`]`(&exchange, method, path_and_query)` gives status and body.
//! 5. Faults: [`Session::fault_skip_seq`], [`Session::fault_duplicate_next`],
//!    [`Session::fault_buffer_overflow`] (error 25) and [`Session::fault_channel_error`]
//!    (error 10; both drop the subscription), [`Session::fault_malformed_frame`],
//!    [`RateLimiter::set_forced_reject`] (forced 429s), and [`Exchange::set_paused`] (no
//!    events; `GET /exchange/status` reports inactive; the server closes connections). Close,
//!    stall, reset without close frame, 502 on reconnect, auth rejection and REST delay are
//!    socket-level and belong to the server.
//! 6. Keep-alive: one [`Heartbeat`] per connection (`Ping("heartbeat")` every 10 s, close
//!    after N missed pongs).
//! 7. Load mode: commands through [`Session::handle_command_on`] with the [`LoadGen`] as
//!    [`MarketSource`]; events from [`LoadGen::next_event`] paced by [`Pacer`], rendered per
//!    connection by [`LoadRoute::render`]; REST by [`rest::route_load`].
//!
//! ## Session decisions
//! * `get_snapshot` replies carry the command `id` at top level and consume seq on the sid.
//! * A subscription-scoped error (25) carries `sid` and consumes a seq; command errors carry only
//!   the command `id`.
//! * `list_subscriptions` replies and `subscribed` frames carry no seq; `ticker` frames neither.
//! * The command token bucket ([`SessionConfig`]) is charged for every parsed command;
//!   unparseable text answers error 1 without being charged.
//! * Every `ok` consumes a seq on its sid, the ticker channel's included (Kalshi's behaviour
//!   there is unconfirmed).
//! * Error 6 (retired) and 9 (auth required: the handshake is authenticated) are never sent;
//!   their constants exist for completeness. The simulator lists no MVE markets, so
//!   `multivariate_market_lifecycle` is accepted and stays silent.

#![recursion_limit = "256"]

pub mod book;
pub mod clock;
pub mod exchange;
pub mod heartbeat;
pub mod load;
pub mod price;
pub mod rate;
pub mod rest;
pub mod session;

pub use book::{Book, TopOfBook};
pub use clock::VirtualClock;
pub use exchange::{
    Event, EventPayload, Exchange, ExchangeConfig, ExchangeEvent, FinalBook, LifecycleChange,
    Market, MarketStatus, Series, TickerState, TradeRow,
};
pub use heartbeat::{HEARTBEAT_PAYLOAD, Heartbeat, HeartbeatAction};
pub use load::{
    LoadConfig, LoadError, LoadEvent, LoadEventKind, LoadGen, LoadMix, LoadRoute, Pacer, Rendered,
    TruthDigest,
};
pub use price::{ONE_DOLLAR_E6, PriceLevelStructure};
pub use rate::RateLimiter;
pub use rest::{AuthFailure, RestResponse, route, route_load, too_many_requests, unauthorized};
pub use session::{
    Channel, FrameKind, MarketSource, Outbound, ProtocolError, Session, SessionConfig,
    SubscriptionView,
};
