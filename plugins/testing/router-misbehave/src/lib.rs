//! A router that does what the broker's routing and containment tests ask of it, message by
//! message, chosen by the message's property `ROUTE_TEST`:
//!
//! | `ROUTE_TEST`           | verdict / behaviour                                            |
//! |------------------------|----------------------------------------------------------------|
//! | `keep`                 | keep                                                           |
//! | `queue:N`              | queue `N` (not checked against the write queue count)          |
//! | `redirect:T`           | redirect to topic `T`, no queue                                |
//! | `redirect:T:N`         | redirect to queue `N` of topic `T`                             |
//! | `extra:T1,T2`          | keep, plus extra targets `T1` and `T2` without queues          |
//! | `extra:T1:0,T2:3`      | keep, plus extra targets queue 0 of `T1` and queue 3 of `T2` (items with and without a queue mix) |
//! | `reject:REASON`        | reject with `REASON` (everything after the first `:`)          |
//! | `echo`                 | reject with a description of what the router received: `echo topic=T queue=Q born=B write_queues=N body=LEN` (Q and B are the raw `queue_offset` and `store_timestamp` fields) |
//! | `trap`                 | panics (a trap: the crate is built with `panic = "abort"`)     |
//! | `loop`                 | spins forever (deadline / epoch interruption)                  |
//! | `grow`                 | allocates and touches memory until allocation fails (memory cap) |
//! | `bad-len`              | the mode's default verdict, but the whole list comes back one verdict short |
//! | none                   | the mode's default verdict: keep (`mode=normal`) or queue 0 (`mode=everything-to-queue-0`) |
//! | anything else          | reject with `router-misbehave: bad ROUTE_TEST ...`            |
//!
//! A route and extra targets combine with `;`: `queue:1;extra:audit`, `redirect:T:2;extra:A,B:1`
//! (the last route wins; `reject:REASON` takes the rest of the value, `;` included, so it
//! comes last). Messages are handled in batch order, so a `trap`, `loop` or `grow` message
//! stops the call there. A malformed batch traps, as with the SDK's `export_router!`.
//!
//! Settings:
//!
//! | key              | values                                      | meaning                       |
//! |------------------|---------------------------------------------|-------------------------------|
//! | `mode`           | `normal` (default), `everything-to-queue-0` | the default verdict (for upgrade tests: a v2 that sends every message without `ROUTE_TEST` to queue 0); any other value refuses the load |
//! | `needs_body`     | `false` (default), `true`                   | what `needs-body` answers; any other value refuses the load |
//! | `fail_configure` | `error`, `trap`                             | refuse the load with an error, or panic in `configure` |
//!
//! Other keys are accepted and ignored.
//!
//! This crate implements the raw WIT interface from `wasmq_plugin_sdk::router_bindings`
//! (the `Router` trait cannot return a short verdict list), reusing the SDK's decoder.

use std::cell::Cell;
use std::hint::black_box;

use wasmq_plugin_sdk::glue::{route_batch, to_wit_router_verdict};
use wasmq_plugin_sdk::router_bindings::exports::wasmq::plugin::router::{
    Guest, Verdict as WitVerdict,
};
use wasmq_plugin_sdk::{DecodeError, Message, Route, Target, Verdict, ABI_VERSION};

/// The property choosing the behaviour.
pub const PROPERTY: &str = "ROUTE_TEST";

/// The verdict for messages without `ROUTE_TEST`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Keep.
    #[default]
    Normal,
    /// Queue 0.
    EverythingToQueue0,
}

impl Mode {
    fn default_verdict(self) -> Verdict {
        match self {
            Mode::Normal => Verdict::keep(),
            Mode::EverythingToQueue0 => Verdict::queue(0),
        }
    }
}

/// What `route` does for one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer this verdict.
    Verdict(Verdict),
    /// The mode's default verdict.
    Default,
    /// Panic.
    Trap,
    /// Infinite loop.
    Loop,
    /// Unbounded memory growth.
    Grow,
    /// The mode's default verdict, and the verdict list one short.
    BadLen,
    /// Reject with a description of the message.
    Echo,
}

