//! `shopscribe serve` as a process (the binary on a real socket): a SIGTERM is not held up by
//! slow or idle clients, and an internal error's details are in the server's log under the
//! request id the client got — not in the answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "process-token-0123456789abcdef";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One request on a new connection; the raw answer.
fn request(port: u16, text: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(text.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn sigterm_is_not_held_up_by_slow_clients_and_internal_errors_go_to_the_log() {
    let bin = env!("CARGO_BIN_EXE_shopscribe");
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("demo");
    let demo = Command::new(bin)
        .args(["demo", "--dir"])
        .arg(&project)
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    // Long client timeouts: the stop must not wait for them.
    let toml = project.join("shopscribe.toml");
    let config = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        format!(
            "{config}\n[serve]\nheader_read_timeout_seconds = 120\nidle_timeout_seconds = 300\n"
        ),
    )
    .unwrap();
    // The jobs' source table disappears.
    let db = project.join("shopscribe.db");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store =
            shopscribe::store::sqlite::SqliteStore::open(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
        sqlx::query("DROP TABLE domain_monthly")
            .execute(store.pool())
            .await
            .unwrap();
    });

    let port = free_port();
    let log = dir.path().join("serve.log");
    let mut server = Server(
        Command::new(bin)
            .args(["serve", "--project"])
            .arg(&project)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .env("SHOPSCRIBE_API_TOKENS", format!("reader:read:{TOKEN}"))
            .env("SHOPSCRIBE_LLM_PROVIDER", "offline")
            .env_remove("OPENAI_API_KEY")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the server never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let answer = request(
        port,
        &format!(
            "GET /v1/jobs/domain_summaries/entities/anything.example HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {TOKEN}\r\nX-Request-Id: probe-4711\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"]["code"], "source_unavailable", "{v}");
    assert_eq!(v["error"]["request_id"], "probe-4711", "{v}");
    for leak in [".sql", "domain_monthly", "no such table", "SELECT"] {
        assert!(!body.contains(leak), "`{leak}` in {body}");
    }

    // A client halfway through its headers and one idle kept-alive connection.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(idle.read(&mut buf).unwrap() > 0);
    std::thread::sleep(Duration::from_millis(200));

    let ok = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let t = Instant::now();
    let exit = loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "SIGTERM waited for slow clients (header_read_timeout_seconds = 120)"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");

    // The details are in the log, under the client's request id.
    let log = std::fs::read_to_string(&log).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("probe-4711") && l.contains("no such table"))
        .unwrap_or_else(|| panic!("no log line with the request id and the error:\n{log}"));
    assert!(line.contains("domain_monthly"), "{line}");
}
