//! What the user reads when something is wrong, through the real binary: template errors name
//! their file, line and variable and stop `plan` and `run` before anything is spent; metric
//! values that are not numbers are counted; every unknown config key is listed at once; logs
//! carry no colour codes off a terminal and stay JSON under `--log-format json`; the report
//! shows money like every other output, and its charts have axis values; an ingest error names
//! its file or folder once, followed by its cause.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shopscribe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shopscribe"))
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("SHOPSCRIBE_STORE_URL")
        .env_remove("SHOPSCRIBE_PUBLISH_URL")
        .env_remove("SHOPSCRIBE_LLM_PROVIDER")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .output()
        .expect("run shopscribe")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A demo project with `domains` domains, already run once.
fn demo(tmp: &Path, domains: usize) -> PathBuf {
    let dir = tmp.join("demo");
    let out = shopscribe(&[
        "demo",
        "--dir",
        dir.to_str().unwrap(),
        "--domains",
        &domains.to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "`{from}` not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn generations(dir: &Path) -> i64 {
    let db = dir.join("shopscribe.db");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM generations")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    })
}

#[test]
fn an_undefined_template_variable_fails_plan_and_run_naming_file_line_and_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo(tmp.path(), 12);
    let d = dir.to_str().unwrap();
    let template = dir.join("prompts/domain_summary.user.j2");
    edit(
        &template,
        "{{ entity_label|capitalize }}: {{ entity.name }}",
        "{{ entity_label|capitalize }}: {{ entity.nmae }}",
    );
    let before = generations(&dir);

    let out = shopscribe(&["plan", "domain_summaries", "-p", d]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let expected = format!(
        "the prompt template {}, line 4: undefined value: `entity.nmae` is undefined",
        template.display()
    );
    assert!(err.contains(&expected), "{err}");
    assert!(
        err.contains("and 11 more"),
        "every entity is checked: {err}"
    );
    assert!(!err.contains("<string>") && !err.contains("user:"), "{err}");

    // `run` fails the same way, before any writer call: no generation is recorded.
    let out = shopscribe(&["run", "domain_summaries", "-p", d]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&expected), "{err}");
    assert_eq!(generations(&dir), before, "nothing was sent to the writer");

    // Optional facts tested with `is defined` are fine: the example templates render strictly.
    edit(&template, "entity.nmae", "entity.name");
    let out = shopscribe(&["plan", "domain_summaries", "-p", d]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_template_that_does_not_parse_is_named_by_its_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    assert!(
        shopscribe(&["init", dir.to_str().unwrap()])
            .status
            .success()
    );
    let template = dir.join("prompts/domain_summary.system.j2");
    edit(&template, "{{ group_label }}", "{{ group_label }");
    let out = shopscribe(&["plan", "domain_summaries", "-p", dir.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "jobs.domain_summaries.system_prompt: {} does not parse (line 1): syntax error",
            template.display()
        )),
        "{err}"
    );
    assert!(!err.contains("<string>"), "{err}");
}

#[test]
fn metric_values_that_are_not_numbers_are_counted_and_warned_in_plan_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo(tmp.path(), 12);
    let d = dir.to_str().unwrap();
    edit(
        &dir.join("sql/domain_summaries.sql"),
        "       visits,\n",
        "       CASE WHEN domain IN (SELECT domain FROM per_domain ORDER BY domain LIMIT 3) \
         THEN 'n/a' ELSE visits END AS visits,\n",
    );
    let warning = "metric column `visits`: 3 entities have a value that is not a number \
                   (e.g. \"n/a\"), counted as not available";

    let out = shopscribe(&["plan", "domain_summaries", "-p", d]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("Warning: {warning}.")),
        "{}",
        stdout(&out)
    );

    let out = shopscribe(&["run", "domain_summaries", "-p", d]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(warning), "{}", stderr(&out));
}

