//! PostgreSQL over TLS (issue 17): the local server with `ssl = on` and
//! certificates made by `openssl` here; `sslmode` with libpq's meanings.

mod common;

use std::process::Command;

use common::tls::certificates;
use common::{add_user, cdrflow, http_get, port_in, postgres_database, spawn_until, temp_dir};

/// Turns TLS on in the local server with our certificate for the test's
/// life, then back to the server's own settings.
struct ServerTls {
    admin: postgres::Client,
}

impl ServerTls {
    fn enable(dir: &std::path::Path) -> ServerTls {
        // The server reads its key as its own user, with no access for others.
        let status = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::set_permissions(
            dir.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let mut admin = postgres::Client::connect(
            "postgres://postgres@127.0.0.1:5432/postgres",
            postgres::NoTls,
        )
        .expect("PostgreSQL on 127.0.0.1:5432");
        let quote = |p: &std::path::Path| p.display().to_string().replace('\'', "''");
        // One statement each: ALTER SYSTEM refuses to run in a transaction block.
        for statement in [
            format!(
                "ALTER SYSTEM SET ssl_cert_file = '{}'",
                quote(&dir.join("server.crt"))
            ),
            format!(
                "ALTER SYSTEM SET ssl_key_file = '{}'",
                quote(&dir.join("server.key"))
            ),
            "ALTER SYSTEM SET ssl = on".to_string(),
            "SELECT pg_reload_conf()".to_string(),
        ] {
            admin.batch_execute(&statement).unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let mut fresh = postgres::Client::connect(
                "postgres://postgres@127.0.0.1:5432/postgres",
                postgres::NoTls,
            )
            .unwrap();
            // Debian's server may run TLS already (a snakeoil certificate):
            // wait for ours.
            let on: String = fresh.query_one("SHOW ssl", &[]).unwrap().get(0);
            let cert: String = fresh.query_one("SHOW ssl_cert_file", &[]).unwrap().get(0);
            if on == "on" && cert == dir.join("server.crt").display().to_string() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not turn TLS on"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        ServerTls { admin }
    }
}

impl Drop for ServerTls {
    fn drop(&mut self) {
        for statement in [
            "ALTER SYSTEM RESET ssl",
            "ALTER SYSTEM RESET ssl_cert_file",
            "ALTER SYSTEM RESET ssl_key_file",
            "SELECT pg_reload_conf()",
        ] {
            let _ = self.admin.batch_execute(statement);
        }
    }
}

#[test]
fn sslmode_verifies_the_server_as_libpq_does_and_wrong_certificates_are_refused() {
    // Outside the target dir: the server's user must reach the files.
    let dir = std::path::PathBuf::from(format!("/tmp/cdrflow-pg-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let _tls = ServerTls::enable(&dir);

    let work = temp_dir("pg-tls");
    let input = work.join("cdrs.jsonl");
    std::fs::write(
        &input,
        "{\"cdr_id\":\"t1\",\"msisdn\":\"0821234567\",\"start_time\":\"2024-03-02T10:00:00Z\",\"call_type\":\"voice\",\"call_duration_sec\":60}\n",
    )
    .unwrap();
    let database = postgres_database("tls");
    // A password the server does not need (trust) but that must never be printed.
    let secret = "pw-never-printed-3141";
    let url = |host: &str, query: &str| {
        database.replace("postgres@127.0.0.1", &format!("postgres:{secret}@{host}")) + "?" + query
    };
    let ca = dir.join("ca.pem").display().to_string();
    let wrong = dir.join("wrong-ca.pem").display().to_string();
    let with = |url: &str, args: &[&str]| {
        let output = cdrflow()
            .args(["--store", url])
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!text.contains(secret), "the password was printed:\n{text}");
        (output.status.success(), text)
    };

    // verify-full: the chain and the host (the certificate names 127.0.0.1).
    let full = url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let (ok, text) = with(&full, &["process", input.to_str().unwrap()]);
    assert!(ok, "{text}");
    let (ok, text) = with(
        &full,
        &["usage", "0821234567", "--date", "2024-03-02", "--json"],
    );
    assert!(ok && text.contains("\"duration_sec\":60"), "{text}");

    // Refused or accepted as libpq would, saying why and what to check.
    let cases: [(&str, &str, String, bool, &[&str]); 6] = [
        (
            "a certificate from another CA",
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={wrong}"),
            false,
            &["certificate", "sslrootcert"],
        ),
        (
            "another CA, verify-ca",
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={wrong}"),
            false,
            &[],
        ),
        (
            "the certificate is not for `localhost`",
            "localhost",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            false,
            &[],
        ),
        (
            "verify-ca ignores the name",
            "localhost",
            format!("sslmode=verify-ca&sslrootcert={ca}"),
            true,
            &[],
        ),
        (
            "require encrypts without checking",
            "127.0.0.1",
            "sslmode=require".to_string(),
            true,
            &[],
        ),
        (
            "verify-full without a CA is explained",
            "127.0.0.1",
            "sslmode=verify-full".to_string(),
            false,
            &["sslrootcert=/path/to/ca.pem"],
        ),
    ];
    for (what, host, query, accepted, mentions) in cases {
        let (ok, text) = with(&url(host, &query), &["export", "summaries"]);
        assert_eq!(ok, accepted, "{what}: {text}");
        for mention in mentions {
            assert!(text.contains(mention), "{what}: no `{mention}` in {text}");
        }
    }

    // Secrets from a file, and a config file that others can read is warned about.
    let secret_file = work.join("database-url");
    std::fs::write(&secret_file, format!("{full}\n")).unwrap();
    let output = cdrflow()
        .env("DATABASE_URL_FILE", &secret_file)
        .args(["export", "summaries"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("+27821234567"));
    let config = work.join("cdrflow.toml");
    std::fs::write(&config, format!("store = \"{full}\"\n")).unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (ok, text) = {
        let output = cdrflow()
            .arg("--config")
            .arg(&config)
            .args(["export", "summaries"])
            .output()
            .unwrap();
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    assert!(
        ok && text.contains("readable by others") && !text.contains(secret),
        "{text}"
    );
    let help = cdrflow()
        .env("DATABASE_URL", &full)
        .args(["process", "--help"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&help.stdout).contains(secret),
        "--help shows no secret"
    );

    // The sessions really are encrypted: the server says so of a running
    // `cdrflow serve`'s pooled connection.
    add_user(&work, "alice", "correct horse");
    let mut port = None;
    let _server = spawn_until(
        cdrflow().arg("--data-dir").arg(&work).args([
            "--store",
            &full,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ]),
        std::time::Duration::from_secs(20),
        |line| {
            port = line
                .contains("cdrflow serve: dashboard on")
                .then(|| port_in(line))
                .flatten();
            port.is_some()
        },
    );
    assert_eq!(http_get(port.unwrap(), "/ready", None).0, 200);
    let db = database.rsplit('/').next().unwrap().to_string();
    let mut admin = postgres::Client::connect(
        "postgres://postgres@127.0.0.1:5432/postgres",
        postgres::NoTls,
    )
    .unwrap();
    let sessions: Vec<bool> = admin
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = $1",
            &[&db],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !sessions.is_empty() && sessions.iter().all(|&ssl| ssl),
        "{sessions:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
