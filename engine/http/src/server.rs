//! The accept loop: one thread per connection, at most [`Limits::connections_max`] at once.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::ServerConfig;

use crate::request::{HttpError, Request, RequestReader};
use crate::response::{Response, write_response};
use crate::stream::Stream;

/// Bounds on requests and connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and headers). Default 16 KiB; larger answers 431.
    pub head_bytes_max: usize,
    /// Largest request body. Default 1 MiB; larger answers 413.
    pub body_bytes_max: usize,
    /// Socket read timeout, also the keep-alive idle timeout. Default 30 s.
    pub read_timeout: Duration,
    /// Longest time one request may take to arrive, from its first byte to the end of its body.
    /// A slower one (bytes trickled in, slowloris) is answered 408 and the connection closed, so
    /// that slow clients cannot hold every connection slot. Checked after each read, so a
    /// request is dropped at the latest `request_timeout + read_timeout` after it began.
    /// Default 10 s.
    pub request_timeout: Duration,
    /// Socket write timeout. Default 30 s.
    pub write_timeout: Duration,
    /// Most connections served at once; more are answered 503 and closed. Default 256.
    pub connections_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            head_bytes_max: 16 * 1024,
            body_bytes_max: 1024 * 1024,
            read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            connections_max: 256,
        }
    }
}

/// A request handler.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A connection function: owns one accepted stream until it returns. Runs on the connection's
/// own thread, with the socket's timeouts already set from [`Limits`].
pub type ConnectionFn = Arc<dyn Fn(Stream, SocketAddr) + Send + Sync>;

/// A bound listener, not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    limits: Limits,
    tls: Option<Arc<ServerConfig>>,
}

/// A running server; shutting it down (or dropping it) stops accepting. Connections already
/// accepted finish on their own (at the latest after the read timeout).
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The bound address.
    #[must_use]
    pub const fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections being served now.
    #[must_use]
    pub fn active_connections(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Stops accepting and waits for the accept thread to end.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Decrements the active-connection count when a connection thread ends, however it ends.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Server {
    /// Binds `addr` (port 0 picks a free port). With `tls`, every connection is TLS.
    ///
    /// # Errors
    /// Resolution or bind failures.
    pub fn bind<A: ToSocketAddrs>(
        addr: A,
        limits: Limits,
        tls: Option<Arc<ServerConfig>>,
    ) -> io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr)?,
            limits,
            tls,
        })
    }

    /// The bound address.
    ///
    /// # Errors
    /// The OS failing to report it.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves HTTP requests with `handler` on a background accept thread.
    ///
    /// # Errors
    /// Failing to spawn the accept thread or to read the bound address.
    pub fn spawn<H>(self, handler: H) -> io::Result<ServerHandle>
    where
        H: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        let limits = self.limits.clone();
        let handler: Handler = Arc::new(handler);
        self.spawn_connections(Arc::new(move |mut stream: Stream, peer: SocketAddr| {
            serve_http(&mut stream, peer, &limits, &*handler);
            stream.close();
        }))
    }

    /// Hands every accepted connection to `connection` on its own thread.
    ///
    /// # Errors
    /// Failing to spawn the accept thread or to read the bound address.
    pub fn spawn_connections(self, connection: ConnectionFn) -> io::Result<ServerHandle> {
        let addr = self.listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let thread = {
            let stop = Arc::clone(&stop);
            let active = Arc::clone(&active);
            std::thread::Builder::new()
                .name(format!("http-accept-{}", addr.port()))
                .spawn(move || self.accept_loop(&stop, &active, &connection))?
        };
        Ok(ServerHandle {
            addr,
            stop,
            active,
            thread: Some(thread),
        })
    }

    fn accept_loop(self, stop: &AtomicBool, active: &Arc<AtomicUsize>, connection: &ConnectionFn) {
        loop {
            let accepted = self.listener.accept();
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors or a reset before accept: back off, keep serving.
                    eprintln!("kalshi-http: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let _ = tcp.set_read_timeout(Some(self.limits.read_timeout));
            let _ = tcp.set_write_timeout(Some(self.limits.write_timeout));
            let _ = tcp.set_nodelay(true);
            if active.fetch_add(1, Ordering::SeqCst) >= self.limits.connections_max {
                active.fetch_sub(1, Ordering::SeqCst);
                if self.tls.is_none() {
                    let mut tcp = tcp;
                    let response = Response::text(
                        503,
                        &format!(
                            "too many connections (limit {})\n",
                            self.limits.connections_max
                        ),
                    );
                    let _ = write_response(&mut tcp, &response, false, false);
                }
                continue;
            }
            let guard = ActiveGuard(Arc::clone(active));
            let stream = match Stream::new(tcp, self.tls.as_ref()) {
                Ok(stream) => stream,
                Err(e) => {
                    eprintln!("kalshi-http: cannot start TLS for {peer}: {e}");
                    continue;
                }
            };
            let connection = Arc::clone(connection);
            let spawned = std::thread::Builder::new()
                .name("http-conn".into())
                .spawn(move || {
                    let _guard = guard;
                    connection(stream, peer);
                });
            if let Err(e) = spawned {
                eprintln!("kalshi-http: cannot spawn a connection thread: {e}");
            }
        }
    }
}

/// Serves HTTP/1.1 requests on one connection until the peer closes, asks to close, times out
/// or sends a bad request (answered with its 4xx before closing). `HEAD` gets the head only.
pub fn serve_http(
    stream: &mut Stream,
    peer: SocketAddr,
    limits: &Limits,
    handler: &(dyn Fn(&Request) -> Response + Send + Sync),
) {
    let mut reader = RequestReader::new(limits.clone());
    loop {
        let request = match reader.read_request(stream, Some(peer)) {
            Ok(request) => request,
            Err(error) => {
                if let Some(response) = error.response() {
                    let _ = write_response(stream, &response, false, false);
                }
                if matches!(error, HttpError::Io(_)) {
                    let _ = stream.flush();
                }
                return;
            }
        };
        let response = handler(&request);
        let keep_alive = !request.wants_close();
        if write_response(stream, &response, keep_alive, request.method == "HEAD").is_err()
            || !keep_alive
        {
            return;
        }
    }
}
