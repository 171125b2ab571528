//! `ExtFields`: the string-to-string "custom header" of a remoting command, with lenient typed getters.
//!
//! Clients send values as JSON strings, numbers or booleans (see REMOTING.md §3); the decoder normalises all of
//! them to text. To keep decoding cheap on every request, all keys and values live in one `String` arena and the
//! map is a small ordered vector of ranges into it: decoding a header costs two allocations, not two per field.
//! Lookups are linear, which beats hashing for the ~5-15 fields a header has.

use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::error::HeaderError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    key: (u32, u32),
    val: (u32, u32),
}

/// Ordered map of header fields. Inserting an existing key replaces its value in place.
#[derive(Clone, Default)]
pub struct ExtFields {
    arena: String,
    entries: Vec<Entry>,
}

/// Equal when the same fields in the same order have the same values (arena layout does not matter).
impl PartialEq for ExtFields {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for ExtFields {}

impl fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl ExtFields {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(fields: usize) -> Self {
        Self {
            arena: String::with_capacity(fields * 24),
            entries: Vec::with_capacity(fields),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn slice(&self, r: (u32, u32)) -> &str {
        &self.arena[r.0 as usize..r.1 as usize]
    }

    /// Iterates `(key, value)` in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries
            .iter()
            .map(move |e| (self.slice(e.key), self.slice(e.val)))
    }

    fn position(&self, key: &str) -> Option<usize> {
        find(self.arena.as_bytes(), &self.entries, key.as_bytes())
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|i| self.slice(self.entries[i].val))
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    fn push_str(&mut self, s: &str) -> (u32, u32) {
        let start = self.arena.len() as u32;
        self.arena.push_str(s);
        (start, self.arena.len() as u32)
    }

    fn push_display(&mut self, v: impl fmt::Display) -> (u32, u32) {
        let start = self.arena.len() as u32;
        // Writing into a String cannot fail.
        let _ = write!(self.arena, "{v}");
        (start, self.arena.len() as u32)
    }

    /// An empty map with room for `text` bytes of keys and values and `fields` fields.
    pub(super) fn with_text_capacity(text: usize, fields: usize) -> Self {
        Self {
            arena: String::with_capacity(text),
            entries: Vec::with_capacity(fields),
        }
    }

    /// Bytes of key and value text held (an upper bound of what the fields need when encoded).
    pub(super) fn text_len(&self) -> usize {
        self.arena.len()
    }

    /// All key and value text held (with the old values of replaced fields).
    pub(super) fn text(&self) -> &str {
        &self.arena
    }

    /// The text arena, for a decoder to write a field's key and then its value straight into it;
    /// [`ExtFields::push_written`] then records the field.
    pub(super) fn text_mut(&mut self) -> &mut String {
        &mut self.arena
    }

    /// Records the field whose key is the arena text `key_start..val_start` and whose value is the text from
    /// `val_start` to the arena's end (as written through [`ExtFields::text_mut`]). An existing key gets the new
    /// value in place.
    pub(super) fn push_written(&mut self, key_start: usize, val_start: usize) {
        let key = (key_start as u32, val_start as u32);
        let val = (val_start as u32, self.arena.len() as u32);
        let bytes = self.arena.as_bytes();
        match find(bytes, &self.entries, &bytes[key_start..val_start]) {
            Some(i) => self.entries[i].val = val,
            None => self.entries.push(Entry { key, val }),
        }
    }

    fn set_value(&mut self, key: &str, val: (u32, u32)) {
        match self.position(key) {
            Some(i) => self.entries[i].val = val,
            None => {
                let key = self.push_str(key);
                self.entries.push(Entry { key, val });
            }
        }
    }

    /// Sets `key` to `value` (replacing an existing value, keeping its position).
    pub fn insert(&mut self, key: &str, value: &str) {
        let val = self.push_str(value);
        self.set_value(key, val);
    }

