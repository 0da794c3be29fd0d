//! Helpers shared by the integration tests: run the real binary, in a fresh data dir.

#![allow(dead_code)]

pub mod browser;
pub mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn cdrflow() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cdrflow"));
    // Isolate from the developer's environment and config file.
    for var in [
        "CDRFLOW_DATA_DIR",
        "CDRFLOW_CONFIG",
        "CDRFLOW_TARIFF",
        "DEFAULT_COUNTRY_CODE",
        "WAK_PER_ZAR",
        "BYTES_PER_GB",
        "CDRFLOW_BATCH_SIZE",
        "DATABASE_URL",
        "DATABASE_URL_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("CDRFLOW_LOG", "warn");
    // Any free port: tests run in parallel and must not fight over 8000.
    cmd.env("CDRFLOW_METRICS_LISTEN", "127.0.0.1:0");
    cmd
}

/// Adds API user `name` with `password` to the users file of `data_dir`.
pub fn add_user(data_dir: &Path, name: &str, password: &str) {
    add_user_with(data_dir, name, password, &[]);
}

/// Adds API user `name` with `extra` arguments (`--role`, `--msisdn`).
pub fn add_user_with(data_dir: &Path, name: &str, password: &str, extra: &[&str]) {
    use std::io::Write;
    let mut add = cdrflow()
        .arg("--data-dir")
        .arg(data_dir)
        .args(["user", "add", name])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(add.stdin.take().unwrap(), "{password}").unwrap();
    assert!(add.wait().unwrap().success(), "cdrflow user add {name}");
}

/// A free TCP port on 127.0.0.1, for servers that cannot be told to pick one
/// (Tansu). Free when asked, so bind it soon after.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The port in the first `http://127.0.0.1:PORT` of `line`.
pub fn port_in(line: &str) -> Option<u16> {
    let rest = line.split("http://127.0.0.1:").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Spawns `command` with stderr piped and hands its stderr lines to `seen`
/// until it returns true; fails after `within`. The child keeps running.
pub fn spawn_until(
    command: &mut Command,
    within: std::time::Duration,
    mut seen: impl FnMut(&str) -> bool,
) -> KillOnDrop {
    use std::io::BufRead;
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let child = KillOnDrop(child);
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if seen(&line) => return child,
            Ok(_) => {}
            Err(_) => panic!("{command:?} did not print what was expected within {within:?}"),
        }
    }
}

/// Spawns `cdrflow ... serve` (its arguments in `command`, listening on
/// port 0) and waits for its dashboard line; returns it and its port.
pub fn serve_on_free_port(command: &mut Command) -> (KillOnDrop, u16) {
    let mut port = None;
    let server = spawn_until(command, std::time::Duration::from_secs(20), |line| {
        port = line
            .contains("cdrflow serve: dashboard on")
            .then(|| port_in(line))
            .flatten();
        port.is_some()
    });
    (server, port.expect("the dashboard line names the port"))
}

/// A child process killed when the test ends, pass or fail.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills these processes if the test fails before it has stopped them
/// (children a test waits for by hand, so that a failed assertion leaves no
/// consumer running on after the test).
pub struct KillIfPanicking(pub Vec<u32>);

