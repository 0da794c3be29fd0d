//! How cdrflow reaches a Kafka cluster: the bootstrap address and the
//! security settings (TLS, SASL), resolved once as flags > environment >
//! config file (`[kafka]`) > defaults and handed to every client — the
//! consumer, the dead-letter producer, the generator, replay and the stall
//! watch — so that none of them can forget one.
//!
//! The settings are checked here, before librdkafka sees them, because
//! librdkafka accepts contradictory ones (SASL credentials on a PLAINTEXT
//! connection are ignored) and its default mechanism, GSSAPI, is not built in.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use serde::Deserialize;

use crate::config::secret_setting;

/// Seed 000's broker address.
pub const DEFAULT_BOOTSTRAP: &str = "localhost:19092";

/// Security flags, each with its `KAFKA_*` variable (the names Kafka clients
/// and Kubernetes manifests already use).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaSecurityArgs {
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL [default: PLAINTEXT]
    #[arg(
        long,
        help_heading = "Kafka security",
        env = "KAFKA_SECURITY_PROTOCOL",
        value_name = "PROTOCOL"
    )]
    pub kafka_security_protocol: Option<String>,

    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL protocol)
    #[arg(
        long,
        help_heading = "Kafka security",
        env = "KAFKA_SASL_MECHANISM",
        value_name = "MECHANISM"
    )]
    pub kafka_sasl_mechanism: Option<String>,

    /// SASL user name
    #[arg(
        long,
        help_heading = "Kafka security",
        env = "KAFKA_SASL_USERNAME",
        value_name = "USER"
    )]
    pub kafka_sasl_username: Option<String>,

    /// SASL password; prefer the file variant, as a flag shows in `ps`
    #[arg(
        long,
        help_heading = "Kafka security",
        env = "KAFKA_SASL_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub kafka_sasl_password: Option<String>,

    /// A file holding the SASL password (e.g. a mounted secret)
    #[arg(
        long,
        help_heading = "Kafka security",
        env = "KAFKA_SASL_PASSWORD_FILE",
        value_name = "FILE",
        conflicts_with = "kafka_sasl_password"
    )]
    pub kafka_sasl_password_file: Option<PathBuf>,

    /// CA certificates (PEM) that sign the brokers' certificates [default: the system's]
    #[arg(
        long,
        help_heading = "Kafka security",
        env = "KAFKA_SSL_CA_LOCATION",
        value_name = "FILE"
    )]
    pub kafka_ssl_ca_location: Option<PathBuf>,

    /// Client certificate (PEM), for brokers that require mutual TLS
    #[arg(
        long,
        help_heading = "Kafka security",
        env = "KAFKA_SSL_CERTIFICATE_LOCATION",
        value_name = "FILE"
    )]
    pub kafka_ssl_certificate_location: Option<PathBuf>,

    /// The client certificate's private key (PEM)
    #[arg(
        long,
        help_heading = "Kafka security",
        env = "KAFKA_SSL_KEY_LOCATION",
        value_name = "FILE"
    )]
    pub kafka_ssl_key_location: Option<PathBuf>,

    /// Password of an encrypted private key
    #[arg(
        long,
        help_heading = "Kafka security",
        env = "KAFKA_SSL_KEY_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub kafka_ssl_key_password: Option<String>,

    /// A file holding the private key's password
    #[arg(
        long,
        help_heading = "Kafka security",
        env = "KAFKA_SSL_KEY_PASSWORD_FILE",
        value_name = "FILE",
        conflicts_with = "kafka_ssl_key_password"
    )]
    pub kafka_ssl_key_password_file: Option<PathBuf>,

    /// `https`: the broker's certificate must name the host connected to;
    /// `none`: any host name (only for brokers reached by an address their
    /// certificate does not carry) [default: https]
    #[arg(
        long,
        help_heading = "Kafka security",
        env = "KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM",
        value_name = "ALGORITHM"
    )]
    pub kafka_ssl_endpoint_identification_algorithm: Option<String>,
}

/// The config file's `[kafka]` table: the flags' names without `kafka_`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaFileSettings {
    pub bootstrap: Option<String>,
    pub security_protocol: Option<String>,
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    pub sasl_password_file: Option<PathBuf>,
    pub ssl_ca_location: Option<PathBuf>,
    pub ssl_certificate_location: Option<PathBuf>,
    pub ssl_key_location: Option<PathBuf>,
    pub ssl_key_password: Option<String>,
    pub ssl_key_password_file: Option<PathBuf>,
    pub ssl_endpoint_identification_algorithm: Option<String>,
}

