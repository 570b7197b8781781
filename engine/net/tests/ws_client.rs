//! The WebSocket client against a real tungstenite server on a loopback socket.

use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use kalshi_net::{ConnectError, WsConfig, WsConnection, WsEvent, WsUrl};
use tungstenite::Message;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};

fn config() -> WsConfig {
    WsConfig {
        connect_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(10),
        liveness_timeout: Duration::from_secs(30),
        frame_bytes_max: 1 << 16,
        tls: None,
    }
}

fn run<T: Send + 'static>(f: impl AsyncFnOnce() -> T + Send + 'static) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move { f().await })
        .unwrap()
        .join()
        .unwrap()
}

/// Headers arrive, text frames arrive in order and intact, pings are answered with pongs,
/// and commands reach the server.
#[test]
fn exchanges_frames_headers_and_pongs() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut seen_key = None;
        let callback = |req: &Request, resp: Response| {
            seen_key = req
                .headers()
                .get("KALSHI-ACCESS-KEY")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(req.uri().path(), "/trade-api/ws/v2");
            Ok(resp)
        };
        let mut ws = tungstenite::accept_hdr(stream, callback).unwrap();
        ws.send(Message::Ping(b"heartbeat".to_vec().into()))
            .unwrap();
        for i in 0..100 {
            ws.send(Message::text(format!("{{\"n\":{i}}}"))).unwrap();
        }
        // The client's command, then the pong it owed (tungstenite answers on its next read).
        let mut got_pong = false;
        let mut command = None;
        while command.is_none() || !got_pong {
            match ws.read().unwrap() {
                Message::Pong(p) => {
                    assert_eq!(&p[..], b"heartbeat");
                    got_pong = true;
                }
                Message::Text(t) => command = Some(t.to_string()),
                other => panic!("unexpected {other:?}"),
            }
        }
        ws.close(None).unwrap();
        (seen_key, command)
    });
    let texts = run(move || async move {
        let url = WsUrl::parse(&format!("ws://127.0.0.1:{port}/trade-api/ws/v2")).unwrap();
        let headers = [("KALSHI-ACCESS-KEY", "key-1".to_owned())];
        let mut conn = WsConnection::connect(&url, &headers, &config())
            .await
            .unwrap();
        let mut scratch = Vec::new();
        let mut texts = Vec::new();
        let mut controls = 0;
        while texts.len() < 100 {
            match conn.recv(&mut scratch).await.unwrap() {
                WsEvent::Text => texts.push(String::from_utf8(scratch.clone()).unwrap()),
                WsEvent::Control => controls += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(controls, 1, "the ping");
        conn.send_text(r#"{"id":1,"cmd":"subscribe"}"#)
            .await
            .unwrap();
        // Reading on lets the client flush the pong and see the close.
        let end = conn.recv(&mut scratch).await;
        assert!(matches!(end, Err(ConnectError::Closed(_))), "{end:?}");
        texts
    });
    let expected: Vec<String> = (0..100).map(|i| format!("{{\"n\":{i}}}")).collect();
    assert_eq!(texts, expected);
    let (key, command) = server.join().unwrap();
    assert_eq!(key.as_deref(), Some("key-1"));
    assert_eq!(command.as_deref(), Some(r#"{"id":1,"cmd":"subscribe"}"#));
}

fn refusing_server(status: u16, body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let callback = |_: &Request, _: Response| {
            let mut resp = ErrorResponse::new(Some(body.to_owned()));
            *resp.status_mut() = tungstenite::http::StatusCode::from_u16(status).unwrap();
            Err(resp)
        };
        let _ = tungstenite::accept_hdr(stream, callback);
    });
    port
}

/// A 401 is fatal and carries the exchange's body; a 429 is not fatal.
#[test]
fn classifies_refused_handshakes() {
    let body401 = r#"{"error":{"code":"authentication_error","message":"authentication_error","details":"NOT_FOUND"}}"#;
    let p401 = refusing_server(401, body401);
    let p429 = refusing_server(429, r#"{"error":"too many requests"}"#);
    let (e401, e429) = run(move || async move {
        let connect = |port: u16| async move {
            let url = WsUrl::parse(&format!("ws://127.0.0.1:{port}/trade-api/ws/v2")).unwrap();
            WsConnection::connect(&url, &[], &config())
                .await
                .err()
                .unwrap()
        };
        (connect(p401).await, connect(p429).await)
    });
    match &e401 {
        ConnectError::Auth { body } => assert_eq!(body, body401),
        other => panic!("{other:?}"),
    }
    assert!(e401.is_fatal());
    assert_eq!(e401.kind(), "auth");
    assert!(matches!(e429, ConnectError::RateLimited { .. }), "{e429:?}");
    assert!(!e429.is_fatal());
}

/// Nothing listening: a transport error, not fatal.
#[test]
fn refused_connection_is_transport() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = run(move || async move {
        let url = WsUrl::parse(&format!("ws://127.0.0.1:{port}/trade-api/ws/v2")).unwrap();
        WsConnection::connect(&url, &[], &config())
            .await
            .err()
            .unwrap()
    });
    assert_eq!(err.kind(), "transport", "{err}");
}

/// A server that goes quiet is reported as silent after the liveness window, and a frame larger
/// than the limit fails the connection with a protocol error.
#[test]
fn liveness_and_frame_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        // First connection: one frame, then silence until the client leaves.
        let (stream, _) = listener.accept().unwrap();
        let mut ws = tungstenite::accept(stream).unwrap();
        ws.send(Message::text("hello")).unwrap();
        let _ = ws.read();
        // Second connection: a frame over the limit.
        let (stream, _) = listener.accept().unwrap();
        let mut ws = tungstenite::accept(stream).unwrap();
        let _ = ws.send(Message::text("x".repeat(1 << 17)));
        let _ = ws.read();
    });
    let (first, second, oversized) = run(move || async move {
        let url = WsUrl::parse(&format!("ws://127.0.0.1:{port}/trade-api/ws/v2")).unwrap();
        let mut cfg = config();
        cfg.liveness_timeout = Duration::from_millis(300);
        let mut conn = WsConnection::connect(&url, &[], &cfg).await.unwrap();
        let mut scratch = Vec::new();
        let first = conn.recv(&mut scratch).await.unwrap();
        let second = conn.recv(&mut scratch).await.unwrap();
        drop(conn);
        let mut conn = WsConnection::connect(&url, &[], &cfg).await.unwrap();
        let oversized = conn.recv(&mut scratch).await.err().unwrap();
        (first, second, oversized)
    });
    assert_eq!(first, WsEvent::Text);
    assert_eq!(second, WsEvent::Silent);
    assert_eq!(oversized.kind(), "protocol", "{oversized}");
    server.join().unwrap();
}
