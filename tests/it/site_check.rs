//! `shopscribe check-site` on a published site: the demo's site is clean (and each run says so),
//! and every kind of problem planted in it is found and named, with exit 1.

use std::path::Path;
use std::process::{Command, Output};

fn shopscribe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shopscribe"))
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env("RUST_LOG", "shopscribe=warn")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn edit(path: &Path, from: &str, to: &str) {
    let s = std::fs::read_to_string(path).unwrap();
    assert!(s.contains(from), "{from} not in {}", path.display());
    std::fs::write(path, s.replacen(from, to, 1)).unwrap();
}

#[test]
fn check_site_finds_every_planted_problem_and_the_demo_site_is_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let d = dir.to_str().unwrap();
    let demo = shopscribe(&["demo", "--dir", d, "--domains", "60"]);
    assert!(demo.status.success(), "{}", text(&demo));
    assert!(text(&demo).contains("check      "), "{}", text(&demo));
    assert!(
        text(&demo).contains(", clean"),
        "every run checks: {}",
        text(&demo)
    );
    let clean = shopscribe(&["check-site", "-p", d]);
    assert!(clean.status.success(), "{}", text(&clean));
    assert!(text(&clean).contains("clean"));

    let job = dir.join("site/domain_summaries");
    let mut pages: Vec<String> = std::fs::read_dir(&job)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".html") && n != "index.html")
        .collect();
    pages.sort();
    let (a, b, c, e) = (&pages[0], &pages[1], &pages[2], &pages[3]);
    // a: a title too long, and the same as b's; c: no lang, a canonical to elsewhere, broken
    // JSON-LD and a link to nowhere; e: unlisted in the sitemap, which lists a page that is gone.
    let title_of = |p: &str| {
        let s = std::fs::read_to_string(job.join(p)).unwrap();
        s.split("<title>")
            .nth(1)
            .unwrap()
            .split("</title>")
            .next()
            .unwrap()
            .to_string()
    };
    let long = "A title far longer than sixty characters that search engines would cut";
    edit(
        &job.join(a),
        &format!("<title>{}</title>", title_of(a)),
        &format!("<title>{long}</title>"),
    );
    edit(
        &job.join(b),
        &format!("<title>{}</title>", title_of(b)),
        &format!("<title>{long}</title>"),
    );
    edit(&job.join(c), "<html lang=\"en\">", "<html>");
    edit(
        &job.join(c),
        "<link rel=\"canonical\" href=\"https:",
        "<link rel=\"canonical\" href=\"http:",
    );
    edit(&job.join(c), "{\"@context\"", "{oops \"@context\"");
    edit(
        &job.join(c),
        "<main>",
        "<main><a href=\"nowhere.html\">x</a>",
    );
    let e_url = format!("https://example.com/domain_summaries/{e}");
    edit(
        &job.join("sitemap-1.xml"),
        &e_url,
        "https://example.com/domain_summaries/gone.html",
    );

    let out = shopscribe(&["check-site", "-p", d, "--limit", "100"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    for (kind, file) in [
        ("long_title", a.as_str()),
        ("duplicate_title", b.as_str()),
        ("no_lang", c.as_str()),
        ("canonical", c.as_str()),
        ("json_ld", c.as_str()),
        ("broken_link", c.as_str()),
        ("not_in_sitemap", e.as_str()),
        ("sitemap_extra", "sitemap-1.xml"),
    ] {
        assert!(
            said.lines().any(|l| l.contains(kind) && l.contains(file)),
            "{kind} for {file} not reported:\n{said}"
        );
    }
}
