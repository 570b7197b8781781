//! The HTTP endpoints, served with `kalshi-http`:
//!
//! * metrics address: `GET /metrics` (Prometheus text);
//! * health address: `GET /health` (JSON; 200 healthy, 503 not; `gatherers` has one entry per
//!   gatherer, by name) and `POST /admin/recheck?from=US[&gatherer=NAME]`, which moves the
//!   named gatherer's (or every gatherer's) cursor back to `from` (µs since the epoch) so its
//!   ranges from there on are re-read and fingerprint-checked. Admin requests need
//!   `Authorization: Bearer <token>` when a token is configured, else a loopback peer.

use std::io;
use std::sync::Arc;

use kalshi_http::{Limits, Request, Response, Server, ServerHandle};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::config::HttpConfig;
use crate::service::{Shared, unix_now_us};

/// The running servers; dropping them stops accepting.
#[derive(Debug)]
pub struct HttpServers {
    /// `/metrics`.
    pub metrics: ServerHandle,
    /// `/health`, `/admin/*`.
    pub health: ServerHandle,
}

/// Start both servers.
///
/// # Errors
///
/// Binding either address.
pub fn serve(cfg: &HttpConfig, registry: Registry, shared: Shared) -> io::Result<HttpServers> {
    let registry = Arc::new(registry);
    let lag_max = cfg.health_lag_max.as_secs_f64();
    let scrape_shared = shared.clone();
    let metrics = Server::bind(&cfg.metrics_listen, Limits::default(), None)?.spawn(
        move |req: &Request| {
            if req.path != "/metrics" {
                return Response::not_found(&req.path);
            }
            if req.method != "GET" && req.method != "HEAD" {
                return Response::method_not_allowed(&req.method, &["GET"]);
            }
            // The lag as of this scrape, not as of the last finished job.
            let _ = scrape_shared.health_at(unix_now_us(), lag_max);
            let mut buf = Vec::new();
            match TextEncoder::new().encode(&registry.gather(), &mut buf) {
                Ok(()) => Response::new(200, "text/plain; version=0.0.4", buf),
                Err(e) => Response::text(500, &format!("encoding metrics failed: {e}\n")),
            }
        },
    )?;
    let token = cfg.admin_token.clone();
    let health = Server::bind(&cfg.health_listen, Limits::default(), None)?.spawn(
        move |req: &Request| match req.path.as_str() {
            "/health" => {
                if req.method != "GET" && req.method != "HEAD" {
                    return Response::method_not_allowed(&req.method, &["GET"]);
                }
                let h = shared.health_at(unix_now_us(), lag_max);
                let body = serde_json::to_vec(&h).unwrap_or_default();
                Response::json(if h.healthy { 200 } else { 503 }, body)
            }
            "/admin/recheck" => admin_recheck(req, token.as_deref(), &shared),
            other => Response::not_found(other),
        },
    )?;
    Ok(HttpServers { metrics, health })
}

fn admin_recheck(req: &Request, token: Option<&str>, shared: &Shared) -> Response {
    if req.method != "POST" {
        return Response::method_not_allowed(&req.method, &["POST"]);
    }
    let allowed = match token {
        Some(t) => req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|v| v.trim() == t),
        None => req.peer.is_some_and(|p| p.ip().is_loopback()),
    };
    if !allowed {
        return Response::text(
            403,
            "admin endpoints need the admin token or a loopback peer\n",
        );
    }
    let Some(from) = req.query_param("from").and_then(|v| v.parse::<i64>().ok()) else {
        return Response::text(400, "from=<µs since the epoch> is required\n");
    };
    let gatherer = req.query_param("gatherer");
    shared.rechecks.lock().push((gatherer.clone(), from));
    Response::json(
        202,
        serde_json::json!({ "recheck_from_ts": from, "gatherer": gatherer }).to_string(),
    )
}
