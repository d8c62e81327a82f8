//! The integration tests, one module per area, built as one test executable: each file used to
//! be a crate of its own, which compiled the shared support code (mock servers, the PostgreSQL
//! helpers) and linked a ~40 MB executable once per file, and ran the files one after another
//! with a core idle behind every single-test file (BENCHMARKS.md, "Build and test time"). Run
//! one area with `cargo test --test it AREA::` (e.g. `cargo test --test it ingest_scd2::`).

mod support;

mod abandoned_runs;
mod anthropic_batch_cli;
mod anthropic_cli;
mod api_conformance;
mod batch_cli;
mod data_checks;
mod deliveries;
mod demo_end_to_end;
mod distributed;
mod exclusive_runs;
mod fact_check;
mod golden_prompt;
mod ingest_bytes;
mod ingest_crash;
mod ingest_scd2;
mod llm_engine;
mod messages;
mod near_duplicates;
mod notify;
mod offline_quality;
mod postgres_source;
mod product_pages;
mod publish_ahead;
mod reviews;
mod s3;
mod serve;
mod serve_process;
mod site_check;
mod site_shrink;
mod spooled_answers;
mod store_conformance;
mod store_upgrade;
mod watch;
