//! The control endpoint: faults and inspection on demand, over plain HTTP on its own (loopback)
//! port. Every answer is JSON.
//!
//! | request | effect |
//! |---|---|
//! | `GET /health` | `{"ok":true}` |
//! | `GET /stats` | connections (id, peer, subscriptions, frames sent), counters, switches |
//! | `POST /close?conn=ID\|all[&reset=true]` | close with a close frame, or drop without one |
//! | `POST /skip-seq?conn=ID\|all&sid=S` | the next sequenced frame of `sid` is dropped (seq gap) |
//! | `POST /duplicate?conn=ID\|all&sid=S` | the next frame of `sid` is sent twice |
//! | `POST /malformed?conn=ID\|all[&kind=K]` | a malformed text frame; `kind` = `truncated` (JSON cut short, the default), `invalid-utf8`, `nested[&depth=N]` (arrays nested N deep, default 100000), `oversized[&bytes=N]` (a frame of N bytes, default 8 MiB) |
//! | `POST /stall?conn=ID\|all&ms=N` | stop writing (frames and pings) for N ms |
//! | `POST /overflow?conn=ID\|all&sid=S` | error 25 on `sid`, which is dropped |
//! | `POST /channel-error?conn=ID\|all&sid=S` | error 10 on `sid`, which is dropped |
//! | `POST /pause`, `POST /resume` | pause the exchange (WebSockets closed, handshakes 503, `exchange_active:false`), resume |
//! | `POST /halt` | stop generating events for good (the clock stops, load mode stops generating; connections, commands and REST go on): ends a run so clients can catch up to a final truth log |
//! | `POST /reject-auth?on=true\|false` | every handshake answers 401 (bad signature) |
//! | `POST /force-429?count=N` | the next N REST requests answer 429 (-1 = until `count=0`) |
//! | `POST /ws-429?on=true\|false` | every WebSocket handshake answers 429 |
//! | `GET /handshakes` | the latest WebSocket handshake attempts: `[{unix_us, peer, key_id, status}]` |
//! | `POST /add-key?id=ID&path=PEM` | register (or replace) the public key of API key `ID` |
//! | `POST /revoke-key?id=ID` | revoke API key `ID`: its requests answer 401 from now on |
//! | `POST /rest-delay?ms=N` | delay every REST response by N ms (0 = off) |
//! | `POST /dump-books` | write the final books file now; the body is the books (JSON lines) |
//!
//! `conn` also accepts `peer=IP:PORT` (the client's address as the server sees it).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::Sender;
use kalshi_http::{Request, Response};
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::engine::{ControlCmd, EngineMsg, MalformedKind, Shared, Target};

fn bad(message: &str) -> Response {
    Response::json(
        400,
        serde_json::to_vec(&json!({"error": message})).unwrap_or_default(),
    )
}

fn ok_json(value: &Value) -> Response {
    Response::json(200, serde_json::to_vec(value).unwrap_or_default())
}