#[test]
fn every_unknown_config_key_is_listed_at_once_with_its_line_and_other_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    assert!(
        shopscribe(&["init", dir.to_str().unwrap()])
            .status
            .success()
    );
    let toml = dir.join("shopscribe.toml");
    edit(&toml, "[store]\n", "[store]\nurll = \"x\"\n");
    edit(
        &toml,
        "min_group_size = 5\n",
        "min_group_size = 5\ndescripton = \"x\"\n",
    );
    edit(
        &toml,
        "bin_suffix = \"orders\"\n",
        "bin_suffix = \"orders\"\ncolum = 3\n",
    );
    edit(&toml, "provider = \"auto\"", "provider = \"gpt\"");
    let out = shopscribe(&["plan", "domain_summaries", "-p", dir.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("shopscribe.toml has 4 problems"), "{err}");
    for needle in [
        "store.urll: unknown field `urll`, expected `url` or `spool_dir` (line 9)",
        "jobs.domain_summaries.descripton: unknown field `descripton`, expected one of `description`",
        "jobs.domain_summaries.metrics[1].colum: unknown field `colum`",
        "llm.provider: unknown provider `gpt`",
    ] {
        assert!(err.contains(needle), "{needle} missing in:\n{err}");
    }
}

#[test]
fn a_missing_key_column_is_named_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo(tmp.path(), 6);
    edit(
        &dir.join("shopscribe.toml"),
        "key = \"domain\"",
        "key = \"domian\"",
    );
    let out = shopscribe(&["plan", "domain_summaries", "-p", dir.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("column(s) domian not in the result; it has: domain,"),
        "{err}"
    );
    assert_eq!(err.matches("domian").count(), 1, "{err}");
}

#[test]
fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = shopscribe(&["demo", "--dir", dir.to_str().unwrap(), "--domains", "5"]);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(err.contains("INFO"), "{err}");
    assert!(!err.contains('\u{1b}'), "escape codes in a pipe: {err:?}");
}

#[test]
fn log_format_json_writes_only_json_lines_to_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let d = dir.to_str().unwrap();
    let json_lines = |out: &Output| {
        let err = stderr(out);
        assert!(!err.trim().is_empty());
        for line in err.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        }
        err
    };
    // The offline-writer note, the sample data and reviews lines included.
    let out = shopscribe(&["demo", "--dir", d, "--domains", "5", "--log-format", "json"]);
    assert!(out.status.success());
    let err = json_lines(&out);
    assert!(
        err.contains("offline writer") && err.contains("Sample data"),
        "{err}"
    );
    // The final error line of a failing command too.
    let out = shopscribe(&["plan", "no_such_job", "-p", d, "--log-format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let err = json_lines(&out);
    assert!(
        err.contains("no job named `no_such_job`") && err.contains("\"exit_code\":2"),
        "{err}"
    );
}

#[test]
fn the_report_shows_cost_as_money_latency_per_entity_and_axis_values() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = demo(tmp.path(), 8);
    let out = shopscribe(&["report", "-p", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reports: Vec<_> = std::fs::read_dir(dir.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let html = reports
        .iter()
        .find(|p| p.extension().is_some_and(|x| x == "html"))
        .unwrap();
    let page = std::fs::read_to_string(html).unwrap();
    assert!(page.contains("<td>cost</td><td>$0.0000</td>"), "{page}");
    assert!(page.contains("Writer latency per entity") && !page.contains("per attempt"));
    // Value ticks on the left of each chart, and axis titles.
    assert!(page.contains(r#"text-anchor="end">0</text>"#), "{page}");
    assert!(page.contains(">seconds since the start</text>") && page.contains(">attempts</text>"));
    let json = std::fs::read_to_string(html.with_extension("json")).unwrap();
    let data: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        data["latency_per_entity"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum::<u64>(),
        8,
        "one latency per entity"
    );
}

#[test]
fn an_ingest_error_names_its_folder_or_file_once_then_its_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    shopscribe::demo::write_reviews_project(&dir, true).unwrap();
    let p = dir.to_str().unwrap();
    let error_line = |out: &Output| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        err.lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no error line in {err}"))
            .to_string()
    };

    // The dataset's delivery folder is missing: its path once, then the OS's words.
    let folder = dir.join("data/reviews");
    std::fs::remove_dir_all(&folder).unwrap();
    let line = error_line(&shopscribe(&["ingest", "reviews", "-p", p]));
    let os = std::io::Error::from_raw_os_error(2).to_string();
    assert_eq!(
        line,
        format!("error: cannot read {}: {os}", folder.display()),
        "{line}"
    );

    // A file of no known format, named on the command line: named once.
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "not a delivery\n").unwrap();
    let line = error_line(&shopscribe(&[
        "ingest",
        "reviews",
        "-p",
        p,
        "--from",
        notes.to_str().unwrap(),
    ]));
    assert_eq!(line.matches("notes.txt").count(), 1, "{line}");
    assert!(line.ends_with("notes.txt: unknown file type"), "{line}");
}
