//! A valid filter (expression type `BADABI`, matches everything) whose `abi-version` answers
//! 9999: the broker must refuse to load it for its ABI.
//!
//! It implements the raw WIT interface with the SDK's `glue` building blocks, which is also
//! how a plugin overrides any one export of `export_filter!`.

use std::cell::RefCell;

use wasmq_plugin_sdk::bindings::exports::wasmq::plugin::filter::{CompileError, Compiled, Guest};
use wasmq_plugin_sdk::glue::{self, HandleTable};
use wasmq_plugin_sdk::{Filter, Message};

/// The ABI this plugin claims: no broker speaks major 9.
pub const BAD_ABI_VERSION: u32 = 9999;

/// The filter behind the bad ABI: matches everything.
pub struct MatchAll;

impl Filter for MatchAll {
    type Compiled = ();

    fn expression_types() -> &'static [&'static str] {
        &["BADABI"]
    }

    fn compile(
        _: &str,
        _: &str,
    ) -> Result<wasmq_plugin_sdk::Compiled<()>, wasmq_plugin_sdk::CompileError> {
        Ok(wasmq_plugin_sdk::Compiled::new(()).without_body())
    }

    fn matches(_: &(), _: &Message<'_>) -> bool {
        true
    }
}

thread_local! {
    static HANDLES: RefCell<HandleTable<()>> = const { RefCell::new(HandleTable::new()) };
}

/// The raw `wasmq:plugin/filter` implementation, reporting ABI 9999.
pub struct BadAbi;

impl Guest for BadAbi {
    fn abi_version() -> u32 {
        BAD_ABI_VERSION
    }

    fn expression_types() -> Vec<String> {
        glue::expression_types::<MatchAll>()
    }

    fn configure(config: Vec<(String, String)>) -> Result<(), String> {
        MatchAll::configure(&config)
    }

    fn compile(expression_type: String, expression: String) -> Result<Compiled, CompileError> {
        let compiled = glue::compile_expression::<MatchAll>(&expression_type, &expression)
            .map_err(glue::to_wit_compile_error)?;
        HANDLES.with_borrow_mut(|table| glue::register(table, compiled))
    }

    fn release(handle: u32) {
        HANDLES.with_borrow_mut(|table| {
            table.remove(handle);
        });
    }

    fn evaluate(handle: u32, batch: Vec<u8>) -> Vec<u8> {
        HANDLES.with_borrow(|table| glue::evaluate::<MatchAll>(table, handle, &batch))
    }
}

// Export symbols only for wasm (their names do not link into a native cdylib).
#[cfg(target_arch = "wasm32")]
wasmq_plugin_sdk::export_filter_world!(BadAbi with_types_in wasmq_plugin_sdk::bindings);