    /// Sets `key` to the `Display` text of `value` (numbers, bools) without an intermediate `String`.
    pub fn insert_display(&mut self, key: &str, value: impl fmt::Display) {
        let val = self.push_display(value);
        self.set_value(key, val);
    }

    /// Removes `key`; returns whether it was present. (Its bytes stay in the arena until the map is dropped.)
    pub fn remove(&mut self, key: &str) -> bool {
        match self.position(key) {
            Some(i) => {
                self.entries.remove(i);
                true
            }
            None => false,
        }
    }

    /// Parses `key` as an `i32`; `Ok(None)` when absent or empty.
    pub fn get_i32(&self, key: &'static str) -> Result<Option<i32>, HeaderError> {
        self.get_parsed(key, "a 32-bit integer")
    }

    /// Parses `key` as an `i64`; `Ok(None)` when absent or empty.
    pub fn get_i64(&self, key: &'static str) -> Result<Option<i64>, HeaderError> {
        self.get_parsed(key, "a 64-bit integer")
    }

    /// Parses `key` as a boolean: `true/false/1/0`, case-insensitive; `Ok(None)` when absent or empty.
    pub fn get_bool(&self, key: &'static str) -> Result<Option<bool>, HeaderError> {
        match self.get(key).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(Some(false)),
            Some(v) => Err(invalid(key, v, "a boolean (true/false/1/0)")),
        }
    }

    fn get_parsed<T: std::str::FromStr>(
        &self,
        key: &'static str,
        expected: &'static str,
    ) -> Result<Option<T>, HeaderError> {
        match self.get(key).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<T>()
                .map(Some)
                .map_err(|_| invalid(key, v, expected)),
        }
    }

    /// The value of a required field.
    pub fn require(&self, key: &'static str) -> Result<&str, HeaderError> {
        self.get(key).ok_or(HeaderError::Missing(key))
    }

    pub fn require_i32(&self, key: &'static str) -> Result<i32, HeaderError> {
        self.get_i32(key)?.ok_or(HeaderError::Missing(key))
    }

    pub fn require_i64(&self, key: &'static str) -> Result<i64, HeaderError> {
        self.get_i64(key)?.ok_or(HeaderError::Missing(key))
    }

    pub fn require_bool(&self, key: &'static str) -> Result<bool, HeaderError> {
        self.get_bool(key)?.ok_or(HeaderError::Missing(key))
    }
}

/// The index of the entry whose key is `key`. Length and first byte are compared before the rest: most keys
/// differ in one of them (V2 send headers' keys are single letters), so a lookup rarely calls `memcmp`.
fn find(arena: &[u8], entries: &[Entry], key: &[u8]) -> Option<usize> {
    let len = key.len() as u32;
    let Some(&first) = key.first() else {
        return entries.iter().position(|e| e.key.0 == e.key.1);
    };
    entries.iter().position(|e| {
        e.key.1 - e.key.0 == len
            && arena[e.key.0 as usize] == first
            && &arena[e.key.0 as usize..e.key.1 as usize] == key
    })
}

fn invalid(field: &'static str, value: &str, expected: &'static str) -> HeaderError {
    // Bound the echoed value: it goes into a remark sent back to the peer.
    let value: String = value.chars().take(64).collect();
    HeaderError::Invalid {
        field,
        value,
        expected,
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        let mut m = ExtFields::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

// ---- lenient JSON decoding: values may be strings, numbers, booleans or null ----

impl<'de> Deserialize<'de> for ExtFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MapVisitor)
    }
}

struct MapVisitor;

