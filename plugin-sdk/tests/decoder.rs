//! Batch encoding v1: round trips, property rules, and malformed batches (never a panic).

use wasmq_plugin_sdk::{
    bitset_len, encode_batch, encode_properties, java_string_hash, Batch, BatchBuilder,
    DecodeErrorKind, MatchBits, Message, MessageSpec, MIN_MESSAGE_LEN,
};

fn sample() -> Vec<u8> {
    encode_batch(&[
        MessageSpec {
            queue_offset: 10,
            store_timestamp: 1_700_000_000_000,
            topic: "orders",
            properties: &[("TAGS", "paid"), ("KEYS", "k1  k2 "), ("region", "eu")],
            body: b"{\"amount\":3}",
        },
        MessageSpec {
            queue_offset: 11,
            store_timestamp: -1,
            topic: "",
            properties: &[],
            body: b"",
        },
        MessageSpec {
            queue_offset: i64::MAX,
            topic: "t\u{e9}",
            properties: &[("UNIQ_KEY", "ABC"), ("TAGS", "\u{1F600}")],
            ..Default::default()
        },
    ])
}

#[test]
fn exact_bytes_of_one_message() {
    let bytes = encode_batch(&[MessageSpec {
        queue_offset: 0x0102,
        store_timestamp: 3,
        topic: "T",
        properties: &[("a", "b")],
        body: b"xy",
    }]);
    let mut want = vec![1, 0, 0, 0];
    want.extend_from_slice(&(26u32 + 1 + 4 + 2).to_le_bytes()); // len
    want.extend_from_slice(&[0x02, 0x01, 0, 0, 0, 0, 0, 0]); // queue_offset
    want.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]); // store_timestamp
    want.extend_from_slice(&[1, 0, b'T']); // topic
    want.extend_from_slice(&[4, 0, 0, 0, b'a', 1, b'b', 2]); // props
    want.extend_from_slice(&[2, 0, 0, 0, b'x', b'y']); // body
    assert_eq!(bytes, want);
    assert_eq!(MIN_MESSAGE_LEN, 30);
}

#[test]
fn round_trip() {
    let bytes = sample();
    let batch = Batch::new(&bytes).unwrap();
    assert_eq!(batch.message_count(), 3);
    let messages = batch.collect_all().unwrap();
    assert_eq!(messages.len(), 3);

    let m = &messages[0];
    assert_eq!(m.topic(), "orders");
    assert_eq!(m.queue_offset(), 10);
    assert_eq!(m.store_timestamp(), 1_700_000_000_000);
    assert_eq!(m.tags(), Some("paid"));
    assert_eq!(m.keys().collect::<Vec<_>>(), ["k1", "k2"]);
    assert_eq!(m.property("region"), Some("eu"));
    assert_eq!(m.property("regio"), None);
    assert_eq!(m.property("regionx"), None);
    assert_eq!(m.body(), b"{\"amount\":3}");
    assert_eq!(
        m.properties().collect::<Vec<_>>(),
        [("TAGS", "paid"), ("KEYS", "k1  k2 "), ("region", "eu")]
    );

    let m = &messages[1];
    assert_eq!((m.topic(), m.tags(), m.keys().count()), ("", None, 0));
    assert_eq!(m.store_timestamp(), -1);
    assert!(m.body().is_empty());

    let m = &messages[2];
    assert_eq!(m.topic(), "t\u{e9}");
    assert_eq!(m.tags(), Some("\u{1F600}"));
    assert_eq!(m.property("UNIQ_KEY"), Some("ABC"));
    assert_eq!(m.queue_offset(), i64::MAX);
}

#[test]
fn empty_batch() {
    let bytes = BatchBuilder::new().finish();
    assert_eq!(bytes, [0, 0, 0, 0]);
    assert_eq!(Batch::new(&bytes).unwrap().count(), 0);
}

fn one_with_raw_props(props: &[u8]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.push_raw(0, 0, "t", props, b"");
    b.finish()
}

