pub mod meta;
pub mod store;
