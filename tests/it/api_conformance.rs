//! The API against its own `/openapi.json`: `shopscribe serve` (the binary, on a real socket,
//! offline writer, the demo's project and data) fuzzed by schemathesis with every check
//! (status codes, content types, response schemas, schema-valid requests accepted and invalid
//! ones rejected, auth, unsupported methods), bounded in examples and time. Needs
//! `schemathesis` on the PATH (`pip install schemathesis`; `.ci/run` installs it): missing, the
//! test fails.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "conformance-token-0123456789abcdef";
/// The whole schemathesis run may take this long; it is a failure beyond.
const BUDGET: Duration = Duration::from_secs(150);

/// A child process killed if the test fails before stopping it.
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

#[test]
fn the_api_conforms_to_its_openapi_document() {
    let version = Command::new("schemathesis").arg("--version").output();
    let version = match version {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => panic!(
            "schemathesis is required for the API conformance test: python3 -m pip install schemathesis (.ci/run installs it)"
        ),
    };
    assert!(
        version.contains("version 4."),
        "schemathesis 4.x is expected (its CLI flags changed in 4.0): {version}"
    );
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
    // An entity that exists, so the entity route is fuzzed past its 404.
    let key = std::fs::read_dir(project.join("site/domain_summaries"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json").map(str::to_string)
        })
        .min()
        .expect("the demo published domain pages");

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = Server(
        Command::new(bin)
            .args(["serve", "--project"])
            .arg(&project)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .env("SHOPSCRIBE_API_TOKENS", format!("fuzz:write:{TOKEN}"))
            .env("SHOPSCRIBE_LLM_PROVIDER", "offline")
            .env_remove("OPENAI_API_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the server never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[[operations]]\ninclude-path = \"/v1/jobs/{{job}}/entities/{{key}}\"\n\
             parameters = {{ \"path.job\" = \"domain_summaries\", \"path.key\" = \"{key}\" }}\n"
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut fuzz = Command::new("schemathesis")
        .arg("--config-file")
        .arg(&config)
        .arg("--no-color")
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--checks", "all"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--max-examples", "40", "--workers", "1", "--seed", "13"])
        .args(["--request-timeout", "30"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(s) = fuzz.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > BUDGET {
            let _ = fuzz.kill();
            panic!("schemathesis took longer than {BUDGET:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    fuzz.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    fuzz.stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    eprintln!(
        "schemathesis ({version}) took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(status.success(), "schemathesis found problems:\n{out}");
    assert!(out.contains("8 selected / 8 total"), "{out}");

    // And the server stops cleanly after the fuzzing.
    let mut server = server;
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
            t.elapsed() < Duration::from_secs(30),
            "the server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}