impl Behaviour {
    /// The behaviour a message asks for.
    pub fn of(message: &Message<'_>) -> Behaviour {
        match message.property(PROPERTY) {
            None => Behaviour::Default,
            Some(test) => parse(test).unwrap_or_else(|e| {
                Behaviour::Verdict(Verdict::reject(format!(
                    "router-misbehave: bad ROUTE_TEST `{test}`: {e}"
                )))
            }),
        }
    }
}

/// Parses a `ROUTE_TEST` value.
pub fn parse(test: &str) -> Result<Behaviour, String> {
    match test {
        "trap" => return Ok(Behaviour::Trap),
        "loop" => return Ok(Behaviour::Loop),
        "grow" => return Ok(Behaviour::Grow),
        "bad-len" => return Ok(Behaviour::BadLen),
        "echo" => return Ok(Behaviour::Echo),
        _ => {}
    }
    let mut route = None;
    let mut extra = Vec::new();
    let mut rest = Some(test);
    while let Some(current) = rest {
        if let Some(reason) = current.strip_prefix("reject:") {
            route = Some(Route::Reject(reason.to_owned()));
            break;
        }
        let (part, tail) = match current.split_once(';') {
            Some((part, tail)) => (part, Some(tail)),
            None => (current, None),
        };
        rest = tail;
        match part.split_once(':') {
            None if part == "keep" => route = Some(Route::Keep),
            Some(("queue", n)) => route = Some(Route::Queue(number(n)?)),
            Some(("redirect", target)) => route = Some(Route::Redirect(parse_target(target)?)),
            Some(("extra", targets)) => {
                for target in targets.split(',') {
                    extra.push(parse_target(target)?);
                }
            }
            _ => return Err(format!("unknown directive `{part}`")),
        }
    }
    Ok(Behaviour::Verdict(Verdict {
        route: route.unwrap_or_default(),
        extra,
    }))
}

/// `T` or `T:N`.
fn parse_target(target: &str) -> Result<Target, String> {
    let (topic, queue) = match target.split_once(':') {
        Some((topic, n)) => (topic, Some(number(n)?)),
        None => (target, None),
    };
    if topic.is_empty() {
        return Err(format!("empty topic in `{target}`"));
    }
    Ok(Target::new(topic, queue))
}

fn number(n: &str) -> Result<u32, String> {
    n.parse()
        .map_err(|_| format!("`{n}` is not a queue number (0..=4294967295)"))
}

/// The verdicts for a batch, carrying out the behaviours; `Err` for a malformed batch
/// (which `route` turns into a trap).
pub fn verdicts(batch: &[u8], write_queues: u32, mode: Mode) -> Result<Vec<Verdict>, DecodeError> {
    let mut short = false;
    let mut verdicts = route_batch(batch, |message| match Behaviour::of(message) {
        Behaviour::Verdict(verdict) => verdict,
        Behaviour::Default => mode.default_verdict(),
        Behaviour::Trap => panic!("router-misbehave: trap, as requested"),
        Behaviour::Loop => spin(),
        Behaviour::Grow => grow(),
        Behaviour::BadLen => {
            short = true;
            mode.default_verdict()
        }
        Behaviour::Echo => Verdict::reject(format!(
            "echo topic={} queue={} born={} write_queues={write_queues} body={}",
            message.topic(),
            message.queue_offset(),
            message.store_timestamp(),
            message.body().len()
        )),
    })?;
    if short {
        verdicts.pop();
    }
    Ok(verdicts)
}

thread_local! {
    static MODE: Cell<Mode> = const { Cell::new(Mode::Normal) };
    static NEEDS_BODY: Cell<bool> = const { Cell::new(false) };
}

