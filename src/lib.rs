//! shopscribe: turns e-commerce performance data into published, SEO-ready text, one page per
//! entity, and keeps it current as the data changes. See docs/ARCHITECTURE.md for the flow.
//!
//! Lint policy: `[lints]` in Cargo.toml flags lossy numeric casts. `features` (the peer-group
//! math) has none; the modules allowed below still hold casts of counts and durations that no
//! one has reviewed one by one yet, which is why the allowance sits at their declaration.

pub mod checks;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]
pub mod config;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]
pub mod demo;
pub mod features;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]
pub mod ingest;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]
pub mod llm;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]
pub mod notify;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]
pub mod plan;
mod progress;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]
pub mod prompt;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]
pub mod publish;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]
pub mod queue;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]
pub mod report;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]
pub mod run;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]
pub mod serve;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]
pub mod site_check;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]
pub mod source;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "counts, sizes, durations, tokens and costs converted for arithmetic and display, far inside the target types; not yet reviewed cast by cast (the policy is enforced in features/)"
)]
pub mod store;
pub mod validate;
pub mod watch;
