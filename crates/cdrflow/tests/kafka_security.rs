//! Kafka over TLS and SASL (issue 17), against real parts:
//! - TLS: Tansu behind a socat TLS terminator with certificates made by
//!   `openssl` here (Tansu 0.6 takes `--cert/--key` but serves plaintext),
//!   requiring client certificates (mutual TLS).
//! - SASL/SCRAM-SHA-256 and -512: Tansu's own, on its SQLite storage (its
//!   memory storage ignores SCRAM credentials; its PostgreSQL storage needs a
//!   schema the crate does not ship). Tansu implements no SASL PLAIN, so PLAIN
//!   is shown reaching the broker's handshake, which refuses it by name.
//!   librdkafka's mock cluster has neither TLS nor SASL.
//!
//! Every output of the runs — logs, `--help`, `/metrics`, the dashboard's
//! data — is searched for the passwords.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tls::certificates;
use common::{
    assert_matches_truth, cdrflow, export_with, free_port, http_get, port_in, run_ok,
    seed_000_truth, tansu, temp_dir, Broker, KillOnDrop, TlsTerminator,
};

/// Seed-000 data CDRs written to a file (the ground truth) and, identically,
/// produced to Kafka with `security` as environment variables.
fn produce(dir: &Path, bootstrap: &str, security: &[(&str, String)]) -> (Vec<String>, String) {
    let args = [
        "generate",
        "--format",
        "cdr-data",
        "--count",
        "3000",
        "--subscribers",
        "200",
        "--days",
        "2",
        "--start",
        "2024-05-01",
        "--seed",
        "31",
        "--faults",
        "dup=0.03",
        "--partitions",
        "3",
    ];
    let file = dir.join("cdrs.jsonl");
    run_ok(cdrflow().args(args).arg("--output").arg(&file));
    let lines = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let output = run_ok(
        cdrflow()
            .args(args)
            .args(["--to", "kafka", "--bootstrap", bootstrap])
            .envs(security.iter().map(|(k, v)| (k, v))),
    );
    (lines, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// `process --from kafka` into the data dir's SQLite store until idle; its stderr.
fn consume(dir: &Path, bootstrap: &str, security: &[(&str, String)]) -> String {
    let output = run_ok(
        cdrflow()
            .arg("--data-dir")
            .arg(dir)
            .args(["process", "--from", "kafka", "--bootstrap", bootstrap])
            .args(["--idle-exit-secs", "4", "--no-metrics"])
            .envs(security.iter().map(|(k, v)| (k, v)))
            .env("CDRFLOW_LOG", "debug"),
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Starts a consumer that cannot get in, and returns the first report of it
/// (it keeps retrying; the report must come within seconds).
fn refusal(dir: &Path, bootstrap: Option<&str>, security: &[(&str, String)]) -> String {
    let log = dir.join(format!("refused-{}.log", free_port()));
    let started = Instant::now();
    let _member = KillOnDrop(
        cdrflow()
            .arg("--data-dir")
            .arg(dir)
            .args(["process", "--from", "kafka", "--no-metrics"])
            .args(bootstrap.map(|b| ["--bootstrap", b]).into_iter().flatten())
            .envs(security.iter().map(|(k, v)| (k, v)))
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let line = wait_for_line(
        &log,
        |l| l.contains("cannot reach the Kafka broker"),
        Duration::from_secs(15),
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "reported after {:?}",
        started.elapsed()
    );
    line
}

/// Polls `log` until a line matches; panics with the log after `within`.
fn wait_for_line(log: &Path, matches: impl Fn(&str) -> bool, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| matches(l)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no expected line within {within:?} in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn summaries(
    dir: &Path,
) -> std::collections::BTreeMap<
    (String, String, String, String),
    std::collections::BTreeMap<String, String>,
> {
    export_with(&["--data-dir", dir.to_str().unwrap()])
}

#[test]
fn kafka_over_mutual_tls_verifies_the_broker_and_refuses_a_wrong_ca() {
    let dir = temp_dir("kafka-tls");
    certificates(&dir);
    let (broker_port, tls_port) = (free_port(), free_port());
    let _broker = Broker::launch(broker_port, tls_port, "memory://tansu/", &[]);
    let _tls = TlsTerminator::start(
        tls_port,
        broker_port,
        &dir.join("server.crt"),
        &dir.join("server.key"),
        Some(&dir.join("ca.pem")),
    );
    let bootstrap = format!("127.0.0.1:{tls_port}");
    let path = |name: &str| dir.join(name).display().to_string();
    let mutual = [
        ("KAFKA_SECURITY_PROTOCOL", "SSL".to_string()),
        ("KAFKA_SSL_CA_LOCATION", path("ca.pem")),
        ("KAFKA_SSL_CERTIFICATE_LOCATION", path("client.crt")),
        ("KAFKA_SSL_KEY_LOCATION", path("client.key")),
    ];

    // Through TLS both ways: every record counted once.
    let (lines, _) = produce(&dir, &bootstrap, &mutual);
    consume(&dir, &bootstrap, &mutual);
    assert_matches_truth(&summaries(&dir), &seed_000_truth(&lines));

    // A broker certificate from another CA: refused, saying so and what to set.
    let mut wrong_ca = mutual.clone();
    wrong_ca[1].1 = path("wrong-ca.pem");
    let said = refusal(&dir, Some(&bootstrap), &wrong_ca);
    assert!(said.contains("certificate verify failed"), "{said}");
    assert!(said.contains("KAFKA_SSL_CA_LOCATION"), "{said}");

    // No client certificate: the broker's side refuses the handshake.
    let said = refusal(&dir, Some(&bootstrap), &mutual[..2]);
    assert!(said.contains(&bootstrap) && said.contains("SSL"), "{said}");

    // Plaintext to a TLS listener: reported, with the protocol to check.
    let said = refusal(&dir, Some(&bootstrap), &[]);
    assert!(said.contains("KAFKA_SECURITY_PROTOCOL"), "{said}");

    // The one-shot generator gives up with the reason instead of retrying forever.
    let output = cdrflow()
        .args([
            "generate",
            "--count",
            "1",
            "--to",
            "kafka",
            "--bootstrap",
            &bootstrap,
        ])
        .envs(wrong_ca.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && text.contains("certificate verify failed"),
        "{text}"
    );
}

/// Tansu's SQLite storage in `dir` with SCRAM user `user` / `password` (both
/// mechanisms), and the port its broker listens on.
fn scram_storage(dir: &Path, user: &str, password: &str) -> (String, u16) {
    let relative = dir.strip_prefix(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let storage = format!("sqlite://{}", relative.join("tansu.db").display());
    let port = free_port();
    {
        let _open = Broker::launch(port, port, &storage, &[]);
        for mechanism in ["scram256", "scram512"] {
            let out = Command::new(tansu())
                .args([
                    "user",
                    "create",
                    "--broker",
                    &format!("tcp://127.0.0.1:{port}"),
                ])
                .args([user, password, "--mechanism", mechanism])
                .stdout(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "tansu user create: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    (storage, port)
}

#[test]
fn sasl_scram_logs_in_with_either_mechanism_and_no_password_is_ever_shown() {
    let dir = temp_dir("kafka-scram");
    let password = "scram-secret-2718";
    let wrong_password = "wrong-secret-1618";
    let (storage, port) = scram_storage(&dir, "cdrflow", password);
    let broker = Broker::launch(port, port, &storage, &["--authentication"]);
    let secret_file = dir.join("kafka-password");
    std::fs::write(&secret_file, format!("{password}\n")).unwrap();
    let scram = |mechanism: &str| {
        vec![
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT".to_string()),
            ("KAFKA_SASL_MECHANISM", mechanism.to_string()),
            ("KAFKA_SASL_USERNAME", "cdrflow".to_string()),
        ]
    };
    let mut outputs = Vec::new();

    // SCRAM-SHA-512 with the password from a file, then SCRAM-SHA-256 from the environment.
    let mut by_file = scram("SCRAM-SHA-512");
    by_file.push((
        "KAFKA_SASL_PASSWORD_FILE",
        secret_file.display().to_string(),
    ));
    let (lines, said) = produce(&dir, &broker.bootstrap, &by_file);
    outputs.push(said);
    let mut by_env = scram("SCRAM-SHA-256");
    by_env.push(("KAFKA_SASL_PASSWORD", password.to_string()));
    outputs.push(consume(&dir, &broker.bootstrap, &by_env));
    assert_matches_truth(&summaries(&dir), &seed_000_truth(&lines));

    // A wrong password: refused within seconds, saying what to check.
    let mut wrong = scram("SCRAM-SHA-256");
    wrong.push(("KAFKA_SASL_PASSWORD", wrong_password.to_string()));
    let said = refusal(&dir, Some(&broker.bootstrap), &wrong);
    assert!(
        said.contains("SASL authentication error") && said.contains("user `cdrflow`"),
        "{said}"
    );
    outputs.push(said);

    // PLAIN reaches the broker's SASL handshake (Tansu hangs up on it).
    let mut plain = scram("PLAIN");
    plain.push(("KAFKA_SASL_PASSWORD", password.to_string()));
    let said = refusal(&dir, Some(&broker.bootstrap), &plain);
    assert!(
        said.contains("SASL PLAIN mechanism handshake failed"),
        "{said}"
    );
    outputs.push(said);

    // The whole job through SASL_SSL (SCRAM inside TLS), serving its
    // dashboard: neither the dashboard's data nor /metrics nor any log line
    // shows the password.
    drop(broker);
    certificates(&dir);
    let tls_port = free_port();
    let _broker = Broker::launch(port, tls_port, &storage, &["--authentication"]);
    let _tls = TlsTerminator::start(
        tls_port,
        port,
        &dir.join("server.crt"),
        &dir.join("server.key"),
        None,
    );
    by_env[0].1 = "SASL_SSL".to_string();
    by_env.push((
        "KAFKA_SSL_CA_LOCATION",
        dir.join("ca.pem").display().to_string(),
    ));
    let log = dir.join("run.log");
    let _run = KillOnDrop(
        cdrflow()
            .arg("--data-dir")
            .arg(dir.join("run"))
            .args([
                "run",
                "--kafka",
                "--count",
                "2000",
                "--seed",
                "9",
                "--keep-serving",
            ])
            .args(["--bootstrap", &format!("127.0.0.1:{tls_port}")])
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .envs(by_env.iter().map(|(k, v)| (k, v)))
            .env("CDRFLOW_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_line(
        &log,
        |l| l.contains("still serving"),
        Duration::from_secs(120),
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let port = text
        .lines()
        .find(|l| l.contains("live dashboard on"))
        .and_then(port_in)
        .unwrap();
    let metrics_port = text
        .lines()
        .find(|l| l.contains("Prometheus metrics on"))
        .and_then(port_in)
        .unwrap();
    let demo = text
        .split("password `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .map(|p| format!("demo:{p}"))
        .expect("a demo password is printed");
    let (status, overview) = http_get(port, "/overview", Some(&demo));
    assert_eq!(status, 200, "{overview}");
    let counted: serde_json::Value = serde_json::from_str(&overview).unwrap();
    assert!(
        counted["counters"]["records_in"].as_u64().unwrap() >= 2000,
        "{overview}"
    );
    let (status, metrics) = http_get(metrics_port, "/metrics", Some(&demo));
    assert_eq!(status, 200);
    assert!(metrics.contains("cdrflow_records_in_total"), "{metrics}");
    outputs.extend([text, overview, metrics, http_get(port, "/", None).1]);

    let help = cdrflow()
        .args(["process", "--help"])
        .envs(by_env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    assert!(help.contains("KAFKA_SASL_PASSWORD_FILE"), "{help}");
    outputs.push(help);

    for output in &outputs {
        assert!(
            !output.contains(password),
            "the password was shown:\n{output}"
        );
        assert!(
            !output.contains(wrong_password),
            "the wrong password was shown:\n{output}"
        );
    }
}

#[test]
fn a_config_file_with_a_kafka_password_readable_by_others_draws_a_warning() {
    let dir = temp_dir("kafka-config-secret");
    let config = dir.join("cdrflow.toml");
    let password = "config-secret-1414";
    let address = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap = \"{address}\"\nsecurity_protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"cdrflow\"\nsasl_password = \"{password}\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let said = refusal(
        &dir,
        None,
        &[("CDRFLOW_CONFIG", config.display().to_string())],
    );
    // The address and the mechanism came from the file's [kafka] table.
    assert!(
        said.contains(&address) && said.contains("SASL SCRAM-SHA-512"),
        "{said}"
    );
    let log = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("refused-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect::<String>();
    assert!(
        log.contains("holds a Kafka password and is readable by others"),
        "{log}"
    );
    assert!(!log.contains(password), "{log}");
}