impl KafkaFileSettings {
    /// Does the table hold a password in clear (not a file naming one)?
    pub fn holds_password(&self) -> bool {
        self.sasl_password.is_some() || self.ssl_key_password.is_some()
    }
}

/// A password: never printed, not even by `{:?}`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    fn parse(text: &str) -> Result<Protocol> {
        Ok(match text.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Protocol::Plaintext,
            "SSL" => Protocol::Ssl,
            "SASL_PLAINTEXT" => Protocol::SaslPlaintext,
            "SASL_SSL" => Protocol::SaslSsl,
            _ => bail!(
                "unknown Kafka security protocol `{text}` (KAFKA_SECURITY_PROTOCOL): use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            ),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Protocol::Plaintext => "PLAINTEXT",
            Protocol::Ssl => "SSL",
            Protocol::SaslPlaintext => "SASL_PLAINTEXT",
            Protocol::SaslSsl => "SASL_SSL",
        }
    }

    fn uses_tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

/// The SASL mechanisms librdkafka implements with OpenSSL alone.
const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

#[derive(Debug, Clone)]
struct Sasl {
    mechanism: &'static str,
    username: String,
    password: Secret,
}

#[derive(Debug, Clone)]
struct Tls {
    ca_location: Option<PathBuf>,
    certificate_location: Option<PathBuf>,
    key_location: Option<PathBuf>,
    key_password: Option<Secret>,
    check_host_name: bool,
}

/// A Kafka cluster as every client of it connects.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub bootstrap: String,
    protocol: Protocol,
    sasl: Option<Sasl>,
    tls: Option<Tls>,
}

impl Cluster {
    /// Flags and environment (`args`) over the config file's `[kafka]` table.
    pub fn resolve(
        bootstrap: Option<&str>,
        args: &KafkaSecurityArgs,
        file: &KafkaFileSettings,
    ) -> Result<Cluster> {
        let a = args.clone();
        let f = file.clone();
        let bootstrap = bootstrap
            .map(str::to_string)
            .or(f.bootstrap)
            .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_string());
        let protocol = match a.kafka_security_protocol.or(f.security_protocol) {
            Some(text) => Protocol::parse(&text)?,
            None => Protocol::Plaintext,
        };
        let mechanism = a.kafka_sasl_mechanism.or(f.sasl_mechanism);
        let username = a.kafka_sasl_username.or(f.sasl_username);
        let password = secret_setting(
            (a.kafka_sasl_password, a.kafka_sasl_password_file),
            (f.sasl_password, f.sasl_password_file),
        )?
        .map(Secret);
        let sasl = if protocol.uses_sasl() {
            let Some(mechanism) = mechanism else {
                bail!(
                    "{} needs a SASL mechanism: set KAFKA_SASL_MECHANISM (--kafka-sasl-mechanism) to {} (librdkafka's default, GSSAPI/Kerberos, is not built into cdrflow)",
                    protocol.name(),
                    MECHANISMS.join(", ")
                );
            };
            let Some(mechanism) = MECHANISMS
                .into_iter()
                .find(|m| m.eq_ignore_ascii_case(&mechanism))
            else {
                bail!(
                    "unsupported SASL mechanism `{mechanism}` (KAFKA_SASL_MECHANISM): use {}",
                    MECHANISMS.join(", ")
                );
            };
            let (Some(username), Some(password)) = (username, password) else {
                bail!(
                    "SASL {mechanism} needs a user name and a password: set KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD_FILE (or KAFKA_SASL_PASSWORD)"
                );
            };
            Some(Sasl {
                mechanism,
                username,
                password,
            })
        } else {
            if mechanism.is_some() || username.is_some() || password.is_some() {
                bail!(
                    "SASL settings are given but the security protocol is {}, which sends no credentials: set KAFKA_SECURITY_PROTOCOL to SASL_SSL (or SASL_PLAINTEXT)",
                    protocol.name()
                );
            }
            None
        };

