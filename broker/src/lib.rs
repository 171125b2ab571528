pub mod meta;
pub mod net;
pub mod protocol;
pub mod store;
