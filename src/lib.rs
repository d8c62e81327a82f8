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
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod features;
pub mod ingest;
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
pub mod site_check;
pub mod source;
pub mod store;
pub mod validate;
pub mod watch;
