//! The REST client against a loopback server that answers canned HTTP responses.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use kalshi_net::{RestClient, RestClientConfig, RestError};

/// Serves `responses` in order, one per connection or request; returns the port and a handle
/// yielding the request heads it saw.
fn server(responses: Vec<(u16, String)>) -> (u16, thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let mut heads = Vec::new();
        let total = responses.len();
        let mut responses = responses.into_iter();
        'conns: for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 {
                        continue 'conns;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                heads.push(head);
                let Some((status, body)) = responses.next() else {
                    break 'conns;
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).unwrap();
                if heads.len() == total {
                    break 'conns;
                }
            }
        }
        heads
    });
    (port, handle)
}

fn client(port: u16, body_max: u64) -> RestClient {
    RestClient::new(&RestClientConfig {
        base_url: format!("http://127.0.0.1:{port}/trade-api/v2"),
        timeout: Duration::from_secs(10),
        body_bytes_max: body_max,
        extra_roots: vec![],
    })
    .unwrap()
}

#[test]
fn returns_statuses_and_bodies_and_sends_headers() {
    let big = "x".repeat(5000);
    let (port, handle) = server(vec![
        (200, r#"{"markets":[],"cursor":""}"#.to_owned()),
        (429, r#"{"error":"too many requests"}"#.to_owned()),
        (200, big),
    ]);
    let c = client(port, 4096);
    assert_eq!(
        c.signed_path("/markets?limit=5&cursor=abc"),
        "/trade-api/v2/markets"
    );
    let r = c
        .get(
            "/markets?limit=5",
            &[("KALSHI-ACCESS-KEY", "k1".to_owned())],
        )
        .unwrap();
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &br#"{"markets":[],"cursor":""}"#[..])
    );
    let r = c.get("/markets/trades", &[]).unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.body_excerpt(), r#"{"error":"too many requests"}"#);
    let e = c.get("/events", &[]).unwrap_err();
    assert!(matches!(e, RestError::TooLarge { limit: 4096, .. }), "{e}");
    drop(c);
    let heads = handle.join().unwrap();
    assert!(
        heads[0].starts_with("GET /trade-api/v2/markets?limit=5 HTTP/1.1"),
        "{}",
        heads[0]
    );
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("kalshi-access-key: k1"),
        "{}",
        heads[0]
    );
}

#[test]
fn rejects_bad_configuration() {
    for (url, roots) in [
        ("ftp://x/trade-api/v2", vec![]),
        ("http:///trade-api/v2", vec![]),
        (
            "https://x/trade-api/v2",
            vec!["/nonexistent/root.pem".into()],
        ),
    ] {
        let r = RestClient::new(&RestClientConfig {
            base_url: url.to_owned(),
            timeout: Duration::from_secs(1),
            body_bytes_max: 1,
            extra_roots: roots,
        });
        assert!(matches!(r, Err(RestError::Config(_))), "{url}");
    }
}

#[test]
fn nothing_listening_is_a_transport_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = client(port, 1024).get("/markets", &[]).unwrap_err();
    assert!(matches!(e, RestError::Transport { .. }), "{e}");
}
