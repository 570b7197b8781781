//! The HTTP endpoints (kalshi-http): `GET /metrics` on `http.metrics_addr`, and `GET /health`
//! plus `POST /admin/poll-market?ticker=T` on `http.health_addr`. Both default to loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::Sender;
use kalshi_http::{Limits, Request, Response, Server, ServerHandle};
use kalshi_writer::WriterMetrics;
use subtle::ConstantTimeEq;

use crate::control::AdminRequest;
use crate::setup::StartError;
use crate::shared::Shared;

/// A spool whose oldest batch has waited this long for its commit makes `/health` report the
/// database writer as not ok (batches normally commit within milliseconds).
const SPOOL_AGE_UNHEALTHY_S: f64 = 10.0;

/// What the handlers need.
pub(crate) struct Endpoints {
    pub(crate) shared: Arc<Shared>,
    pub(crate) writer_metrics: WriterMetrics,
    pub(crate) writer_running: Arc<AtomicBool>,
    pub(crate) admin: Sender<AdminRequest>,
    pub(crate) admin_token: Option<String>,
}

fn bind(addr: &str, key: &str) -> Result<Server, StartError> {
    Server::bind(addr, Limits::default(), None)
        .map_err(|e| StartError::Config(format!("{key}: cannot listen on {addr}: {e}")))
}

/// Binds and serves both endpoints.
///
/// # Errors
/// [`StartError::Config`] naming the address key that cannot be bound.
pub(crate) fn start(endpoints: Endpoints) -> Result<(ServerHandle, ServerHandle), StartError> {
    let config = &endpoints.shared.config;
    let metrics_server = bind(&config.http.metrics_addr, "http.metrics_addr")?;
    let health_server = bind(&config.http.health_addr, "http.health_addr")?;
    let endpoints = Arc::new(endpoints);
    let for_metrics = Arc::clone(&endpoints);
    let metrics = metrics_server
        .spawn(move |request| serve_metrics(&for_metrics, request))
        .map_err(|e| StartError::Runtime(format!("metrics server: {e}")))?;
    let health = health_server
        .spawn(move |request| serve_health(&endpoints, request))
        .map_err(|e| StartError::Runtime(format!("health server: {e}")))?;
    log::info!(
        "metrics on http://{}/metrics, health on http://{}/health",
        metrics.local_addr(),
        health.local_addr()
    );
    Ok((metrics, health))
}

fn serve_metrics(endpoints: &Endpoints, request: &Request) -> Response {
    if request.path != "/metrics" {
        return Response::not_found(&request.path);
    }
    if request.method != "GET" && request.method != "HEAD" {
        return Response::method_not_allowed(&request.method, &["GET"]);
    }
    let shared = &endpoints.shared;
    shared
        .metrics
        .update_disk_usage(&shared.config.spool.dir, "spool");
    if let Some(dir) = &shared.config.database.data_dir {
        shared.metrics.update_disk_usage(dir, "data");
    }
    Response::new(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        shared.metrics.render(),
    )
}

fn serve_health(endpoints: &Endpoints, request: &Request) -> Response {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET" | "HEAD", "/health") => health(endpoints),
        ("POST", "/admin/poll-market") => poll_market(endpoints, request),
        (_, "/health") => Response::method_not_allowed(&request.method, &["GET"]),
        (_, "/admin/poll-market") => Response::method_not_allowed(&request.method, &["POST"]),
        _ => Response::not_found(&request.path),
    }
}

fn health(endpoints: &Endpoints) -> Response {
    let shared = &endpoints.shared;
    let writer = &endpoints.writer_metrics;
    let spool_full = writer.spool_full.get() != 0;
    let spool_age = writer.spool_age_seconds.get();
    let writer_running = endpoints.writer_running.load(Ordering::Acquire);
    let writer_ok = writer_running && !spool_full && spool_age < SPOOL_AGE_UNHEALTHY_S;
    let connections = shared.connections.load(Ordering::Relaxed);
    let healthy = shared.connections_healthy.load(Ordering::Relaxed);
    let discovery = shared.discovery_done.load(Ordering::Acquire);
    let connections_ok = connections > 0 && healthy == connections;
    let ok = writer_ok && connections_ok && discovery && !shared.stopping();
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unhealthy" },
        "gatherer_id": shared.config.database.gatherer_id,
        "db_writer_ok": writer_ok,
        "writer_running": writer_running,
        "spool_full": spool_full,
        "spool_age_seconds": spool_age,
        "connections": connections,
        "connections_healthy": healthy,
        "ws_connected": shared.metrics.ws_connected.get(),
        "discovery_done": discovery,
        "markets": shared.metrics.markets.get(),
        "stopping": shared.stopping(),
    });
    Response::json(
        if ok { 200 } else { 503 },
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

fn json_error(status: u16, message: &str) -> Response {
    Response::json(
        status,
        serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default(),
    )
}

/// Longest ticker accepted (the longest Kalshi ticker seen is 47 bytes).
const TICKER_BYTES_MAX: usize = 64;

/// A ticker is ASCII letters, digits, `-`, `.` and `_` (`protocol.md` §5: real tickers contain
/// `.`), at most [`TICKER_BYTES_MAX`] bytes, and not `.`/`..`-led: it becomes a path segment of
/// the exchange's REST URL, so anything else (`/`, `..`, quotes, spaces) is refused before any
/// request is made. The message does not echo the value (it may be hostile).
fn check_ticker(ticker: &str) -> Result<(), String> {
    if ticker.is_empty() || ticker.len() > TICKER_BYTES_MAX {
        return Err(format!(
            "ticker must be 1 to {TICKER_BYTES_MAX} bytes long (got {})",
            ticker.len()
        ));
    }
    if ticker.starts_with('.')
        || !ticker
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(
            "ticker may hold only ASCII letters, digits, '-', '.' and '_', and may not start with '.'"
                .to_owned(),
        );
    }
    Ok(())
}

fn poll_market(endpoints: &Endpoints, request: &Request) -> Response {
    let Some(expected) = &endpoints.admin_token else {
        return json_error(
            403,
            "the admin endpoint is disabled (no http.admin_token_file or admin token variable)",
        );
    };
    let given = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return json_error(401, "missing or wrong bearer token")
            .with_header("WWW-Authenticate", "Bearer realm=\"kalshi-gatherer\"");
    }
    let Some(ticker) = request.query_param("ticker") else {
        return json_error(400, "query parameter ticker is required");
    };
    if let Err(problem) = check_ticker(&ticker) {
        return json_error(400, &problem);
    }
    let (reply, answer) = crossbeam_channel::bounded(1);
    if endpoints
        .admin
        .send_timeout(AdminRequest { ticker, reply }, Duration::from_secs(5))
        .is_err()
    {
        return json_error(503, "the control plane is busy");
    }
    let wait = Duration::from_millis(endpoints.shared.config.limits.rest_timeout_ms)
        .saturating_mul(3)
        .saturating_add(Duration::from_secs(5));
    match answer.recv_timeout(wait) {
        Ok(Ok(json)) => Response::json(200, json),
        Ok(Err((status, message))) => json_error(status, &message),
        Err(_) => json_error(504, "the REST snapshot did not complete in time"),
    }
}
