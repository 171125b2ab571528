//! Encoder for batch encoding v1, for tests on either side of the boundary (the broker has
//! its own encoder on its hot path; this one favours clarity).

use crate::batch::{FIXED_AFTER_LEN, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR};

/// One message to encode; `..Default::default()` fills what a test does not care about.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessageSpec<'a> {
    /// Offset in the consume queue.
    pub queue_offset: i64,
    /// Store time, milliseconds since the Unix epoch.
    pub store_timestamp: i64,
    /// Topic name.
    pub topic: &'a str,
    /// Properties, encoded in RocketMQ's stored form by [`encode_properties`].
    pub properties: &'a [(&'a str, &'a str)],
    /// Body (send it empty when the filter does not need bodies).
    pub body: &'a [u8],
}

/// RocketMQ's stored form of properties: `name \x01 value \x02` for each pair.
pub fn encode_properties<'a>(properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in properties {
        out.push_str(name);
        out.push(NAME_VALUE_SEPARATOR as char);
        out.push_str(value);
        out.push(PROPERTY_SEPARATOR as char);
    }
    out
}

/// Builds a batch message by message.
///
/// ```
/// use wasmq_plugin_sdk::{Batch, BatchBuilder, MessageSpec};
///
/// let mut builder = BatchBuilder::new();
/// builder.push(&MessageSpec {
///     queue_offset: 7,
///     topic: "orders",
///     properties: &[("TAGS", "paid")],
///     ..Default::default()
/// });
/// let bytes = builder.finish();
/// let messages = Batch::new(&bytes).unwrap().collect_all().unwrap();
/// assert_eq!(messages[0].tags(), Some("paid"));
/// ```
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: u32,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty batch.
    pub fn new() -> Self {
        BatchBuilder {
            buf: vec![0; 4],
            count: 0,
        }
    }

    /// Appends a message.
    pub fn push(&mut self, message: &MessageSpec<'_>) -> &mut Self {
        let props = encode_properties(message.properties.iter().copied());
        self.push_raw(
            message.queue_offset,
            message.store_timestamp,
            message.topic,
            props.as_bytes(),
            message.body,
        )
    }

    /// Appends a message whose properties are given in stored form, as they are (this is how
    /// a test builds odd or invalid properties).
    ///
    /// # Panics
    /// When the topic is longer than `u16::MAX` bytes or the message longer than `u32::MAX`.
    pub fn push_raw(
        &mut self,
        queue_offset: i64,
        store_timestamp: i64,
        topic: &str,
        props: &[u8],
        body: &[u8],
    ) -> &mut Self {
        let topic_len = u16::try_from(topic.len()).expect("topic longer than u16::MAX bytes");
        let len = u32::try_from(FIXED_AFTER_LEN + topic.len() + props.len() + body.len())
            .expect("message longer than u32::MAX bytes");
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&queue_offset.to_le_bytes());
        self.buf.extend_from_slice(&store_timestamp.to_le_bytes());
        self.buf.extend_from_slice(&topic_len.to_le_bytes());
        self.buf.extend_from_slice(topic.as_bytes());
        self.buf
            .extend_from_slice(&(props.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(props);
        self.buf
            .extend_from_slice(&(body.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(body);
        self.count += 1;
        self
    }

    /// Messages pushed so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The encoded batch.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[..4].copy_from_slice(&self.count.to_le_bytes());
        self.buf
    }
}

/// Encodes `messages` as one batch.
pub fn encode_batch(messages: &[MessageSpec<'_>]) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for message in messages {
        builder.push(message);
    }
    builder.finish()
}
