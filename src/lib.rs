//! shopscribe: turns e-commerce performance data into published, SEO-ready text, one page per
//! entity, and keeps it current as the data changes. See docs/ARCHITECTURE.md for the flow.

pub mod checks;
pub mod config;
pub mod db;
pub mod demo;
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
