//! shopscribe: turns e-commerce performance data into published, SEO-ready text, one page per
//! entity, and keeps it current as the data changes. See docs/ARCHITECTURE.md for the flow.
//!
//! Lint policy: `[lints]` in Cargo.toml flags lossy numeric casts. `features` (the peer-group
//! math) has none and enforces it (`#![warn]` in its module); the rest of the crate still holds
//! casts of counts, sizes, durations, tokens and costs that no one has reviewed one by one yet,
//! which is why they are allowed here, once.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]

pub mod checks;
/// The `shopscribe` binary's commands (parsing, then a call into the library). They live in the
/// library rather than in the binary's crate because the async functions they await would
/// otherwise be compiled a second time there: half the binary's code was the library's again, 68 s
/// of a clean release build on the 2-core machine (BENCHMARKS.md, "Build and test time").
#[doc(hidden)]
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod features;
pub mod ingest;
pub mod lease;
pub mod llm;
pub mod notify;
pub mod plan;
mod progress;
pub mod prompt;
pub mod publish;
pub mod queue;
pub mod report;
pub mod run;
pub mod serve;
pub mod sink;
pub mod site_check;
pub mod source;
pub mod store;
pub mod validate;
pub mod watch;
