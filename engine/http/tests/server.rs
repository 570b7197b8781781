#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The server over real loopback sockets: keep-alive, pipelining, each error status, the
//! connection cap, arbitrary bytes, and TLS with a certificate made here by rcgen.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use kalshi_http::{Limits, Request, Response, Server, ServerHandle, tls_config_from_pem};

fn handler(request: &Request) -> Response {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET" | "HEAD", "/hello") => Response::text(200, "hello\n"),
        ("POST", "/echo") => Response::json(200, request.body.clone()),
        ("GET", "/query") => Response::text(200, &request.query_param("q").unwrap_or_default()),
        (_, "/hello" | "/echo") => Response::method_not_allowed(&request.method, &["GET"]),
        _ => Response::not_found(&request.path),
    }
}

fn start(limits: Limits) -> ServerHandle {
    Server::bind("127.0.0.1:0", limits, None)
        .unwrap()
        .spawn(handler)
        .unwrap()
}

fn connect(server: &ServerHandle) -> TcpStream {
    let s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Reads one response (head + Content-Length body); returns (status, head, body).
fn read_response(s: &mut impl Read) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0_u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "eof in head: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0_u8; length];
    s.read_exact(&mut body).unwrap();
    (status, head, body)
}

fn exchange(server: &ServerHandle, bytes: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = connect(server);
    s.write_all(bytes).unwrap();
    read_response(&mut s)
}

// Two requests on one keep-alive connection, then a pipelined pair, are each answered in order.
#[test]
fn keep_alive_and_pipelining() {
    let server = start(Limits::default());
    let mut s = connect(&server);
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (status, head, body) = read_response(&mut s);
    assert_eq!((status, body.as_slice()), (200, &b"hello\n"[..]));
    assert!(head.contains("Connection: keep-alive"));
    s.write_all(b"POST /echo HTTP/1.1\r\nContent-Length: 7\r\n\r\n{\"a\":1}GET /query?q=a%2Fb+c HTTP/1.1\r\n\r\n")
        .unwrap();
    let (status, head, body) = read_response(&mut s);
    assert_eq!((status, body.as_slice()), (200, &b"{\"a\":1}"[..]));
    assert!(head.contains("Content-Type: application/json"));
    let (status, _, body) = read_response(&mut s);
    assert_eq!((status, body.as_slice()), (200, &b"a/b c"[..]));
    // HEAD: the head says the length, no body follows; then Connection: close ends it.
    s.write_all(b"HEAD /hello HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let text = String::from_utf8(rest).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("Content-Length: 6\r\n") && text.ends_with("\r\n\r\n"),
        "{text}"
    );
}

// Every bad request gets its status and a body naming the problem, then the connection closes.
#[test]
fn error_statuses() {
    let server = start(Limits {
        body_bytes_max: 100,
        ..Limits::default()
    });
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            b"GET /nope HTTP/1.1\r\n\r\n".to_vec(),
            404,
            "no such endpoint: /nope",
        ),
        (
            b"DELETE /hello HTTP/1.1\r\n\r\n".to_vec(),
            405,
            "method DELETE not allowed",
        ),
        (b"GARBAGE\x01\r\n\r\n".to_vec(), 400, "malformed request"),
        (
            b"POST /echo HTTP/1.1\r\nContent-Length: 101\r\n\r\n".to_vec(),
            413,
            "exceeds the limit of 100 bytes",
        ),
        (
            b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            400,
            "Transfer-Encoding",
        ),
        (
            [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 17_000]].concat(),
            431,
            "head too large",
        ),
    ];
    for (bytes, status, needle) in cases {
        let (got, head, body) = exchange(&server, &bytes);
        let body = String::from_utf8(body).unwrap();
        assert_eq!(got, status, "{body}");
        assert!(body.contains(needle), "{status}: {body}");
        if status == 405 {
            assert!(head.contains("Allow: GET"));
        }
    }
}

// Random bytes never take the server down: after each, a good request is still answered.
#[test]
fn arbitrary_bytes() {
    let server = start(Limits::default());
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..200 {
        let mut bytes = Vec::new();
        let len = (round * 37) % 600;
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push(state as u8);
        }
        if round % 3 == 0 {
            bytes.splice(0..0, b"GET /hello HTTP/1.1\r\n".iter().copied());
        }
        let mut s = connect(&server);
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let (status, _, _) = exchange(&server, b"GET /hello HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
}

// Past the connection cap, a new connection is answered 503 naming the limit.
#[test]
fn connection_cap() {
    let server = start(Limits {
        connections_max: 2,
        ..Limits::default()
    });
    let mut held = vec![connect(&server), connect(&server)];
    // Make sure both are being served (a served connection answers).
    for s in &mut held {
        s.write_all(b"GET /hello HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_response(s).0, 200);
    }
    let (status, _, body) = exchange(&server, b"GET /hello HTTP/1.1\r\n\r\n");
    assert_eq!(status, 503);
    assert!(String::from_utf8(body).unwrap().contains("limit 2"));
}

// TLS: a rustls client trusting an rcgen self-signed certificate gets the same answers.
#[test]
fn tls_round_trip() {
    let dir = std::env::temp_dir().join(format!("kalshi-http-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    // Loose permissions are refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = tls_config_from_pem(&cert_path, &key_path).unwrap_err();
        assert!(
            err.to_string().contains("readable by group or others"),
            "{err}"
        );
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = tls_config_from_pem(&cert_path, &key_path).unwrap();
    let server = Server::bind("127.0.0.1:0", Limits::default(), Some(config))
        .unwrap()
        .spawn(handler)
        .unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, connect(&server));
    tls.write_all(b"GET /hello HTTP/1.1\r\n\r\n").unwrap();
    let (status, _, body) = read_response(&mut tls);
    assert_eq!((status, body.as_slice()), (200, &b"hello\n"[..]));
    std::fs::remove_dir_all(&dir).unwrap();
}

// Slowloris: a request whose bytes trickle in (one every 100 ms, each read well within the read
// timeout) is answered 408 once it has taken longer than `request_timeout`, and its connection
// closed, so slow clients cannot hold the connection slots; a normal request is still served.
#[test]
fn trickled_request_times_out() {
    let server = start(Limits {
        request_timeout: Duration::from_millis(500),
        connections_max: 2,
        ..Limits::default()
    });
    let mut slow = connect(&server);
    let request = b"GET /hello HTTP/1.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut answered = None;
    for byte in request.iter() {
        if slow.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        slow.set_nonblocking(true).unwrap();
        let mut peek = [0_u8; 1];
        let readable = slow.peek(&mut peek).is_ok();
        slow.set_nonblocking(false).unwrap();
        if readable {
            answered = Some(read_response(&mut slow));
            break;
        }
    }
    let (status, _, body) = answered.expect("the trickled request was never cut off");
    assert_eq!(status, 408);
    assert!(String::from_utf8_lossy(&body).contains("not received within"));
    let (status, _, _) = exchange(&server, b"GET /hello HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
}
