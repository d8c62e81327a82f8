//! The one database layer: [`status`] types every word the database keeps; [`error`] is the
//! error of every database operation.

pub mod error;
pub mod status;

pub use error::StoreError;
