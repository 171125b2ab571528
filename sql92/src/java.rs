//! The Java library behaviour RocketMQ's evaluator relies on: `Integer.valueOf`,
//! `Long.valueOf`, `Double.valueOf`, `Boolean.valueOf`, `Double.compare` and
//! `ComparisonExpression.__compare` (with `convertStringExpressions == true`,
//! which `SelectorParser.parse` always sets).

use std::borrow::Cow;
use std::cmp::Ordering;

/// Why an evaluation failed. RocketMQ throws; the broker then treats the whole
/// message as not matching (`ExpressionMessageFilter.isMatchedByCommitLog`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// `NumberFormatException` (or another parse failure) coercing a string.
    Number,
    /// `ClassCastException`: a boolean on the left compared with a string.
    BoolVsString,
}

impl Fault {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Fault::Number => "a string could not be converted to the number it is compared with",
            Fault::BoolVsString => "a boolean on the left of '=' cannot be compared with a string",
        }
    }
}

/// A runtime value (`Object` in RocketMQ). Properties are always strings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    /// `java.lang.Integer`
    Int(i32),
    /// `java.lang.Long`
    Long(i64),
    /// `java.lang.Double`
    Double(f64),
    Str(Cow<'a, str>),
}

/// `Double.compare`: -0.0 < 0.0, NaN equals NaN and is above +Infinity.
pub(crate) fn double_cmp(a: f64, b: f64) -> Ordering {
    if a < b {
        return Ordering::Less;
    }
    if a > b {
        return Ordering::Greater;
    }
    // doubleToLongBits: every NaN collapses to the canonical one.
    let bits = |d: f64| -> i64 {
        if d.is_nan() {
            0x7ff8_0000_0000_0000
        } else {
            d.to_bits() as i64
        }
    };
    bits(a).cmp(&bits(b))
}

/// `Boolean.valueOf(String)`: `"true"` ignoring (ASCII) case, anything else false.
pub(crate) fn bool_of(s: &str) -> bool {
    s.eq_ignore_ascii_case("true")
}

/// First code point (BMP only) of each block of Unicode decimal digits
/// (general category Nd, Unicode 14/15; the same set in Java 11 to 21).
/// `Character.digit(char, 10)` accepts all of them; supplementary-plane
/// digits are surrogate pairs to Java and never digits.
const ND_ZEROS: [u16; 37] = [
    0x0030, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
    0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80,
    0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0,
    0xFF10,
];

/// `Character.digit(c, 10)`.
fn java_digit(c: char) -> Option<u32> {
    if c.is_ascii_digit() {
        return Some(c as u32 - '0' as u32);
    }
    let cp = u32::from(c);
    if cp > 0xFFFF {
        return None;
    }
    let i = ND_ZEROS.partition_point(|&z| u32::from(z) <= cp);
    let zero = u32::from(*ND_ZEROS.get(i.checked_sub(1)?)?);
    let d = cp - zero;
    (d < 10).then_some(d)
}

/// `Long.parseLong(s, 10)` / `Integer.parseInt(s, 10)` with the magnitude
/// limits given: optional leading `+`/`-`, at least one (Unicode) decimal
/// digit, no whitespace, overflow is an error.
fn parse_integer(s: &str, max_pos: u64, max_neg: u64) -> Option<(bool, u64)> {
    let mut chars = s.chars();
    let first = chars.clone().next()?;
    let negative = first == '-';
    if first < '0' {
        if first != '-' && first != '+' {
            return None;
        }
        chars.next();
        if chars.as_str().is_empty() {
            return None; // lone "+" or "-"
        }
    }
    let limit = if negative { max_neg } else { max_pos };
    let mut mag: u64 = 0;
    for c in chars {
        let d = java_digit(c)?;
        mag = mag.checked_mul(10)?.checked_add(u64::from(d))?;
        if mag > limit {
            return None;
        }
    }
    Some((negative, mag))
}

