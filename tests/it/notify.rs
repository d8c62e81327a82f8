//! Notifications against a local server: the Telegram Bot API call and the webhook payload after
//! a run, and a failing endpoint that must not fail the run.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use std::process::Command;
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

async fn server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    async fn telegram(
        State(s): State<Seen>,
        Path(token): Path<String>,
        body: String,
    ) -> StatusCode {
        s.lock().unwrap().push((
            format!("telegram:{token}"),
            serde_json::from_str(&body).unwrap_or(Value::Null),
        ));
        StatusCode::OK
    }
    async fn hook(State(s): State<Seen>, body: String) -> StatusCode {
        s.lock().unwrap().push((
            "hook".into(),
            serde_json::from_str(&body).unwrap_or(Value::Null),
        ));
        StatusCode::OK
    }
    async fn broken() -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }
    let app = Router::new()
        .route("/{bot}/sendMessage", post(telegram))
        .route("/hook", post(hook))
        .route("/broken", post(broken))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, seen)
}

fn shopscribe(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shopscribe"))
        .args(args)
        .env("TELEGRAM_BOT_TOKEN", "123:secret-token")
        .env_remove("OPENAI_API_KEY")
        .env_remove("TELEGRAM_CHAT_ID")
        .current_dir(dir)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_and_webhook_get_the_figures_and_a_broken_one_changes_nothing() {
    let (url, seen) = server().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    assert!(
        shopscribe(
            tmp.path(),
            &["demo", "--dir", dir.to_str().unwrap(), "--domains", "30"]
        )
        .status
        .success()
    );
    let toml = dir.join("shopscribe.toml");
    let base = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        format!("{base}\n[notify]\ntelegram_api = \"{url}\"\ntelegram_chat_id = \"-100777\"\nwebhook_url = \"{url}/hook\"\n"),
    )
    .unwrap();
    let out = shopscribe(&dir, &["run", "domain_summaries", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen_now = seen.lock().unwrap().clone();
    assert_eq!(seen_now.len(), 2, "{seen_now:?}");
    let (path, tg) = seen_now
        .iter()
        .find(|(p, _)| p.starts_with("telegram"))
        .unwrap();
    assert_eq!(path, "telegram:bot123:secret-token");
    assert_eq!(tg["chat_id"], "-100777");
    let text = tg["text"].as_str().unwrap();
    assert!(
        text.contains("generated 30")
            && text.contains("succeeded")
            && text.contains("/domain_summaries/index.html"),
        "{text}"
    );
    let (_, hook) = seen_now.iter().find(|(p, _)| p == "hook").unwrap();
    assert_eq!(hook["text"], tg["text"], "Slack-compatible text");
    assert_eq!(hook["run"]["generated"], 30);
    assert_eq!(hook["run"]["status"], "succeeded");
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        !logs.contains("secret-token"),
        "the bot token never reaches a log: {logs}"
    );

    // A webhook that answers 500: logged, and the run's result and exit code are unchanged.
    std::fs::write(
        &toml,
        format!("{base}\n[notify]\nwebhook_url = \"{url}/broken\"\n"),
    )
    .unwrap();
    let out = shopscribe(&dir, &["run", "domain_summaries", "--force"]);
    assert!(out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.contains("notification refused; the run is not affected"),
        "{logs}"
    );
}
