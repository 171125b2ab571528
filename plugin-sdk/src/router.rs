//! The [`Router`] trait a routing plugin implements, and its verdicts.

use crate::batch::Message;

/// A router: decides, broker-side and before anything is stored, where each message of a send
/// request goes (keep it, another queue, another topic, refuse the request) and to which
/// extra targets it is dispatched as well.
///
/// Implement it on a unit struct and export it with [`export_router!`](crate::export_router).
/// All functions are associated functions: a plugin instance is single-threaded and keeps
/// any state (such as its configuration) in statics or thread-locals.
pub trait Router: 'static {
    /// Receives the operator's `key=value` settings once after instantiation; an error
    /// refuses the load (or upgrade) with that message. The default accepts anything.
    fn configure(config: &[(String, String)]) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Whether [`Router::route`] reads [`Message::body`]; otherwise bodies arrive empty.
    /// Asked once per instance, after `configure` (so it may depend on the settings). The
    /// default is `false`: bodies are the largest part of a message, and most routers decide
    /// on properties.
    fn needs_body() -> bool {
        false
    }

    /// The verdict on one message of a send request to a topic with `write_queues` write
    /// queues (at least 1 for any topic that can be written). Called once per message, in
    /// request order.
    ///
    /// `message` has the topic the client sent to, the client's properties and (when
    /// [`Router::needs_body`] says so) its body. It has not been stored yet: its
    /// [`client_queue_id`](Message::client_queue_id) is the queue the client chose and its
    /// [`born_timestamp`](Message::born_timestamp) the client's send time (in the batch
    /// encoding these travel in the `queue_offset` and `store_timestamp` fields).
    fn route(message: &Message<'_>, write_queues: u32) -> Verdict;
}

/// A destination: a topic and, optionally, a queue of it (mirror of the WIT `target`).
///
/// Without a queue the broker keeps the client's queue id when the topic has that queue,
/// else takes it modulo the topic's write queue count.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// Topic name.
    pub topic: String,
    /// Queue of `topic`; `None` lets the broker choose as described above.
    pub queue: Option<u32>,
}

impl Target {
    /// A target: `Target::new("orders-eu", None)`, `Target::new("audit", Some(0))`.
    pub fn new(topic: impl Into<String>, queue: Option<u32>) -> Self {
        Target {
            topic: topic.into(),
            queue,
        }
    }
}

impl From<&str> for Target {
    /// A topic without a queue.
    fn from(topic: &str) -> Self {
        Target::new(topic, None)
    }
}

impl From<String> for Target {
    /// A topic without a queue.
    fn from(topic: String) -> Self {
        Target::new(topic, None)
    }
}

/// Where a message itself goes (mirror of the WIT `route`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Route {
    /// Where the client sent it: its topic and the queue it chose.
    #[default]
    Keep,
    /// Another queue of the same topic; must be less than the `write_queues` that
    /// [`Router::route`] was given.
    Queue(u32),
    /// Another topic (the producer must be allowed to write it).
    Redirect(Target),
    /// Refused: the whole send request fails and the producer gets this reason; nothing of
    /// the request is stored.
    Reject(String),
}

/// The decision on one message (mirror of the WIT `verdict`): its [`Route`], and extra
/// dispatch targets. A message with extra targets is stored once and indexed in each
/// target's consume queue as well.
///
/// ```
/// use wasmq_plugin_sdk::{Route, Target, Verdict};
///
/// assert_eq!(Verdict::keep().route, Route::Keep);
/// assert_eq!(Verdict::queue(3).route, Route::Queue(3));
/// let v = Verdict::redirect("orders-eu", None).with_extra(Target::new("audit", Some(0)));
/// assert_eq!(v.route, Route::Redirect(Target::new("orders-eu", None)));
/// assert_eq!(v.extra, [Target::new("audit", Some(0))]);
/// assert!(matches!(Verdict::reject("no region").route, Route::Reject(r) if r == "no region"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// Where the message goes.
    pub route: Route,
    /// Where it is dispatched as well (in order; usually empty).
    pub extra: Vec<Target>,
}

impl Verdict {
    /// A verdict with `route` and no extra targets.
    #[inline]
    pub fn new(route: Route) -> Self {
        Verdict {
            route,
            extra: Vec::new(),
        }
    }

    /// [`Route::Keep`]: where the client sent it.
    #[inline]
    pub fn keep() -> Self {
        Verdict::new(Route::Keep)
    }

    /// [`Route::Queue`]: queue `queue` of the same topic.
    #[inline]
    pub fn queue(queue: u32) -> Self {
        Verdict::new(Route::Queue(queue))
    }

    /// [`Route::Redirect`]: topic `topic`, at queue `queue` or (`None`) as [`Target`] says.
    pub fn redirect(topic: impl Into<String>, queue: Option<u32>) -> Self {
        Verdict::new(Route::Redirect(Target::new(topic, queue)))
    }

    /// [`Route::Reject`]: refuse the whole send request with `reason`.
    pub fn reject(reason: impl Into<String>) -> Self {
        Verdict::new(Route::Reject(reason.into()))
    }

    /// This verdict with one more extra target (`"audit"` or `Target::new("audit", Some(0))`).
    pub fn with_extra(mut self, target: impl Into<Target>) -> Self {
        self.extra.push(target.into());
        self
    }

    /// This verdict with these extra targets appended.
    pub fn with_extras<T: Into<Target>>(mut self, targets: impl IntoIterator<Item = T>) -> Self {
        self.extra.extend(targets.into_iter().map(Into::into));
        self
    }
}

impl From<Route> for Verdict {
    fn from(route: Route) -> Self {
        Verdict::new(route)
    }
}