        let ca_location = a.kafka_ssl_ca_location.or(f.ssl_ca_location);
        let certificate_location = a
            .kafka_ssl_certificate_location
            .or(f.ssl_certificate_location);
        let key_location = a.kafka_ssl_key_location.or(f.ssl_key_location);
        let key_password = secret_setting(
            (a.kafka_ssl_key_password, a.kafka_ssl_key_password_file),
            (f.ssl_key_password, f.ssl_key_password_file),
        )?
        .map(Secret);
        let check_host_name = match a
            .kafka_ssl_endpoint_identification_algorithm
            .or(f.ssl_endpoint_identification_algorithm)
        {
            None => true,
            Some(text) if text.eq_ignore_ascii_case("https") => true,
            Some(text) if text.eq_ignore_ascii_case("none") => false,
            Some(text) => bail!(
                "unknown endpoint identification `{text}` (KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM): use https or none"
            ),
        };
        let tls = if protocol.uses_tls() {
            if certificate_location.is_some() != key_location.is_some() {
                bail!(
                    "mutual TLS needs both KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION"
                );
            }
            for path in [&ca_location, &certificate_location, &key_location]
                .into_iter()
                .flatten()
            {
                readable(path)?;
            }
            if !check_host_name {
                tracing::warn!(
                    "the Kafka brokers' certificates are checked against the CA but not against their host names (KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM=none)"
                );
            }
            Some(Tls {
                ca_location,
                certificate_location,
                key_location,
                key_password,
                check_host_name,
            })
        } else {
            if ca_location.is_some() || certificate_location.is_some() || key_location.is_some() {
                bail!(
                    "TLS files are given but the security protocol is {}, which does not encrypt: set KAFKA_SECURITY_PROTOCOL to SSL (or SASL_SSL)",
                    protocol.name()
                );
            }
            None
        };
        Ok(Cluster {
            bootstrap,
            protocol,
            sasl,
            tls,
        })
    }

    /// librdkafka settings for any client of this cluster.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "cdrflow")
            .set("security.protocol", self.protocol.name());
        if let Some(sasl) = &self.sasl {
            config
                .set("sasl.mechanism", sasl.mechanism)
                .set("sasl.username", &sasl.username)
                .set("sasl.password", sasl.password.expose());
        }
        if let Some(tls) = &self.tls {
            // The OpenSSL built into cdrflow knows no system CA directory of
            // its own; `probe` makes librdkafka look in the usual places
            // (/etc/ssl/certs, …), so public CAs work without a CA file.
            let ca = tls
                .ca_location
                .as_deref()
                .map_or("probe".into(), Path::to_string_lossy);
            config.set("ssl.ca.location", ca).set(
                "ssl.endpoint.identification.algorithm",
                if tls.check_host_name { "https" } else { "none" },
            );
            if let (Some(certificate), Some(key)) = (&tls.certificate_location, &tls.key_location) {
                config
                    .set("ssl.certificate.location", certificate.to_string_lossy())
                    .set("ssl.key.location", key.to_string_lossy());
            }
            if let Some(password) = &tls.key_password {
                config.set("ssl.key.password", password.expose());
            }
        }
        config
    }

    /// What to check when the cluster cannot be reached, by what is configured.
    pub fn what_to_check(&self) -> String {
        let mut hints = vec![format!(
            "that a broker listens at {} (--bootstrap, BOOTSTRAP) and this host can reach it",
            self.bootstrap
        )];
        hints.push(format!(
            "that the listener speaks {} (KAFKA_SECURITY_PROTOCOL)",
            self.protocol.name()
        ));
        if self.tls.is_some() {
            hints.push(
                "that KAFKA_SSL_CA_LOCATION holds the CA that signed the broker's certificate, and that the certificate names the host in the bootstrap address".into(),
            );
        }
        if let Some(sasl) = &self.sasl {
            hints.push(format!(
                "that the broker enables SASL {} and knows user `{}` with this password",
                sasl.mechanism, sasl.username
            ));
        }
        hints.join("; ")
    }
}