#[test]
fn property_rules_follow_rocketmq() {
    let bytes = one_with_raw_props(
        b"noseparator\x02\x01novalue\x02empty\x01\x02a\x01x\x01y\x02TAGS\x01t1\x02TAGS\x01t2\x02empty\x01e\x02last\x01v",
    );
    let m = Batch::new(&bytes).unwrap().next().unwrap().unwrap();
    assert_eq!(m.property("noseparator"), None);
    // An empty value is no property: a later item of the same name is found.
    assert_eq!(m.property("empty"), Some("e"));
    assert_eq!(m.property(""), None);
    // The value runs from the first \x01 to the next \x02.
    assert_eq!(m.property("a"), Some("x\x01y"));
    // Separators in a name never match.
    assert_eq!(m.property("a\x01x"), None);
    // Names are unique in practice; the first occurrence wins.
    assert_eq!(m.tags(), Some("t1"));
    // The final \x02 may be missing.
    assert_eq!(m.property("last"), Some("v"));
    assert_eq!(
        m.properties().collect::<Vec<_>>(),
        [
            ("a", "x\x01y"),
            ("TAGS", "t1"),
            ("TAGS", "t2"),
            ("empty", "e"),
            ("last", "v")
        ]
    );
}

#[test]
fn message_from_parts() {
    let props = encode_properties([("TAGS", "x")]);
    let m = Message::from_parts(1, 2, "t", props.as_bytes(), b"b");
    assert_eq!(m.tags(), Some("x"));
    assert_eq!(m.raw_properties(), b"TAGS\x01x\x02");
    assert!(format!("{m:?}").contains("TAGS"));
}

fn decode(bytes: &[u8]) -> Result<usize, DecodeErrorKind> {
    let batch = Batch::new(bytes).map_err(|e| e.kind)?;
    let mut n = 0;
    for m in batch {
        let m = m.map_err(|e| e.kind)?;
        // Touch everything, as a filter would.
        let _ = (m.topic(), m.tags(), m.keys().count(), m.body().len());
        let _ = m.properties().count();
        n += 1;
    }
    Ok(n)
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample();
    assert_eq!(decode(&bytes), Ok(3));
    for cut in 0..bytes.len() {
        assert!(
            decode(&bytes[..cut]).is_err(),
            "prefix of {cut} bytes decoded"
        );
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut bytes = sample();
    bytes.push(0);
    assert_eq!(decode(&bytes), Err(DecodeErrorKind::TrailingBytes));
}

#[test]
fn huge_count_is_refused_before_anything_is_sized_by_it() {
    let mut bytes = sample();
    bytes[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(decode(&bytes), Err(DecodeErrorKind::CountTooLarge));
    // Room for a fourth message by size, but it is not there.
    bytes[..4].copy_from_slice(&4u32.to_le_bytes());
    assert_eq!(decode(&bytes), Err(DecodeErrorKind::Truncated));
    let room = (bytes.len() - 4) / MIN_MESSAGE_LEN + 1;
    bytes[..4].copy_from_slice(&(room as u32).to_le_bytes());
    assert_eq!(decode(&bytes), Err(DecodeErrorKind::CountTooLarge));
    assert_eq!(decode(&[]), Err(DecodeErrorKind::Truncated));
    assert_eq!(decode(&[1, 0]), Err(DecodeErrorKind::Truncated));
}

#[test]
fn lengths_that_lie_are_errors() {
    let clean = one_with_raw_props(b"a\x01b\x02");
    // Field offsets in `clean`: count 0..4, len 4..8, qo 8..16, ts 16..24, topic_len 24..26,
    // topic 26, props_len 27..31, props 31..35, body_len 35..39.
    let patch = |at: usize, value: &[u8]| {
        let mut b = clean.clone();
        b[at..at + value.len()].copy_from_slice(value);
        decode(&b)
    };
    assert_eq!(decode(&clean), Ok(1));
    assert_eq!(
        patch(4, &u32::MAX.to_le_bytes()),
        Err(DecodeErrorKind::Truncated)
    );
    assert_eq!(
        patch(4, &25u32.to_le_bytes()),
        Err(DecodeErrorKind::FieldOverrunsMessage)
    );
    assert_eq!(
        patch(24, &u16::MAX.to_le_bytes()),
        Err(DecodeErrorKind::FieldOverrunsMessage)
    );
    assert_eq!(
        patch(27, &u32::MAX.to_le_bytes()),
        Err(DecodeErrorKind::FieldOverrunsMessage)
    );
    assert_eq!(
        patch(35, &1u32.to_le_bytes()),
        Err(DecodeErrorKind::FieldOverrunsMessage)
    );
    assert_eq!(patch(26, &[0xff]), Err(DecodeErrorKind::InvalidUtf8));
}

#[test]
fn properties_that_are_not_utf8_read_as_absent() {
    let bytes = one_with_raw_props(b"a\x01\xc3\x02b\x01ok\x02\xff\x01x\x02c\x01\xe2\x82\xac");
    let m = Batch::new(&bytes).unwrap().next().unwrap().unwrap();
    assert_eq!(m.property("a"), None);
    assert_eq!(m.property("b"), Some("ok"));
    assert_eq!(m.property("c"), Some("\u{20ac}"));
    assert_eq!(
        m.properties().collect::<Vec<_>>(),
        [("b", "ok"), ("c", "\u{20ac}")]
    );
}

/// Lookups agree with a plain reference reading of the stored form, for separators at every
/// alignment of the word-at-a-time search.
#[test]
fn property_lookup_matches_a_reference_reading() {
    fn reference<'a>(props: &'a str, name: &str) -> Option<&'a str> {
        props
            .split('\u{2}')
            .filter_map(|item| item.split_once('\u{1}'))
            .find(|(n, v)| *n == name && !v.is_empty())
            .map(|(_, v)| v)
    }
    let names = ["a", "TAGS", "k", "longer_name_x", "b"];
    let mut state: u32 = 12345;
    let mut next = move |n: u32| {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (state >> 16) % n
    };
    for _ in 0..3000 {
        let mut props = String::new();
        for _ in 0..next(6) {
            let name = names[next(names.len() as u32) as usize];
            props.push_str(name);
            if next(8) != 0 {
                props.push('\u{1}');
            }
            for _ in 0..next(19) {
                props.push((b'a' + next(3) as u8) as char);
            }
            if next(6) != 0 {
                props.push('\u{2}');
            }
        }
        let m = Message::from_parts(0, 0, "t", props.as_bytes(), b"");
        for name in names {
            assert_eq!(
                m.property(name),
                reference(&props, name),
                "{props:?} {name}"
            );
        }
    }
}

