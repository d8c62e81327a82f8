//! Shared test support: the mock OpenAI-compatible server and throwaway PostgreSQL databases.
#![allow(dead_code)]
pub mod mock_openai;
pub mod pg;