fn readable(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .map(drop)
        .with_context(|| format!("cannot read the TLS file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(config: &ClientConfig) -> Vec<(String, String)> {
        let mut pairs: Vec<_> = config
            .config_map()
            .into_iter()
            .filter(|(k, _)| *k != "sasl.password")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        pairs.sort();
        pairs
    }

    fn env(pairs: &[(&str, &str)]) -> KafkaSecurityArgs {
        let mut args = KafkaSecurityArgs::default();
        for (key, value) in pairs {
            let value = Some(value.to_string());
            match *key {
                "protocol" => args.kafka_security_protocol = value,
                "mechanism" => args.kafka_sasl_mechanism = value,
                "username" => args.kafka_sasl_username = value,
                "password" => args.kafka_sasl_password = value,
                "ca" => args.kafka_ssl_ca_location = value.map(PathBuf::from),
                _ => unreachable!("{key}"),
            }
        }
        args
    }

    #[test]
    fn sasl_ssl_with_scram_reaches_librdkafka_as_its_own_settings() {
        let ca = std::env::temp_dir().join("cdrflow-security-test-ca.pem");
        std::fs::write(&ca, "not checked here").unwrap();
        let cluster = Cluster::resolve(
            Some("broker:9094"),
            &env(&[
                ("protocol", "sasl_ssl"),
                ("mechanism", "scram-sha-512"),
                ("username", "cdrflow"),
                ("password", "s3cret"),
                ("ca", ca.to_str().unwrap()),
            ]),
            &KafkaFileSettings::default(),
        )
        .unwrap();
        let expected: Vec<(String, String)> = [
            ("bootstrap.servers", "broker:9094"),
            ("client.id", "cdrflow"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "cdrflow"),
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.location", ca.to_str().unwrap()),
            ("ssl.endpoint.identification.algorithm", "https"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = cluster.client_config();
        assert_eq!(settings(&config), expected);
        assert_eq!(config.get("sasl.password"), Some("s3cret"));
        assert!(!format!("{cluster:?}").contains("s3cret"));
    }

    #[test]
    fn flags_override_the_config_file_field_by_field() {
        let file = KafkaFileSettings {
            bootstrap: Some("from-file:9092".into()),
            security_protocol: Some("SASL_PLAINTEXT".into()),
            sasl_mechanism: Some("PLAIN".into()),
            sasl_username: Some("file-user".into()),
            sasl_password: Some("file-password".into()),
            ..KafkaFileSettings::default()
        };
        let cluster = Cluster::resolve(None, &env(&[("username", "flag-user")]), &file).unwrap();
        let config = cluster.client_config();
        assert_eq!(config.get("bootstrap.servers"), Some("from-file:9092"));
        assert_eq!(config.get("sasl.username"), Some("flag-user"));
        assert_eq!(config.get("sasl.password"), Some("file-password"));
        assert_eq!(config.get("ssl.ca.location"), None);
    }

    #[test]
    fn tls_without_a_ca_file_probes_the_system_store() {
        let cluster = Cluster::resolve(
            None,
            &env(&[("protocol", "SSL")]),
            &KafkaFileSettings::default(),
        )
        .unwrap();
        assert_eq!(
            cluster.client_config().get("ssl.ca.location"),
            Some("probe")
        );
    }

    #[test]
    fn contradictory_or_incomplete_settings_say_what_to_set() {
        let refused = |pairs: &[(&str, &str)]| {
            Cluster::resolve(None, &env(pairs), &KafkaFileSettings::default())
                .unwrap_err()
                .to_string()
        };
        assert!(refused(&[("protocol", "SASL_SSL")]).contains("KAFKA_SASL_MECHANISM"));
        assert!(
            refused(&[("protocol", "SASL_SSL"), ("mechanism", "GSSAPI")])
                .contains("unsupported SASL mechanism `GSSAPI`")
        );
        assert!(refused(&[("protocol", "SASL_SSL"), ("mechanism", "PLAIN")])
            .contains("KAFKA_SASL_USERNAME"));
        assert!(refused(&[("username", "u"), ("password", "p")])
            .contains("set KAFKA_SECURITY_PROTOCOL to SASL_SSL"));
        assert!(
            refused(&[("ca", "/nonexistent.pem")]).contains("set KAFKA_SECURITY_PROTOCOL to SSL")
        );
        assert!(refused(&[("protocol", "SSL"), ("ca", "/nonexistent.pem")])
            .contains("cannot read the TLS file /nonexistent.pem"));
        assert!(refused(&[("protocol", "TLS")]).contains("use PLAINTEXT, SSL"));
    }
}
