//! Storage engine (see DESIGN.md §4).
pub mod commit_log;
pub mod config;
pub mod error;
pub mod mapped_file;
pub mod record;