/// `Integer.valueOf(String)`.
pub(crate) fn parse_int(s: &str) -> Result<i32, Fault> {
    // Fast path: short ASCII digit strings.
    let b = s.as_bytes();
    if !b.is_empty() && b.len() <= 9 && b.iter().all(u8::is_ascii_digit) {
        return Ok(b.iter().fold(0i32, |a, &c| a * 10 + i32::from(c - b'0')));
    }
    let (neg, mag) = parse_integer(s, i32::MAX as u64, 1 << 31).ok_or(Fault::Number)?;
    let v = mag as i64;
    Ok((if neg { -v } else { v }) as i32)
}

/// `Long.valueOf(String)`.
pub(crate) fn parse_long(s: &str) -> Result<i64, Fault> {
    let (neg, mag) = parse_integer(s, i64::MAX as u64, 1 << 63).ok_or(Fault::Number)?;
    Ok(if neg {
        (mag as i64).wrapping_neg() // 2^63 wraps to i64::MIN, as intended
    } else {
        mag as i64
    })
}

/// `Double.valueOf(String)` (`FloatingDecimal.readJavaFormatString`).
pub(crate) fn parse_double(s: &str) -> Result<f64, Fault> {
    java_double(s).ok_or(Fault::Number)
}

fn java_double(s: &str) -> Option<f64> {
    // Fast path: up to 15 ASCII digits are exact in a double.
    let b = s.as_bytes();
    if !b.is_empty() && b.len() <= 15 && b.iter().all(u8::is_ascii_digit) {
        return Some(b.iter().fold(0u64, |a, &c| a * 10 + u64::from(c - b'0')) as f64);
    }
    // String.trim(): every char <= U+0020 at either end.
    let t = s.trim_matches(|c: char| c <= ' ');
    let b = t.as_bytes();
    let mut i = 0;
    let negative = b.first() == Some(&b'-');
    if matches!(b.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    let rest = &t[i..];
    match b.get(i)? {
        b'N' => return (rest == "NaN").then_some(f64::NAN),
        b'I' => {
            return (rest == "Infinity").then_some(if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        b'0' if matches!(b.get(i + 1), Some(b'x' | b'X')) => return hex_double(t),
        _ => {}
    }
    // digits with at most one '.', at least one digit
    let mut digits = 0usize;
    let mut dot = false;
    while let Some(&c) = b.get(i) {
        if c.is_ascii_digit() {
            digits += 1;
        } else if c == b'.' {
            if dot {
                return None;
            }
            dot = true;
        } else {
            break;
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let d = b[i.min(b.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if d == 0 {
            return None;
        }
        i += d;
    }
    let number = &t[..i];
    if i < b.len() && (i != b.len() - 1 || !matches!(b[i], b'f' | b'F' | b'd' | b'D')) {
        return None;
    }
    // Rust's parser accepts this syntax and rounds correctly, as Java does.
    number.parse::<f64>().ok()
}

/// `FloatingDecimal.parseHexString`: the whole (trimmed) string must match
/// `[-+]?0[xX](hex+ .? | hex* . hex+)[pP][-+]?digit+[fFdD]?`.
/// Rounds to nearest, ties to even; overflow gives infinity, underflow zero.
fn hex_double(t: &str) -> Option<f64> {
    let b = t.as_bytes();
    let mut i = 0;
    let negative = b[0] == b'-';
    if matches!(b[0], b'+' | b'-') {
        i += 1;
    }
    i += 2; // "0x"
    let mut mant: u64 = 0;
    let mut sticky = false; // a non-zero digit was dropped
    let mut dropped: i64 = 0; // significant hex digits beyond `mant`
    let mut frac_digits: i64 = 0;
    let mut n_digits = 0usize;
    let mut dot = false;
    while let Some(&c) = b.get(i) {
        if c == b'.' {
            if dot {
                return None;
            }
            dot = true;
        } else if let Some(d) = (c as char).to_digit(16) {
            n_digits += 1;
            if dot {
                frac_digits += 1;
            }
            if mant >> 60 == 0 {
                mant = (mant << 4) | u64::from(d);
            } else {
                dropped += 1;
                sticky |= d != 0;
            }
        } else {
            break;
        }
        i += 1;
    }
    if n_digits == 0 || !matches!(b.get(i), Some(b'p' | b'P')) {
        return None;
    }
    i += 1;
    let exp_negative = b.get(i) == Some(&b'-');
    if matches!(b.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    let exp_start = i;
    let mut exp: i64 = 0;
    while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
        // Saturate: anything this large is already infinity or zero.
        exp = (exp * 10 + i64::from(c - b'0')).min(1 << 40);
        i += 1;
    }
    if i == exp_start {
        return None;
    }
    if i < b.len() && (i != b.len() - 1 || !matches!(b[i], b'f' | b'F' | b'd' | b'D')) {
        return None;
    }
    let sign = if negative { -1.0 } else { 1.0 };
    if mant == 0 {
        return Some(sign * 0.0);
    }
    let exp = if exp_negative { -exp } else { exp };
    // value = (mant + sticky fraction) * 2^e2
    let e2 = exp + 4 * dropped - 4 * frac_digits;
    let nbits = i64::from(64 - mant.leading_zeros());
    let top = e2 + nbits - 1; // exponent of the leading bit
    if top > 1023 {
        return Some(sign * f64::INFINITY);
    }
    // Number of low bits of `mant` to round away: keep 53 bits for a
    // normal result, fewer for a subnormal one (lowest bit is 2^-1074).
    let shift = if top >= -1022 { nbits - 53 } else { -1074 - e2 };
    let bits: u64 = if shift <= 0 {
        // Exact (sticky is only set when mant has more than 60 bits).
        let m = mant << (-shift);
        if top >= -1022 {
            (((top + 1023) as u64) << 52) | (m & ((1 << 52) - 1))
        } else {
            m
        }
    } else {
        let (kept, half, below) = if shift >= 128 {
            (0u128, false, true)
        } else {
            let m = u128::from(mant);
            let kept = m >> shift;
            let rem = m & ((1u128 << shift) - 1);
            let half = 1u128 << (shift - 1);
            (kept, rem >= half, rem != half || sticky)
        };
        // round half to even: up if above half, or exactly half and odd
        let above_half = half && (below || (kept & 1) == 1);
        let kept = kept + u128::from(above_half);
        if top >= -1022 {
            let mut e = top;
            let mut k = kept as u64;
            if k == 1 << 53 {
                k >>= 1;
                e += 1;
                if e > 1023 {
                    return Some(sign * f64::INFINITY);
                }
            }
            (((e + 1023) as u64) << 52) | (k & ((1 << 52) - 1))
        } else {
            // Subnormal; a carry into bit 52 correctly yields the smallest normal.
            kept as u64
        }
    };
    Some(sign * f64::from_bits(bits))
}

/// `ComparisonExpression.__compare(lv, rv, true)` for non-null values.
/// Only called with values of the kinds a selector can produce.
pub(crate) fn compare(l: &Val<'_>, r: &Val<'_>) -> Result<Ordering, Fault> {
    use Val::*;
    Ok(match (l, r) {
        // Same class: compareTo. String order is only ever tested for Equal,
        // so UTF-8 byte order (vs Java's UTF-16 order) is not observable.
        (Str(a), Str(b)) => a.as_ref().cmp(b.as_ref()),
        (Bool(a), Bool(b)) => a.cmp(b),
        (Int(a), Int(b)) => a.cmp(b),
        (Long(a), Long(b)) => a.cmp(b),
        (Double(a), Double(b)) => double_cmp(*a, *b),
        // Numeric promotion.
        (Int(a), Long(b)) => i64::from(*a).cmp(b),
        (Long(a), Int(b)) => a.cmp(&i64::from(*b)),
        (Int(a), Double(b)) => double_cmp(f64::from(*a), *b),
        (Double(a), Int(b)) => double_cmp(*a, f64::from(*b)),
        (Long(a), Double(b)) => double_cmp(*a as f64, *b),
        (Double(a), Long(b)) => double_cmp(*a, *b as f64),
        // A string is converted to the class of the other side.
        (Int(a), Str(s)) => a.cmp(&parse_int(s)?),
        (Long(a), Str(s)) => a.cmp(&parse_long(s)?),
        (Double(a), Str(s)) => double_cmp(*a, parse_double(s)?),
        (Str(s), Int(b)) => parse_int(s)?.cmp(b),
        (Str(s), Long(b)) => parse_long(s)?.cmp(b),
        (Str(s), Double(b)) => double_cmp(parse_double(s)?, *b),
        (Str(s), Bool(b)) => bool_of(s).cmp(b),
        // `Boolean.valueOf((String) lv)` casts the Boolean: ClassCastException.
        (Bool(_), Str(_)) => return Err(Fault::BoolVsString),
        // Any other mix of classes: "return -1".
        _ => Ordering::Less,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_int("5"), Ok(5));
        assert_eq!(parse_int("+5"), Ok(5));
        assert_eq!(parse_int("-0"), Ok(0));
        assert_eq!(parse_int("007"), Ok(7));
        assert_eq!(parse_int("2147483647"), Ok(i32::MAX));
        assert_eq!(parse_int("-2147483648"), Ok(i32::MIN));
        assert_eq!(parse_int("2147483648"), Err(Fault::Number));
        assert_eq!(parse_int("99999999999999999999999"), Err(Fault::Number));
        for bad in [
            "", "+", "-", " 5", "5 ", "5.0", "0x10", "1_0", "5L", "--5", "+-5",
        ] {
            assert_eq!(parse_int(bad), Err(Fault::Number), "{bad:?}");
        }
        // Character.digit accepts every Unicode decimal digit in the BMP.
        assert_eq!(parse_int("\u{0665}"), Ok(5)); // ARABIC-INDIC FIVE
        assert_eq!(parse_int("\u{FF11}\u{FF12}"), Ok(12)); // FULLWIDTH
        assert_eq!(parse_int("-\u{0967}0"), Ok(-10)); // DEVANAGARI ONE
        assert_eq!(parse_int("\u{1D7CE}"), Err(Fault::Number)); // supplementary
        assert_eq!(parse_int("\u{00B2}"), Err(Fault::Number)); // superscript two: No
        assert_eq!(parse_long("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_long("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_long("9223372036854775808"), Err(Fault::Number));
        assert_eq!(parse_long("-9223372036854775809"), Err(Fault::Number));
    }

    #[test]
    fn digits_table_is_consistent() {
        for z in ND_ZEROS {
            for d in 0..10u32 {
                let c = char::from_u32(u32::from(z) + d).unwrap();
                assert_eq!(java_digit(c), Some(d));
            }
            let before = char::from_u32(u32::from(z) - 1).unwrap();
            assert!(java_digit(before).is_none_or(|d| d == 9), "{before:?}");
        }
        assert_eq!(java_digit('a'), None);
        assert_eq!(java_digit('\u{FF1A}'), None);
    }

    #[test]
    fn doubles() {
        let ok = |s: &str| parse_double(s).unwrap();
        assert_eq!(ok("5"), 5.0);
        assert_eq!(ok("999999999999999"), 999999999999999.0);
        assert_eq!(ok("9999999999999999"), 1e16);
        assert_eq!(ok("1.e5"), 1e5);
        assert_eq!(ok(" 5 "), 5.0);
        assert_eq!(ok("\t\n5.\u{1}"), 5.0);
        assert_eq!(ok(".5"), 0.5);
        assert_eq!(ok("+1e3"), 1000.0);
        assert_eq!(ok("-1.5E-3d"), -0.0015);
        assert_eq!(ok("2f"), 2.0);
        assert_eq!(ok("1e400"), f64::INFINITY);
        assert_eq!(ok("-Infinity"), f64::NEG_INFINITY);
        assert!(ok("NaN").is_nan());
        assert!(ok("-NaN").is_nan());
        assert_eq!(ok("0x10p0"), 16.0);
        assert_eq!(ok("0x1.8p1"), 3.0);
        assert_eq!(ok("-0x.8p-1d"), -0.25);
        assert_eq!(ok("0X1P-1074"), f64::from_bits(1));
        assert_eq!(ok("0x1p-1075"), 0.0); // tie to even -> 0
        assert_eq!(ok("0x1.8p-1074"), f64::from_bits(2)); // 1.5 ulp -> 2
        assert_eq!(ok("0x1.fffffffffffff8p0"), 2.0); // tie, odd -> up
        assert_eq!(
            ok("0x1.fffffffffffff7p0"),
            f64::from_bits(0x3fff_ffff_ffff_ffff)
        );
        assert_eq!(ok("0x1.00000000000008p0"), 1.0); // tie, even -> down
        assert_eq!(ok("0x1.000000000000080000001p0"), 1.0 + f64::EPSILON);
        assert_eq!(ok("0x1.fffffffffffffp1023"), f64::MAX);
        assert_eq!(ok("0x1p1024"), f64::INFINITY);
        assert_eq!(ok("0x1p99999999999999999999"), f64::INFINITY);
        assert_eq!(ok("0x0p99999999999999999999"), 0.0);
        assert_eq!(ok("0x1p-99999999999999999999"), 0.0);
        assert_eq!(
            ok("0x0.0000000000000000000000001p100"),
            2f64.powi(100 - 100)
        );
        assert_eq!(
            ok("0x1.fffffffffffffp-1023"),
            f64::from_bits(0x0010_0000_0000_0000)
        );
        for bad in [
            "",
            " ",
            ".",
            "e5",
            "1e",
            "1e+",
            "1x",
            "1ff",
            "1.2.3",
            "nan",
            "inf",
            "Infinityx",
            "0x10",
            "0x",
            "0xp1",
            "0x1p",
            "0x1.2.3p0",
            "1 2",
            "\u{a0}5",
            "٥",
            "+",
            "-",
            "1_0",
        ] {
            assert_eq!(parse_double(bad), Err(Fault::Number), "{bad:?}");
        }
    }

    #[test]
    fn java_double_compare() {
        assert_eq!(double_cmp(-0.0, 0.0), Ordering::Less);
        assert_eq!(double_cmp(f64::NAN, f64::INFINITY), Ordering::Greater);
        assert_eq!(double_cmp(f64::NAN, -f64::NAN), Ordering::Equal);
        assert_eq!(double_cmp(1.0, 1.0), Ordering::Equal);
    }

    #[test]
    fn compare_rules() {
        let s = |x: &'static str| Val::Str(Cow::Borrowed(x));
        assert_eq!(compare(&s("5"), &Val::Int(5)), Ok(Ordering::Equal));
        assert_eq!(compare(&s("5.0"), &Val::Int(5)), Err(Fault::Number));
        assert_eq!(compare(&s("5.0"), &Val::Double(5.0)), Ok(Ordering::Equal));
        assert_eq!(compare(&s("3000000000"), &Val::Int(5)), Err(Fault::Number));
        assert_eq!(
            compare(&s("3000000000"), &Val::Long(1 << 32)),
            Ok(Ordering::Less)
        );
        assert_eq!(
            compare(&Val::Int(5), &Val::Double(5.0)),
            Ok(Ordering::Equal)
        );
        assert_eq!(
            compare(&Val::Long(1 << 53), &Val::Double(9007199254740992.0)),
            Ok(Ordering::Equal)
        );
        assert_eq!(compare(&s("TRUE"), &Val::Bool(true)), Ok(Ordering::Equal));
        assert_eq!(compare(&s("yes"), &Val::Bool(false)), Ok(Ordering::Equal));
        assert_eq!(
            compare(&Val::Bool(true), &s("true")),
            Err(Fault::BoolVsString)
        );
        assert_eq!(compare(&Val::Bool(true), &Val::Int(1)), Ok(Ordering::Less));
        assert_eq!(compare(&Val::Int(1), &Val::Bool(true)), Ok(Ordering::Less));
    }
}
