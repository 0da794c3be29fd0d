//! Accepting connections with limits: how many at once, how long a client
//! may take to send a request head (or sit idle between requests), how long
//! a request may run, and whether HTTP/2 is spoken at all.
//!
//! axum's own `serve` has none of these knobs, so connections are accepted
//! here and handed to hyper directly. An attacker without credentials can
//! then hold at most `--max-connections` sockets, each for at most
//! `--header-timeout` unless it completes requests, and cannot open the 100+
//! concurrent streams of cleartext HTTP/2 unless `--http2` asks for it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tower::ServiceExt;

use super::auth::ClientAddress;
use super::error::ApiError;
use super::TlsArgs;
use crate::telemetry::telemetry;

/// Connection and request limits.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpLimits {
    /// Connections served at once; more are closed as they arrive
    #[arg(
        long,
        env = "CDRFLOW_MAX_CONNECTIONS",
        default_value_t = 512,
        value_name = "N"
    )]
    pub max_connections: usize,

    /// Longest wait for a request head, in seconds: a slow client's headers,
    /// an idle kept-alive connection's next request, a TLS handshake
    #[arg(
        long,
        env = "CDRFLOW_HEADER_TIMEOUT",
        default_value_t = 10.0,
        value_name = "SECONDS"
    )]
    pub header_timeout: f64,

    /// Longest time a request may take to be answered, in seconds (then 503)
    #[arg(
        long,
        env = "CDRFLOW_REQUEST_TIMEOUT",
        default_value_t = 30.0,
        value_name = "SECONDS"
    )]
    pub request_timeout: f64,

    /// Also speak HTTP/2 (prior knowledge in cleartext, ALPN over TLS), with
    /// at most 32 concurrent streams per connection
    #[arg(long, env = "CDRFLOW_HTTP2")]
    pub http2: bool,
}

/// Streams one HTTP/2 connection may have open at once.
const MAX_STREAMS: u32 = 32;

impl HttpLimits {
    fn seconds(value: f64, flag: &str) -> Result<Duration> {
        Duration::try_from_secs_f64(value)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("--{flag} must be a positive number of seconds"))
    }
}

/// The TLS configuration for `tls`, when it names a certificate.
pub fn tls_config(tls: &TlsArgs, http2: bool) -> Result<Option<Arc<rustls::ServerConfig>>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&tls.tls_cert, &tls.tls_key) else {
        return Ok(None);
    };
    // One process-wide provider; a second install is a harmless no-op error.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the TLS certificate chain {}", cert.display()))?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the TLS private key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .with_context(|| {
            format!(
                "the TLS certificate {} and key {} do not make a usable pair",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Some(Arc::new(config)))
}

/// Serves `app` on `listener` until the process ends.
pub async fn serve(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: &HttpLimits,
) -> Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let header_timeout = HttpLimits::seconds(limits.header_timeout, "header-timeout")?;
    let request_timeout = HttpLimits::seconds(limits.request_timeout, "request-timeout")?;
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let http2 = limits.http2;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: let some close.
                tracing::warn!("cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            telemetry().http_connection_refused();
            continue; // dropped: closed at once
        };
        let _ = stream.set_nodelay(true);
        let (app, acceptor) = (app.clone(), acceptor.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let connection = Connection {
                app,
                peer,
                header_timeout,
                request_timeout,
                http2,
            };
            match acceptor {
                None => connection.serve(stream).await,
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection.serve(stream).await,
                        Ok(Err(e)) => tracing::debug!(client = %peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

struct Connection {
    app: Router,
    peer: SocketAddr,
    header_timeout: Duration,
    request_timeout: Duration,
    http2: bool,
}

impl Connection {
    async fn serve<S>(self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            app,
            peer,
            header_timeout,
            request_timeout,
            http2,
        } = self;
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ClientAddress(peer));
                let app = app.clone();
                async move {
                    match tokio::time::timeout(request_timeout, app.oneshot(request)).await {
                        Ok(response) => response,
                        Err(_) => Ok(ApiError(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "the request took longer than {} s; try a smaller period",
                                request_timeout.as_secs_f64()
                            ),
                        )
                        .into_response()),
                    }
                }
            },
        );
        let io = TokioIo::new(stream);
        let result = if http2 {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(MAX_STREAMS)
                .keep_alive_interval(Some(header_timeout))
                .keep_alive_timeout(header_timeout);
            builder.serve_connection(io, service).await
        } else {
            // hyper starts the header timer whenever the connection waits for
            // a request head — the first one and each one after a response —
            // so it also closes kept-alive connections left idle.
            hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(io, service)
                .await
                .map_err(Into::into)
        };
        if let Err(e) = result {
            tracing::debug!(client = %peer, "connection ended: {e}");
        }
    }
}
