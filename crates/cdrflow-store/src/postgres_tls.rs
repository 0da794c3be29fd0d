//! How the PostgreSQL store connects: `sslmode` and `sslrootcert` in
//! `DATABASE_URL` with libpq's meanings, over rustls.
//!
//! The `postgres` crate understands only `disable`, `prefer` and `require`,
//! and verifies nothing itself: verification is the TLS connector's. So the
//! two settings are taken out of the URL here and become a rustls
//! configuration:
//!
//! | sslmode | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | no |
//! | `require` | always | no (with `sslrootcert`: as `verify-ca`, as libpq) |
//! | `verify-ca` | always | signed by `sslrootcert` |
//! | `verify-full` | always | signed by `sslrootcert` and issued for the host |
//!
//! Unverified modes still bind the SCRAM exchange to the server's
//! certificate (channel binding) where the server supports it.

use std::str::FromStr;
use std::sync::Arc;

use postgres::config::SslMode;
use postgres::{Client, Config, NoTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How long a connection attempt may take unless the URL says
/// (`connect_timeout=SECONDS`).
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What `sslmode` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(text: &str) -> Result<TlsMode, String> {
        Ok(match text {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other} is not supported: use disable, prefer, require, verify-ca or verify-full"
                ))
            }
        })
    }
}

/// A PostgreSQL URL made ready to connect: the client settings and the TLS
/// to use.
pub struct Connector {
    config: Config,
    tls: Option<MakeRustlsConnect>,
}

impl Connector {
    /// Reads `url` (`postgres://user@host/db?sslmode=verify-full&sslrootcert=ca.pem`).
    /// Errors say what is wrong with it, never the password.
    pub fn from_url(url: &str) -> Result<Connector, String> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = TlsMode::Prefer;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => mode = TlsMode::parse(&percent_decode(value)?)?,
                "sslrootcert" => root_cert = Some(percent_decode(value)?),
                _ => kept.push(pair),
            }
        }
        let mut rebuilt = base.to_string();
        if !kept.is_empty() {
            rebuilt.push('?');
            rebuilt.push_str(&kept.join("&"));
        }
        let mut config = Config::from_str(&rebuilt)
            .map_err(|e| format!("the PostgreSQL URL is not valid: {e}"))?;
        // A host that drops packets would otherwise hold a connection
        // attempt for the operating system's TCP timeout (minutes).
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // libpq: with a root certificate, `require` verifies the chain.
        if mode == TlsMode::Require && root_cert.is_some() {
            mode = TlsMode::VerifyCa;
        }
        config.ssl_mode(match mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        let tls = match mode {
            TlsMode::Disable => None,
            TlsMode::Prefer | TlsMode::Require => Some(unverified()?),
            TlsMode::VerifyCa | TlsMode::VerifyFull => {
                let Some(path) = root_cert else {
                    return Err(format!(
                        "sslmode={} needs the CA that signed the server's certificate: add sslrootcert=/path/to/ca.pem to the URL",
                        if mode == TlsMode::VerifyCa { "verify-ca" } else { "verify-full" }
                    ));
                };
                Some(verified(&path, mode == TlsMode::VerifyFull)?)
            }
        };
        Ok(Connector { config, tls })
    }

    pub fn connect(&self) -> Result<Client, postgres::Error> {
        match &self.tls {
            None => self.config.connect(NoTls),
            Some(tls) => self.config.connect(tls.clone()),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(verifier: Arc<dyn ServerCertVerifier>) -> Result<MakeRustlsConnect, String> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn unverified() -> Result<MakeRustlsConnect, String> {
    client_config(Arc::new(ServerCheck {
        chain: None,
        check_host: false,
        algorithms: provider().signature_verification_algorithms,
    }))
}

fn verified(root_cert: &str, check_host: bool) -> Result<MakeRustlsConnect, String> {
    let mut roots = RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(root_cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read sslrootcert={root_cert}: {e}"))?;
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(format!(
            "sslrootcert={root_cert} holds no usable CA certificate (PEM)"
        ));
    }
    let provider = provider();
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("cannot use sslrootcert={root_cert}: {e}"))?;
    client_config(Arc::new(ServerCheck {
        chain: Some(webpki),
        check_host,
        algorithms: provider.signature_verification_algorithms,
    }))
}

/// The server-certificate check of one sslmode: nothing (`prefer`,
/// `require`: libpq's meaning), the chain (`verify-ca`), or the chain and the
/// host (`verify-full`). webpki checks the chain before the name, so a name
/// mismatch means the chain was good. Handshake signatures are always
/// checked, with the provider's algorithms (as webpki's own verifier does).
#[derive(Debug)]
struct ServerCheck {
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_host: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ServerCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let Some(webpki) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_host => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `%2F` and friends in URL query values (a path in `sslrootcert`).
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("`{text}` in the PostgreSQL URL has a broken %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{text}` in the PostgreSQL URL is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_read_with_libpq_meanings() {
        let plain = Connector::from_url("postgres://u@h/db?sslmode=disable").unwrap();
        assert!(plain.tls.is_none());
        let default = Connector::from_url("postgres://u@h/db?application_name=x").unwrap();
        assert!(default.tls.is_some(), "prefer by default, as libpq");
        assert_eq!(
            default.config.get_application_name(),
            Some("x"),
            "other parameters kept"
        );
        let err = Connector::from_url("postgres://u@h/db?sslmode=verify-full")
            .err()
            .unwrap();
        assert!(err.contains("sslrootcert="), "{err}");
        let err = Connector::from_url("postgres://u@h/db?sslmode=allow")
            .err()
            .unwrap();
        assert!(err.contains("not supported"), "{err}");
        let err = Connector::from_url(
            "postgres://u:secret@h/db?sslmode=verify-ca&sslrootcert=%2Fno%2Fsuch.pem",
        )
        .err()
        .unwrap();
        assert!(
            err.contains("/no/such.pem") && !err.contains("secret"),
            "{err}"
        );
        assert_eq!(percent_decode("a%2Fb%20c").unwrap(), "a/b c");
        assert!(percent_decode("a%2").is_err());
    }
}
