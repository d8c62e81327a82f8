//! Notifications when a run ends: Telegram (Bot API `sendMessage`) and a generic webhook (JSON
//! with a Slack-compatible `text`). Tokens come from the environment; a failing notification is
//! logged (without its URL, which carries the bot token) and never fails the run.

use crate::config::Project;
use crate::store::{RunFigures, RunStatus};
use serde_json::json;
use std::time::Duration;
use tracing::{info, warn};

/// What to tell: a finished run, or a run that could not finish.
pub enum Event<'a> {
    Finished(Finished<'a>),
    Failed { job: &'a str, error: &'a str },
}

/// The part of a finished run's summary a notification tells (`RunSummary::finished`).
pub struct Finished<'a> {
    pub job: &'a str,
    pub run_id: i64,
    pub status: RunStatus,
    pub figures: &'a RunFigures,
    pub error: Option<&'a str>,
    /// Keys of the entities whose pages this run removed.
    pub removed_keys: &'a [String],
}

/// The message text, the same for every channel.
pub fn text(project: &Project, event: &Event) -> String {
    match event {
        Event::Finished(s) => {
            let f = &s.figures;
            let mark = match s.status {
                RunStatus::Succeeded => "✅",
                RunStatus::Partial => "⚠️",
                _ => "❌",
            };
            let mut t = format!(
                "{mark} shopscribe · {} · `{}` run {} {}\nentities {} · generated {} · skipped {} · failed {}{}\ntokens {} in / {} out · cost {} · {:.1} s\nsite: {}/{}/index.html",
                project.name,
                s.job,
                s.run_id,
                s.status.as_str(),
                f.entities,
                f.generated,
                f.skipped,
                f.failed,
                if f.pending > 0 {
                    format!(" · pending {}", f.pending)
                } else {
                    String::new()
                } + &if f.pages_removed > 0 {
                    format!(" · pages removed {}", f.pages_removed)
                } else {
                    String::new()
                },
                f.tokens_in,
                f.tokens_out,
                crate::config::format_usd(f.cost_usd),
                f.duration_ms as f64 / 1000.0,
                project.publish.base_url,
                s.job
            );
            if let Some(e) = s.error {
                t.push_str(&format!("\nerror: {e}"));
            }
            t
        }
        Event::Failed { job, error } => format!(
            "❌ shopscribe · {} · `{job}` failed\nerror: {error}",
            project.name
        ),
    }
}

/// Sends `event` to every configured channel. Never returns an error: failures are logged.
pub async fn send(project: &Project, event: &Event<'_>) {
    let n = &project.notify;
    let failed = matches!(event, Event::Failed { .. })
        || matches!(event, Event::Finished(s) if s.status != RunStatus::Succeeded);
    if n.only_failures && !failed {
        return;
    }
    let message = text(project, event);
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => return warn!(error = %e, "notification client"),
    };
    if let (Some(token), Some(chat)) = (
        std::env::var(&n.telegram_token_env)
            .ok()
            .filter(|t| !t.is_empty()),
        &n.telegram_chat_id,
    ) {
        let url = format!(
            "{}/bot{token}/sendMessage",
            n.telegram_api.trim_end_matches('/')
        );
        let body = json!({"chat_id": chat, "text": message, "disable_web_page_preview": true});
        deliver(&client, "telegram", &url, &body).await;
    }
    if let Some(url) = n
        .webhook_url_env
        .as_ref()
        .and_then(|v| std::env::var(v).ok())
        .or_else(|| n.webhook_url.clone())
    {
        let run = match event {
            Event::Finished(s) => json!({
                "job": s.job, "run_id": s.run_id, "status": s.status.as_str(),
                "entities": s.figures.entities, "generated": s.figures.generated, "skipped": s.figures.skipped,
                "failed": s.figures.failed, "pending": s.figures.pending, "tokens_in": s.figures.tokens_in,
                "tokens_out": s.figures.tokens_out, "cost_usd": s.figures.cost_usd,
                "duration_ms": s.figures.duration_ms, "error": s.error,
                "pages_removed": s.figures.pages_removed, "removed_keys": s.removed_keys,
                "site": format!("{}/{}/index.html", project.publish.base_url, s.job),
            }),
            Event::Failed { job, error } => {
                json!({"job": job, "status": crate::store::RunStatus::Failed.as_str(), "error": error})
            }
        };
        deliver(
            &client,
            "webhook",
            &url,
            &json!({"text": message, "run": run}),
        )
        .await;
    }
}

async fn deliver(client: &reqwest::Client, channel: &str, url: &str, body: &serde_json::Value) {
    match client.post(url).json(body).send().await {
        Ok(r) if r.status().is_success() => info!(channel, "notification sent"),
        // The URL is not logged: a Telegram URL carries the bot token.
        Ok(r) => warn!(
            channel,
            status = r.status().as_u16(),
            "notification refused; the run is not affected"
        ),
        Err(e) => {
            warn!(channel, error = %e.without_url(), "notification failed; the run is not affected")
        }
    }
}
