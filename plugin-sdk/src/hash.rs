//! Java's `String.hashCode`, the tag hash RocketMQ stores in consume-queue entries.

/// `s.hashCode()` as Java computes it: `h = 31 * h + c` over the UTF-16 code units of `s`,
/// wrapping at 32 bits. This is the value a `tag-hashes` prefilter must contain for a tag.
pub fn java_string_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    h
}
