//! A well-formed component that does NOT export `wasmq:plugin/filter`: the broker must refuse
//! to load it as a filter (missing export), not trap or crash.

wit_bindgen::generate!({
    inline: "
        package wasmq-test:no-filter;

        world no-filter {
            export hello: func() -> u32;
        }
    ",
});

struct Hello;

impl Guest for Hello {
    fn hello() -> u32 {
        42
    }
}

export!(Hello);
