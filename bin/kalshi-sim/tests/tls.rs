#![allow(clippy::unwrap_used, clippy::expect_used)]
//! TLS: with a self-signed certificate made here by rcgen, a rustls client that trusts it
//! completes the handshake and speaks both REST (https) and the WebSocket (wss) on the one
//! listener; a key file readable by others is refused at start.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use common::{Client, temp_dir};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;

fn client_config(cert: &rcgen::CertifiedKey<rcgen::KeyPair>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn tls_stream(
    config: &Arc<rustls::ClientConfig>,
    addr: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(common::PATIENCE)).unwrap();
    let conn = rustls::ClientConnection::new(
        Arc::clone(config),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

#[test]
fn wss_and_https() {
    let dir = temp_dir("tls");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let sim = common::Sim::start(&[
        "--no-auth",
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    let config = client_config(&cert);

    // https
    let mut https = tls_stream(&config, &sim.listen);
    https
        .write_all(b"GET /trade-api/v2/exchange/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = https.read_to_end(&mut raw);
    let (status, body) = common::parse_response(&raw);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"exchange_active": true, "trading_active": true})
    );

    // wss: subscribe to the lifecycle channel and get `subscribed`, then list it.
    let stream = tls_stream(&config, &sim.listen);
    let local = stream.sock.local_addr().unwrap().to_string();
    let request = format!(
        "wss://localhost:{}/trade-api/ws/v2",
        sim.listen.rsplit(':').next().unwrap()
    )
    .into_client_request()
    .unwrap();
    let (ws, _) = tungstenite::client(request, stream).unwrap();
    let mut client = Client::new(ws, local);
    let id = client.command(
        "subscribe",
        Some(json!({"channels": ["market_lifecycle_v2"]})),
    );
    let subscribed = client.until(|f| f["id"] == id);
    assert_eq!(subscribed["type"], "subscribed");
    assert_eq!(
        subscribed["msg"],
        json!({"channel": "market_lifecycle_v2", "sid": 1})
    );
    let id = client.command("list_subscriptions", None);
    let list = client.until(|f| f["id"] == id);
    assert_eq!(
        list["msg"],
        json!([{"channel": "market_lifecycle_v2", "sid": 1}])
    );

    drop(sim);

    // A key readable by others is refused at start, naming the problem.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_kalshi-sim"))
            .args(["--no-auth", "--listen", "127.0.0.1:0", "--control", ""])
            .args([
                "--tls-cert",
                cert_path.to_str().unwrap(),
                "--tls-key",
                key_path.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("readable by group or others"), "{stderr}");
    }
}