fn ask(engine: &Sender<EngineMsg>, cmd: ControlCmd) -> Response {
    let (reply, answer) = crossbeam_channel::bounded(1);
    if engine
        .send_timeout(EngineMsg::Control { cmd, reply }, Duration::from_secs(10))
        .is_err()
    {
        return Response::json(503, br#"{"error":"exchange thread unavailable"}"#.to_vec());
    }
    match answer.recv_timeout(Duration::from_secs(30)) {
        Ok((status, body)) => Response::json(status, body),
        Err(_) => Response::json(
            503,
            br#"{"error":"exchange thread did not answer"}"#.to_vec(),
        ),
    }
}

fn number<T: std::str::FromStr>(request: &Request, key: &str) -> Result<T, Response> {
    let Some(text) = request.query_param(key) else {
        return Err(bad(&format!("query parameter {key} is required")));
    };
    text.parse().map_err(|_| {
        bad(&format!(
            "query parameter {key}={text:?} is not a valid number"
        ))
    })
}

/// Resolves `conn=ID|all` or `peer=IP:PORT` (peers are resolved through `/stats`).
fn target(engine: &Sender<EngineMsg>, request: &Request) -> Result<Target, Response> {
    if let Some(peer) = request.query_param("peer") {
        let stats = ask(engine, ControlCmd::Stats);
        let parsed: Value = serde_json::from_slice(&stats.body).unwrap_or(Value::Null);
        let id = parsed["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["peer"].as_str() == Some(peer.as_str()))
            .and_then(|c| c["id"].as_u64());
        return id
            .map(Target::Conn)
            .ok_or_else(|| bad(&format!("no connection from peer {peer}")));
    }
    match request.query_param("conn").as_deref() {
        None | Some("all") => Ok(Target::All),
        Some(text) => text.parse().map(Target::Conn).map_err(|_| {
            bad(&format!(
                "conn={text:?} is neither a connection id nor \"all\""
            ))
        }),
    }
}

fn malformed_kind(request: &Request) -> Result<MalformedKind, Response> {
    Ok(match request.query_param("kind").as_deref() {
        None | Some("truncated") => MalformedKind::Truncated,
        Some("invalid-utf8") => MalformedKind::InvalidUtf8,
        Some("nested") => MalformedKind::Nested {
            depth: if request.query_param("depth").is_some() {
                number(request, "depth")?
            } else {
                100_000
            },
        },
        Some("oversized") => MalformedKind::Oversized {
            bytes: if request.query_param("bytes").is_some() {
                number::<u32>(request, "bytes")?.min(64 << 20)
            } else {
                8 << 20
            },
        },
        Some(other) => {
            return Err(bad(&format!(
                "kind={other:?}: expected truncated, invalid-utf8, nested or oversized"
            )));
        }
    })
}

fn switch(request: &Request) -> Result<bool, Response> {
    match request.query_param("on").as_deref() {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(bad(&format!("on={other:?}: expected true or false"))),
    }
}

/// Handles one control request.
pub fn handle(
    engine: &Sender<EngineMsg>,
    shared: &Arc<Shared>,
    auth: &Auth,
    request: &Request,
) -> Response {
    let method = request.method.as_str();
    let path = request.path.as_str();
    let get = matches!(path, "/health" | "/stats" | "/handshakes");
    let known = get
        || matches!(
            path,
            "/close"
                | "/skip-seq"
                | "/duplicate"
                | "/malformed"
                | "/stall"
                | "/overflow"
                | "/channel-error"
                | "/pause"
                | "/resume"
                | "/halt"
                | "/reject-auth"
                | "/force-429"
                | "/rest-delay"
                | "/ws-429"
                | "/add-key"
                | "/revoke-key"
                | "/dump-books"
        );
    if !known {
        return Response::not_found(path);
    }
    if get && method != "GET" {
        return Response::method_not_allowed(method, &["GET"]);
    }
    if !get && method != "POST" {
        return Response::method_not_allowed(method, &["POST"]);
    }
    let result = (|| -> Result<Response, Response> {
        Ok(match path {
            "/health" => ok_json(&json!({"ok": true})),
            "/stats" => ask(engine, ControlCmd::Stats),
            "/close" => {
                let reset = request.query_param("reset").as_deref() == Some("true");
                ask(
                    engine,
                    ControlCmd::Close {
                        target: target(engine, request)?,
                        reset,
                    },
                )
            }
            "/skip-seq" | "/duplicate" | "/overflow" | "/channel-error" => {
                let target = target(engine, request)?;
                let sid: u64 = number(request, "sid")?;
                let cmd = match path {
                    "/skip-seq" => ControlCmd::SkipSeq { target, sid },
                    "/duplicate" => ControlCmd::Duplicate { target, sid },
                    "/overflow" => ControlCmd::Overflow { target, sid },
                    _ => ControlCmd::ChannelError { target, sid },
                };
                ask(engine, cmd)
            }
            "/handshakes" => ok_json(&shared.handshakes_json()),
            "/malformed" => ask(
                engine,
                ControlCmd::Malformed {
                    target: target(engine, request)?,
                    kind: malformed_kind(request)?,
                },
            ),
            "/stall" => {
                let target = target(engine, request)?;
                let ms: u64 = number(request, "ms")?;
                ask(engine, ControlCmd::Stall { target, ms })
            }
            "/pause" => ask(engine, ControlCmd::Pause),
            "/resume" => ask(engine, ControlCmd::Resume),
            "/halt" => ask(engine, ControlCmd::Halt),
            "/reject-auth" => {
                let on = switch(request)?;
                shared.reject_auth.store(on, Ordering::SeqCst);
                ok_json(&json!({"ok": true, "reject_auth": on}))
            }
            "/ws-429" => {
                let on = switch(request)?;
                shared.ws_429.store(on, Ordering::SeqCst);
                ok_json(&json!({"ok": true, "ws_429": on}))
            }
            "/add-key" => {
                let (Some(id), Some(pem)) =
                    (request.query_param("id"), request.query_param("path"))
                else {
                    return Err(bad("query parameters id and path are required"));
                };
                auth.add_key(&id, std::path::Path::new(&pem))
                    .map_err(|e| bad(&e))?;
                ok_json(&json!({"ok": true, "key_id": id}))
            }
            "/revoke-key" => {
                let Some(id) = request.query_param("id") else {
                    return Err(bad("query parameter id is required"));
                };
                let known = auth.revoke_key(&id);
                ok_json(&json!({"ok": true, "key_id": id, "was_known": known}))
            }
            "/force-429" => {
                let count: i64 = number(request, "count")?;
                shared.force_429.store(count.max(-1), Ordering::SeqCst);
                ok_json(&json!({"ok": true, "force_429": count.max(-1)}))
            }
            "/rest-delay" => {
                let ms: u64 = number(request, "ms")?;
                shared.rest_delay_ms.store(ms, Ordering::SeqCst);
                ok_json(&json!({"ok": true, "rest_delay_ms": ms}))
            }
            _ => ask(engine, ControlCmd::DumpBooks),
        })
    })();
    result.unwrap_or_else(|response| response)
}