/// Parses the settings this plugin reads (`mode`, `needs_body`, `fail_configure`).
pub fn parse_config(config: &[(String, String)]) -> Result<(Mode, bool), String> {
    let mut mode = Mode::Normal;
    let mut needs_body = false;
    for (key, value) in config {
        match (key.as_str(), value.as_str()) {
            ("mode", "normal") => mode = Mode::Normal,
            ("mode", "everything-to-queue-0") => mode = Mode::EverythingToQueue0,
            ("mode", other) => {
                return Err(format!(
                "router-misbehave: mode must be `normal` or `everything-to-queue-0`, got `{other}`"
            ))
            }
            ("needs_body", "true") => needs_body = true,
            ("needs_body", "false") => needs_body = false,
            ("needs_body", other) => {
                return Err(format!(
                    "router-misbehave: needs_body must be `true` or `false`, got `{other}`"
                ))
            }
            ("fail_configure", "error") => {
                return Err("router-misbehave: configure error, as requested".into())
            }
            ("fail_configure", "trap") => {
                panic!("router-misbehave: panic in configure, as requested")
            }
            _ => {}
        }
    }
    Ok((mode, needs_body))
}

/// The raw `wasmq:plugin/router` implementation.
pub struct RouterMisbehave;

impl Guest for RouterMisbehave {
    fn abi_version() -> u32 {
        ABI_VERSION
    }

    fn configure(config: Vec<(String, String)>) -> Result<(), String> {
        let (mode, needs_body) = parse_config(&config)?;
        MODE.set(mode);
        NEEDS_BODY.set(needs_body);
        Ok(())
    }

    fn needs_body() -> bool {
        NEEDS_BODY.get()
    }

    fn route(write_queues: u32, batch: Vec<u8>) -> Vec<WitVerdict> {
        match verdicts(&batch, write_queues, MODE.get()) {
            Ok(verdicts) => verdicts.into_iter().map(to_wit_router_verdict).collect(),
            Err(error) => panic!("router-misbehave: malformed batch: {error}"),
        }
    }
}

/// Never returns and never yields.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n).wrapping_add(1);
    }
}

/// Allocates 1 MiB chunks, writes every page of each and keeps them all, until the
/// allocator fails (which aborts: a trap).
fn grow() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        hoard.push(black_box(chunk));
    }
}

