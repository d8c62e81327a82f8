//! `shopscribe check-site`: lint a published site (the project's, or any folder or bucket).

use super::{App, Failure};
use crate::site_check::{CheckOptions, SiteReport};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CheckSiteArgs {
    #[arg(short, long, env = "SHOPSCRIBE_PROJECT", default_value = ".")]
    project: PathBuf,
    /// The site to check (a folder, file:///…, s3://…). Default: the project's publish.url.
    #[arg(long, value_name = "URL")]
    site: Option<String>,
    /// Its public root. Default: the project's publish.base_url.
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// How many problems to list.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

pub async fn check_site(args: CheckSiteArgs) -> Result<ExitCode, Failure> {
    let app = App::load(&args.project)?;
    let publish = &app.project.publish;
    let url = match args.site {
        Some(s) => {
            crate::config::normalise_location(&s, &std::env::current_dir().unwrap_or_default())
                .map_err(Failure::bad_usage)?
        }
        None => publish.url.clone(),
    };
    let base = args.base_url.unwrap_or_else(|| publish.base_url.clone());
    let sink = crate::sink::Sink::open(&url).map_err(Failure::usage)?;
    let opts = CheckOptions {
        max_similarity: publish.max_similarity,
    };
    let report = crate::site_check::check_site_with(&sink, &base, &opts)
        .await
        .map_err(Failure::run)?;
    print_report(&url, &report, args.limit);
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_report(url: &str, report: &SiteReport, limit: usize) {
    println!("Site {url}: {}", report.summary());
    for job in &report.similarity {
        for line in job.lines() {
            println!("  similarity {line}");
        }
    }
    for p in report.problems.iter().take(limit) {
        println!("  {}  {}: {}", p.kind.as_str(), p.file, p.message);
    }
    if report.problems.len() > limit {
        println!("  … and {} more (--limit)", report.problems.len() - limit);
    }
}