impl Drop for KillIfPanicking {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for pid in &self.0 {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// GET `path` over plain HTTP, optionally with Basic credentials (`user:password`); returns (status, body).
pub fn http_get(port: u16, path: &str, credentials: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = credentials.map_or(String::new(), |c| {
        use base64::Engine;
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(c)
        )
    });
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status: u16 = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// GET `path` and parse the body as JSON.
pub fn http_get_json(port: u16, path: &str, credentials: Option<&str>) -> (u16, serde_json::Value) {
    let (status, body) = http_get(port, path, credentials);
    (
        status,
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: body is not JSON ({e}): {body}")),
    )
}

/// A fresh, empty directory under the target dir, unique per test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let output = cmd.output().expect("cdrflow runs");
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `export summaries` as rows keyed by (kind, msisdn, date, type) → the other columns by name.
pub fn export(
    data_dir: &Path,
) -> BTreeMap<(String, String, String, String), BTreeMap<String, String>> {
    export_with(&["--data-dir", data_dir.to_str().unwrap()])
}

pub fn export_with(
    store_args: &[&str],
) -> BTreeMap<(String, String, String, String), BTreeMap<String, String>> {
    let output =
        run_ok(
            cdrflow()
                .args(store_args)
                .args(["export", "summaries", "--format", "csv"]),
        );
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let mut rows = BTreeMap::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{line}");
        let row: BTreeMap<String, String> = header
            .iter()
            .zip(&cells)
            .map(|(h, c)| (h.to_string(), c.to_string()))
            .collect();
        let key = (
            row["kind"].clone(),
            row["msisdn"].clone(),
            row["date"].clone(),
            row["type"].clone(),
        );
        assert!(
            rows.insert(key, row).is_none(),
            "duplicate summary row: {line}"
        );
    }
    rows
}

/// Runs `sql` in DuckDB — the `duckdb` module of the `python3` on PATH
/// (scripts/test installs it in target/tools-venv) — and returns its rows
/// as CSV lines. A reader of the lake that shares no code with cdrflow.
pub fn duckdb(sql: &str) -> Vec<String> {
    let script = "import csv, sys, duckdb\n\
        out = csv.writer(sys.stdout, lineterminator='\\n')\n\
        out.writerows(duckdb.sql(sys.argv[1]).fetchall())";
    let output = Command::new("python3")
        .args(["-c", script, sql])
        .output()
        .expect("python3 with the duckdb module on PATH (scripts/test installs it)");
    assert!(
        output.status.success(),
        "DuckDB failed on {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// Decimal text (`12.345`, `-0.5`, `7`) as micro-units, computed here.
pub fn micros(text: &str) -> i128 {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (units, fraction) = text.split_once('.').unwrap_or((text, ""));
    assert!(fraction.len() <= 6, "{text}");
    let value = units.parse::<i128>().unwrap() * 1_000_000
        + format!("{fraction:0<6}").parse::<i128>().unwrap();
    if negative {
        -value
    } else {
        value
    }
}

/// Formats micro-units the way the CSV does, computed here without the pipeline's code.
pub fn micros_text(micros: i128) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// A Tansu broker on a free 127.0.0.1 port, stopped on drop. Tests that need
/// it fail (never skip) when the `tansu` binary is missing.
pub struct Broker {
    child: std::process::Child,
    pub bootstrap: String,
}

impl Broker {
    pub fn start() -> Broker {
        let port = free_port();
        Broker::start_advertising(port, port)
    }

    /// A broker that listens on `port` but tells clients to connect to
    /// `advertised_port` (a [`Proxy`] in front of it, say).
    pub fn start_advertising(port: u16, advertised_port: u16) -> Broker {
        Broker::launch(port, advertised_port, "memory://tansu/", &[])
    }

    /// A broker on `storage` (a URL Tansu knows; a `sqlite://` path is
    /// relative to the tests' temporary dir), with more `tansu broker` arguments.
    pub fn launch(port: u16, advertised_port: u16, storage: &str, extra: &[&str]) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised_port}");
        let tansu = tansu();
        let child = Command::new(&tansu)
            .args(["broker", "--storage-engine", storage, "--listener-url", &url, "--advertised-listener-url", &advertised])
            .args(extra)
            .current_dir(env!("CARGO_TARGET_TMPDIR"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the Tansu broker (`{tansu}`; install with `cargo install --locked tansu --features dynostore,postgres,libsql`): {e}"));
        let listening = format!("127.0.0.1:{port}");
        let bootstrap = format!("127.0.0.1:{advertised_port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(&listening).is_ok() {
                return Broker { child, bootstrap };
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("Tansu did not listen on {bootstrap} within 10 s");
    }
}

/// The Tansu binary (`TANSU`, or `tansu` on the PATH).
pub fn tansu() -> String {
    std::env::var("TANSU").unwrap_or_else(|_| "tansu".into())
}

/// A TLS terminator (socat, Debian package `socat`) on a free 127.0.0.1
/// port in front of a plaintext server: Tansu 0.6's own TLS listener is
/// accepted on its command line but not used. With `client_ca`, clients
/// must present a certificate that CA signed (mutual TLS).
pub struct TlsTerminator {
    child: std::process::Child,
    pub port: u16,
}

impl TlsTerminator {
    pub fn start(
        port: u16,
        upstream_port: u16,
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> TlsTerminator {
        let mut listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={}",
            cert.display(),
            key.display()
        );
        match client_ca {
            Some(ca) => listen.push_str(&format!(",verify=1,cafile={}", ca.display())),
            None => listen.push_str(",verify=0"),
        }
        let child = Command::new("socat")
            .arg(listen)
            .arg(format!("TCP:127.0.0.1:{upstream_port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start socat (Debian package socat): {e}"));
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return TlsTerminator { child, port };
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("socat did not listen on 127.0.0.1:{port} within 10 s");
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy in front of a real server that a test can cut — every open
/// connection reset, new ones closed at once — and restore: a network
/// outage between cdrflow and its store or broker, without touching the
/// server other tests share.
pub struct Proxy {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy {
            port,
            cut: Default::default(),
            open: Default::default(),
        };
        let (cut, open, upstream) = (proxy.cut.clone(), proxy.open.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if cut.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut tracked = open.lock().unwrap();
                tracked.push(client.try_clone().unwrap());
                tracked.push(server.try_clone().unwrap());
                drop(tracked);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        proxy
    }

    /// Cuts the link; returns how many open connections it reset.
    pub fn cut(&self) -> usize {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        for stream in open.iter() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        // Each connection is tracked by both of its ends.
        let reset = open.len() / 2;
        open.clear();
        reset
    }

    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A fresh PostgreSQL database on 127.0.0.1:5432; the test fails when the server is unreachable.
pub fn postgres_database(name: &str) -> String {
    let admin_url = std::env::var("CDRFLOW_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("PostgreSQL must be reachable at {admin_url}: {e}"));
    let db = format!("cdrflow_it_{name}_{}", std::process::id());
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    format!("{}/{db}", &admin_url[..admin_url.rfind('/').unwrap()])
}

/// Ground truth for seed-000 lines (data and voice; no malformed records),
/// computed with serde_json and integer arithmetic: a line without a
/// `cdr_id` counts on its own, otherwise the first copy of each
/// (kind, cdr_id) wins. Key (kind, msisdn, date, type) → [up, down, duration, cost micros, records].
pub fn seed_000_truth(lines: &[String]) -> BTreeMap<(String, String, String, String), [i128; 5]> {
    let mut expected: BTreeMap<(String, String, String, String), [i128; 5]> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = if v.get("data_type").is_some() {
            "data"
        } else {
            "voice"
        };
        // A record without an id is a record of its own (its line is unique here).
        let id = v
            .get("cdr_id")
            .and_then(|i| i.as_str())
            .map_or(format!("line {}", seen.len()), str::to_string);
        if !seen.insert((kind, id)) {
            continue;
        }
        let time = v
            .get("event_datetime")
            .or(v.get("start_time"))
            .unwrap()
            .as_str()
            .unwrap();
        let ty = v
            .get("data_type")
            .or(v.get("call_type"))
            .unwrap()
            .as_str()
            .unwrap();
        let key = (
            kind.to_string(),
            e164(v["msisdn"].as_str().unwrap()),
            time[..10].to_string(),
            ty.to_string(),
        );
        let e = expected.entry(key).or_default();
        if kind == "data" {
            let (up, down) = (
                v["up_bytes"].as_i64().unwrap() as i128,
                v["down_bytes"].as_i64().unwrap() as i128,
            );
            e[0] += up;
            e[1] += down;
            // (bytes × 49 / 10^9) ZAR in micro-units = bytes × 49 / 1000, rounded half up.
            e[3] += ((up + down) * 49 * 2 + 1000) / 2000;
        } else {
            let seconds = v["call_duration_sec"].as_i64().unwrap() as i128;
            e[2] += seconds;
            e[3] += (seconds * 1_000_000 * 2 + 60) / 120;
        }
        e[4] += 1;
    }
    expected
}

/// Asserts that `export` (from [`export`]) equals `truth` (from [`seed_000_truth`]).
pub fn assert_matches_truth(
    actual: &BTreeMap<(String, String, String, String), BTreeMap<String, String>>,
    truth: &BTreeMap<(String, String, String, String), [i128; 5]>,
) {
    assert_eq!(actual.len(), truth.len(), "number of summary rows");
    for (key, e) in truth {
        let row = actual
            .get(key)
            .unwrap_or_else(|| panic!("missing summary row {key:?}"));
        let num = |c: &str| row[c].parse::<i128>().unwrap();
        if key.0 == "data" {
            assert_eq!(
                (num("up_bytes"), num("down_bytes")),
                (e[0], e[1]),
                "{key:?}"
            );
        } else {
            assert_eq!(num("duration_sec"), e[2], "{key:?}");
        }
        assert_eq!(row["cost"], micros_text(e[3]), "{key:?}");
        assert_eq!(num("records"), e[4], "{key:?}");
    }
}

/// E.164 the way the generator's spellings need it, written independently of the pipeline.
pub fn e164(raw: &str) -> String {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    match digits.strip_prefix('0') {
        Some(national) if !national.starts_with('0') => format!("+27{national}"),
        _ => format!("+{digits}"),
    }
}

/// `export summaries` of the store at `store_url`.
pub fn export_store(
    store_url: &str,
) -> BTreeMap<(String, String, String, String), BTreeMap<String, String>> {
    export_with(&["--store", store_url])
}

/// Generated seed-000 records (data, then voice) as lines; `args` go to `cdrflow generate`.
pub fn generate_seed_000(dir: &Path, name: &str, args: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    for format in ["cdr-data", "cdr-voice"] {
        let file = dir.join(format!("{name}-{format}.jsonl"));
        run_ok(
            cdrflow()
                .args(["generate", "--format", format])
                .args(args)
                .arg("--output")
                .arg(&file),
        );
        lines.extend(
            std::fs::read_to_string(&file)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
        std::fs::remove_file(&file).unwrap();
    }
    lines
}

/// The dead-letter topic's records: waits for `expected`, then 2 s more for any extra.
pub fn dlq_messages(broker: &Broker, expected: usize) -> Vec<(String, Vec<u8>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use std::time::{Duration, Instant};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "dlq-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("cdr.rejected", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut deadline = Instant::now() + Duration::from_secs(20);
    let mut settling = false;
    while Instant::now() < deadline {
        if out.len() >= expected && !settling {
            settling = true;
            deadline = Instant::now() + Duration::from_secs(2);
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m.headers().expect("DLQ records carry headers");
            let reason = headers
                .iter()
                .find(|h| h.key == "cdrflow.reason")
                .and_then(|h| h.value)
                .unwrap();
            out.push((
                String::from_utf8(reason.to_vec()).unwrap(),
                m.payload().unwrap().to_vec(),
            ));
        }
    }
    out
}