// Export symbols only for wasm (their names do not link into a native cdylib).
#[cfg(target_arch = "wasm32")]
wasmq_plugin_sdk::export_router_world!(
    RouterMisbehave with_types_in wasmq_plugin_sdk::router_bindings
);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmq_plugin_sdk::{encode_batch, MessageSpec};

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// One message per ROUTE_TEST value (queue id 2, born 1000 + i, body "abc").
    fn batch(tests: &[Option<&str>]) -> Vec<u8> {
        let properties: Vec<Vec<(&str, &str)>> = tests
            .iter()
            .map(|t| t.map(|t| vec![(PROPERTY, t)]).unwrap_or_default())
            .collect();
        let specs: Vec<_> = properties
            .iter()
            .enumerate()
            .map(|(i, properties)| MessageSpec {
                queue_offset: 2,
                store_timestamp: 1000 + i as i64,
                topic: "t",
                properties,
                body: b"abc",
            })
            .collect();
        encode_batch(&specs)
    }

    fn run(tests: &[Option<&str>], mode: Mode) -> Vec<Verdict> {
        verdicts(&batch(tests), 8, mode).unwrap()
    }

    fn reason(verdict: &Verdict) -> &str {
        match &verdict.route {
            Route::Reject(reason) => reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn verdicts_by_property() {
        let v = run(
            &[
                Some("keep"),
                Some("queue:3"),
                Some("redirect:other"),
                Some("redirect:other:5"),
                Some("extra:T1,T2"),
                Some("extra:T1:0,T2:3"),
                Some("reject:no: not today"),
                None,
            ],
            Mode::Normal,
        );
        assert_eq!(
            v,
            [
                Verdict::keep(),
                Verdict::queue(3),
                Verdict::redirect("other", None),
                Verdict::redirect("other", Some(5)),
                Verdict::keep().with_extras(["T1", "T2"]),
                Verdict::keep()
                    .with_extra(Target::new("T1", Some(0)))
                    .with_extra(Target::new("T2", Some(3))),
                Verdict::reject("no: not today"),
                Verdict::keep(),
            ]
        );
    }

    #[test]
    fn combinations() {
        let v = run(
            &[
                Some("queue:1;extra:audit"),
                Some("redirect:T:2;extra:A,B:1"),
                Some("extra:A;queue:4"),
                Some("extra:A;reject:x;y"),
                Some("extra:a1:1,a2"),
            ],
            Mode::Normal,
        );
        assert_eq!(
            v,
            [
                Verdict::queue(1).with_extra("audit"),
                Verdict::redirect("T", Some(2))
                    .with_extra("A")
                    .with_extra(Target::new("B", Some(1))),
                Verdict::queue(4).with_extra("A"),
                Verdict::reject("x;y").with_extra("A"),
                Verdict::keep()
                    .with_extra(Target::new("a1", Some(1)))
                    .with_extra("a2"),
            ]
        );
    }

    #[test]
    fn bad_values_reject_with_a_reason() {
        for bad in [
            "dance",
            "KEEP",
            "queue:",
            "queue:-1",
            "queue:x",
            "queue:4294967296",
            "redirect:",
            "redirect:T:x",
            "extra:",
            "extra:A,,B",
            "extra::1",
            "keep;",
            ";keep",
            "keep;;queue:1",
        ] {
            let v = run(&[Some(bad)], Mode::Normal);
            let r = reason(&v[0]);
            assert!(
                r.starts_with("router-misbehave: bad ROUTE_TEST"),
                "{bad}: {r}"
            );
            assert!(v[0].extra.is_empty());
        }
    }

    #[test]
    fn mode_everything_to_queue_0() {
        let v = run(
            &[None, Some("keep"), Some("queue:2"), Some("bad-len")],
            Mode::EverythingToQueue0,
        );
        assert_eq!(v, [Verdict::queue(0), Verdict::keep(), Verdict::queue(2)]);
    }

    #[test]
    fn bad_len_is_one_short() {
        let tests = [Some("queue:1"), Some("bad-len"), Some("keep")];
        assert_eq!(
            run(&tests, Mode::Normal),
            [Verdict::queue(1), Verdict::keep()]
        );
        // Through the raw export too, with the WIT types.
        assert_eq!(RouterMisbehave::route(8, batch(&tests)).len(), 2);
    }

    #[test]
    fn echo_describes_the_message() {
        let v = run(&[None, Some("echo")], Mode::Normal);
        assert_eq!(
            reason(&v[1]),
            "echo topic=t queue=2 born=1001 write_queues=8 body=3"
        );
    }

    #[test]
    #[should_panic(expected = "trap, as requested")]
    fn trap_panics() {
        run(&[Some("keep"), Some("trap")], Mode::Normal);
    }

    #[test]
    #[should_panic(expected = "malformed batch")]
    fn malformed_batch_traps() {
        let bytes = batch(&[None]);
        RouterMisbehave::route(8, bytes[..bytes.len() - 1].to_vec());
    }

    #[test]
    fn configure() {
        assert_eq!(parse_config(&[]), Ok((Mode::Normal, false)));
        assert_eq!(
            parse_config(&settings(&[
                ("mode", "everything-to-queue-0"),
                ("needs_body", "true"),
                ("other", "ignored"),
            ])),
            Ok((Mode::EverythingToQueue0, true))
        );
        assert_eq!(
            parse_config(&settings(&[("mode", "normal")])),
            Ok((Mode::Normal, false))
        );
        for bad in [
            &[("mode", "")][..],
            &[("mode", "v2")],
            &[("mode", "NORMAL")],
            &[("needs_body", "yes")],
            &[("fail_configure", "error")],
        ] {
            assert!(parse_config(&settings(bad)).is_err(), "{bad:?}");
        }
        // Through the raw export (per thread: this test starts from the defaults).
        assert!(!RouterMisbehave::needs_body());
        assert!(RouterMisbehave::configure(settings(&[("needs_body", "true")])).is_ok());
        assert!(RouterMisbehave::needs_body());
        assert!(RouterMisbehave::configure(settings(&[("mode", "x")])).is_err());
        assert_eq!(RouterMisbehave::abi_version(), ABI_VERSION);
    }

    #[test]
    #[should_panic(expected = "panic in configure")]
    fn configure_can_trap() {
        let _ = parse_config(&settings(&[("fail_configure", "trap")]));
    }
}