#[test]
fn reserved_bytes_inside_a_message_are_skipped() {
    let mut bytes = one_with_raw_props(b"a\x01b");
    let len = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    bytes[4..8].copy_from_slice(&(len + 3).to_le_bytes());
    bytes.extend_from_slice(&[9, 9, 9]);
    let m = Batch::new(&bytes).unwrap().collect_all().unwrap();
    assert_eq!(m[0].property("a"), Some("b"));
}

#[test]
fn iterator_stops_after_an_error() {
    let bytes = sample();
    let mut batch = Batch::new(&bytes[..bytes.len() - 1]).unwrap();
    assert!(batch.next().unwrap().is_ok());
    assert!(batch.next().unwrap().is_ok());
    assert!(batch.next().unwrap().is_err());
    assert!(batch.next().is_none());
    assert!(batch.next().is_none());
}

/// Deterministic pseudo-random corruption: whatever the bytes, decoding returns.
#[test]
fn corrupted_batches_never_panic() {
    let clean = sample();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut bytes = clean.clone();
        for _ in 0..(next() % 4 + 1) {
            let at = (next() as usize) % bytes.len();
            bytes[at] = next() as u8;
        }
        if next() % 8 == 0 {
            let keep = (next() as usize) % bytes.len();
            bytes.truncate(keep);
        }
        let _ = decode(&bytes);
    }
}

#[test]
fn bitset_layout() {
    assert_eq!(bitset_len(0), 0);
    assert_eq!(bitset_len(1), 1);
    assert_eq!(bitset_len(8), 1);
    assert_eq!(bitset_len(9), 2);
    let mut bits = MatchBits::new(10);
    bits.set(0);
    bits.set(3);
    bits.set(9);
    assert_eq!(bits.as_bytes(), [0b0000_1001, 0b0000_0010]);
    assert!(bits.get(3) && !bits.get(4) && !bits.get(100));
    assert_eq!(bits.iter_set().collect::<Vec<_>>(), [0, 3, 9]);
    let bytes = bits.clone().into_bytes();
    assert_eq!(MatchBits::from_bytes(bytes.clone(), 10), Some(bits));
    assert_eq!(MatchBits::from_bytes(bytes, 17), None);
}

#[test]
fn java_hash_code() {
    assert_eq!(java_string_hash(""), 0);
    assert_eq!(java_string_hash("a"), 97);
    assert_eq!(java_string_hash("TagA"), 2_598_919);
    assert_eq!(java_string_hash("Aa"), java_string_hash("BB"));
    // Overflow wraps like Java's int.
    assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    // Non-BMP characters hash as two UTF-16 surrogates (0xD83D, 0xDE00).
    assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    assert_eq!(java_string_hash("\u{e9}"), 0xE9);
}