impl<'de> Visitor<'de> for MapVisitor {
    type Value = ExtFields;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of header fields")
    }

    fn visit_unit<E: de::Error>(self) -> Result<ExtFields, E> {
        Ok(ExtFields::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExtFields, A::Error> {
        let mut m = ExtFields::with_capacity(map.size_hint().unwrap_or(8));
        loop {
            let key_start = m.arena.len();
            if map.next_key_seed(TextSeed(&mut m.arena, false))?.is_none() {
                break;
            }
            let val_start = m.arena.len();
            let present = map.next_value_seed(TextSeed(&mut m.arena, true))?;
            if !present {
                continue; // null value: treat the field as absent
            }
            m.push_written(key_start, val_start);
        }
        Ok(m)
    }
}

/// Appends a scalar (string, number, bool) as text to the arena. Returns false for null.
struct TextSeed<'a>(&'a mut String, bool);

impl<'de> DeserializeSeed<'de> for TextSeed<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        if self.1 {
            d.deserialize_any(self)
        } else {
            d.deserialize_str(self)
        }
    }
}

impl<'de> Visitor<'de> for TextSeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.0.push_str(v);
        Ok(true)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        let _ = write!(self.0, "{v}");
        Ok(true)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        let _ = write!(self.0, "{v}");
        Ok(true)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            let _ = write!(self.0, "{}", v as i64);
        } else {
            let _ = write!(self.0, "{v}");
        }
        Ok(true)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.0.push_str(if v { "true" } else { "false" });
        Ok(true)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_json_values() {
        let m: ExtFields = serde_json::from_str(
            r#"{"a":"x","n":42,"neg":-7,"b":false,"t":true,"z":null,"s":"1","f":1.0,"u":"\u0001k"}"#,
        )
        .unwrap();
        assert_eq!(m.get("a"), Some("x"));
        assert_eq!(m.get_i32("n").unwrap(), Some(42));
        assert_eq!(m.get_i64("neg").unwrap(), Some(-7));
        assert_eq!(m.get_bool("b").unwrap(), Some(false));
        assert_eq!(m.get_bool("t").unwrap(), Some(true));
        assert_eq!(m.get_bool("s").unwrap(), Some(true));
        assert_eq!(m.get("z"), None);
        assert_eq!(m.get("f"), Some("1"));
        assert_eq!(m.get("u"), Some("\u{1}k"));
        assert_eq!(m.len(), 8);
        assert!(serde_json::from_str::<ExtFields>(r#"{"a":[1]}"#).is_err());
        assert!(serde_json::from_str::<ExtFields>("null")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn typed_getters() {
        let mut m = ExtFields::new();
        m.insert("n", " 12 ");
        m.insert("bad", "x1");
        m.insert("B", "TRUE");
        m.insert("e", "");
        assert_eq!(m.get_i32("n").unwrap(), Some(12));
        assert_eq!(m.get_i32("e").unwrap(), None);
        assert_eq!(m.get_bool("B").unwrap(), Some(true));
        assert!(matches!(
            m.get_i64("bad"),
            Err(HeaderError::Invalid { field: "bad", .. })
        ));
        assert!(m.get_bool("bad").is_err());
        assert_eq!(
            m.require_i32("missing"),
            Err(HeaderError::Missing("missing"))
        );
        assert!(m
            .require("missing")
            .unwrap_err()
            .to_string()
            .contains("missing"));
        let big = "9".repeat(20);
        m.insert("big", &big);
        assert!(m.get_i32("big").is_err());
    }

    #[test]
    fn insert_replace_remove_order() {
        let mut m = ExtFields::new();
        m.insert("a", "1");
        m.insert_display("b", 2i64);
        m.insert("a", "3");
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![("a", "3"), ("b", "2")]);
        assert!(m.remove("a"));
        assert!(!m.remove("a"));
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![("b", "2")]);
        m.insert("", "e1");
        m.insert("c", "x");
        m.insert("", "e2");
        assert_eq!(m.get(""), Some("e2"));
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            vec![("b", "2"), ("", "e2"), ("c", "x")]
        );
        let d: ExtFields = serde_json::from_str(r#"{"k":"1","k":"2"}"#).unwrap();
        assert_eq!(d.iter().collect::<Vec<_>>(), vec![("k", "2")]);
    }
}
