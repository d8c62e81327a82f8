//! `shopscribe demo`: both examples on generated sample data, offline, into one site: the
//! domains project (sample rows in the store, `domain_summaries`) and the reviews project in
//! DIR/reviews (two review deliveries and product metadata ingested, `product_insights`).

use super::LOG_TARGET;
use super::summary::{exit_for, print_summary};
use super::{App, Failure};
use crate::config::Overrides;
use crate::run::{RunOptions, RunSummary};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Folder for the project, its store and its site.
    #[arg(long, default_value = "shopscribe-demo")]
    dir: PathBuf,
    /// Number of sample domains.
    #[arg(long, default_value_t = 500)]
    domains: usize,
    /// Seed of the sample data generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Sample products of the reviews half.
const PRODUCTS: usize = 60;

pub async fn demo(DemoArgs { dir, domains, seed }: DemoArgs) -> Result<ExitCode, Failure> {
    let started = std::time::Instant::now();
    let summary = demo_domains(&dir, domains, seed).await?;
    let reviews = demo_reviews(&dir, seed).await?;
    let index = Path::new(summary.site_url.trim_start_matches("file://")).join("index.html");
    println!(
        "Demo finished in {:.2} s. Open {}",
        started.elapsed().as_secs_f64(),
        index.display()
    );
    if exit_for(&reviews) != ExitCode::SUCCESS {
        return Ok(exit_for(&reviews));
    }
    Ok(exit_for(&summary))
}

/// The domains half: DIR holds the example project, its sample rows go into its store, and
/// `domain_summaries` publishes DIR/site.
async fn demo_domains(dir: &Path, domains: usize, seed: u64) -> Result<RunSummary, Failure> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Failure::usage(super::Context::new(
            format!("cannot create {}", dir.display()),
            e,
        ))
    })?;
    crate::demo::write_project(dir, false).map_err(|e| {
        Failure::usage(super::Context::new(
            format!("cannot write the example project into {}", dir.display()),
            e,
        ))
    })?;
    let app = App::load(dir)?;
    let store = crate::store::sqlite::SqliteStore::open(&app.project.store_url)
        .await
        .map_err(Failure::run)?;
    let rows = crate::demo::sample_rows(domains, seed);
    crate::demo::load_rows(store.pool(), &rows)
        .await
        .map_err(Failure::run)?;
    tracing::info!(
        target: LOG_TARGET, "Sample data: {domains} domains, {} monthly rows in {}",
        rows.len(),
        app.project.store_url
    );
    run_demo_job(&app, "domain_summaries").await
}

/// The reviews half: DIR/reviews holds the reviews example, two deliveries are ingested
/// (bronze, rejects, SCD2, gold) and `product_insights` publishes into the same site.
async fn demo_reviews(dir: &Path, seed: u64) -> Result<RunSummary, Failure> {
    let rdir = dir.join("reviews");
    crate::demo::write_reviews_project(&rdir, false).map_err(|e| {
        Failure::usage(super::Context::new(
            format!("cannot write the reviews example into {}", rdir.display()),
            e,
        ))
    })?;
    write_review_data(&rdir, seed)?;
    // One site for both examples: the reviews pages go next to the domain pages.
    let overrides = Overrides {
        publish_url: Some("../site".into()),
    };
    let app = App::load_with(&rdir, &overrides)?;
    // A demo folder written by an earlier version has no products dataset: it keeps working.
    for dataset in ["reviews", "products"]
        .into_iter()
        .filter(|d| app.project.datasets.contains_key(*d))
    {
        demo_ingest(&app, &rdir, dataset).await?;
    }
    run_demo_job(&app, "product_insights").await
}

/// The two review deliveries and the product catalog, regenerated from `seed`.
fn write_review_data(rdir: &Path, seed: u64) -> Result<(), Failure> {
    let data = rdir.join("data/reviews");
    std::fs::create_dir_all(&data).map_err(Failure::usage)?;
    let (day1, day2) = crate::demo::review_deliveries(PRODUCTS, seed);
    for (name, text) in [("day1.jsonl", day1), ("day2.jsonl", day2)] {
        std::fs::write(data.join(name), text).map_err(Failure::usage)?;
    }
    let products = rdir.join("data/products");
    std::fs::create_dir_all(&products).map_err(Failure::usage)?;
    std::fs::write(
        products.join("catalog.jsonl"),
        crate::demo::product_metadata(PRODUCTS),
    )
    .map_err(Failure::usage)
}

/// Ingests one dataset of the demo's reviews project, logging what each file brought.
async fn demo_ingest(app: &App, rdir: &Path, dataset: &str) -> Result<(), Failure> {
    let ds = app.dataset(dataset)?;
    let reports = crate::ingest::ingest(&app.project, ds, None)
        .await
        .map_err(Failure::run)?;
    for r in &reports {
        if r.skipped {
            tracing::info!(target: LOG_TARGET, "{dataset}: {} already ingested; skipped", r.uri);
        } else {
            tracing::info!(
                target: LOG_TARGET, "{dataset}: {} — {} lines, {} rejected (see `shopscribe ingest {dataset} --rejects -p {}`), {} new, {} changed, {} unchanged",
                r.uri.rsplit('/').next().unwrap_or(&r.uri),
                r.lines,
                r.rejected,
                rdir.display(),
                r.merge.inserted,
                r.merge.changed,
                r.merge.unchanged
            );
        }
    }
    Ok(())
}

/// One demo job's run, with a progress bar, and its summary.
async fn run_demo_job(app: &App, job: &str) -> Result<RunSummary, Failure> {
    let opts = RunOptions {
        progress: true,
        ..Default::default()
    };
    let summary = app.run_job(job, &opts, true).await?;
    print_summary(&summary);
    Ok(summary)
}
