//! Semantics tests. Expected values follow RocketMQ's classes (see crate docs);
//! the `rocketmq_*` tests port `filter/src/test/.../ExpressionTest.java` and
//! `ParserTest.java` (with string properties, as the broker passes them).

use super::*;

type R = Result<Option<bool>, EvalError>;
const T: R = Ok(Some(true));
const F: R = Ok(Some(false));
const N: R = Ok(None);

fn c(s: &str) -> Expr {
    compile(s).unwrap_or_else(|e| panic!("{s:?} should compile: {e}"))
}

fn is_err(r: R) -> bool {
    r.is_err()
}

fn ce(s: &str) -> CompileError {
    match compile(s) {
        Ok(e) => panic!("{s:?} should not compile, got {e:?}"),
        Err(e) => e,
    }
}

#[track_caller]
fn check(s: &str, msg: &[(&str, &str)], want: R) {
    let e = c(s);
    let got = e.try_evaluate(msg);
    if want.is_err() {
        assert!(
            got.is_err(),
            "{s:?} on {msg:?}: expected an evaluation error, got {got:?}"
        );
    } else {
        assert_eq!(got, want, "{s:?} on {msg:?}");
    }
    // The three entry points agree.
    assert_eq!(e.matches(msg), got == T, "{s:?}");
    assert_eq!(e.evaluate(msg), got.unwrap_or(None), "{s:?}");
}

const ERR: R = Err(EvalError { reason: "any" });

// ---------------------------------------------------------------- operators

#[test]
fn equality_operators() {
    for (s, m, want) in [
        ("a = 'x'", &[("a", "x")][..], T),
        ("a = 'x'", &[("a", "y")], F),
        ("a = 'x'", &[], N),
        ("a <> 'x'", &[("a", "x")], F),
        ("a <> 'x'", &[("a", "y")], T),
        ("a <> 'x'", &[], N),
        ("a = 5", &[("a", "5")], T),
        ("a = 5", &[("a", "6")], F),
        ("a = 5", &[], N),
        ("a = 5", &[("a", "abc")], ERR),
        ("a <> 5", &[("a", "abc")], ERR),
        ("a = b", &[("a", "1"), ("b", "1")], T),
        ("a = b", &[("a", "1"), ("b", "1.0")], F),
        ("a = b", &[("a", "1")], F), // NULL only on the right: FALSE
        ("a = b", &[("b", "1")], N), // NULL on the left: UNKNOWN
        ("a = b", &[], T),           // NULL = NULL: TRUE
        ("5 = a", &[], F),
        ("5 <> a", &[], T),
        ("'x' = a", &[], F),
        ("a = 'x'", &[("a", "X")], F), // case-sensitive
    ] {
        check(s, m, want);
    }
}

#[test]
fn ordering_operators() {
    for (s, m, want) in [
        ("a > 5", &[("a", "6")][..], T),
        ("a > 5", &[("a", "5")], F),
        ("a >= 5", &[("a", "5")], T),
        ("a < 5", &[("a", "-7")], T),
        ("a <= 5", &[("a", "5")], T),
        ("a <= 5", &[("a", "6")], F),
        ("a > 5", &[], N),
        ("a < 5", &[], N),
        ("a > 5", &[("a", "abc")], ERR),
        ("a > 5", &[("a", "")], ERR),
        ("5 < a", &[("a", "6")], T),
        ("5 < a", &[], N),
        ("5 < a", &[("a", "x")], ERR),
        ("a > b", &[("a", "10"), ("b", "9")], T), // numeric, not lexicographic
        ("a > b", &[("a", "10")], N),
        ("a > b", &[("b", "10")], N),
        ("a > b", &[("a", "x"), ("b", "1")], ERR),
        ("a > b", &[("a", " 2 "), ("b", "1.5")], T), // Double.valueOf trims
        ("3 > 2", &[], T),
        ("3 > 2.5", &[], T),
        ("2 < 3000000000", &[], T),
    ] {
        check(s, m, want);
    }
}

#[test]
fn between_and_not_between() {
    for (s, m, want) in [
        ("a BETWEEN 2 AND 10", &[("a", "2")][..], T),
        ("a BETWEEN 2 AND 10", &[("a", "10")], T),
        ("a BETWEEN 2 AND 10", &[("a", "1")], F),
        ("a BETWEEN 2 AND 10", &[("a", "11")], F),
        ("a BETWEEN 2 AND 10", &[], N),
        ("a BETWEEN 2 AND 10", &[("a", "x")], ERR),
        ("a NOT BETWEEN 2 AND 10", &[("a", "1")], T),
        ("a NOT BETWEEN 2 AND 10", &[("a", "11")], T),
        ("a NOT BETWEEN 2 AND 10", &[("a", "5")], F),
        ("a NOT BETWEEN 2 AND 10", &[], N),
        ("a NOT BETWEEN 2 AND 10", &[("a", "x")], ERR),
        ("a BETWEEN 1.5 AND 2.5", &[("a", "2")], T),
        (
            "a BETWEEN b AND c",
            &[("a", "2"), ("b", "1"), ("c", "3")],
            T,
        ),
        ("a BETWEEN b AND c", &[("a", "2"), ("c", "3")], N),
        ("a BETWEEN b AND c", &[("a", "2"), ("b", "3")], F), // FALSE AND NULL
        ("a NOT BETWEEN b AND c", &[("a", "0"), ("b", "1")], T), // TRUE OR NULL
        // Each half converts on its own; the first FALSE short-circuits.
        ("a BETWEEN 1 AND 3000000000", &[("a", "0")], F),
        ("a BETWEEN 1 AND 3000000000", &[("a", "2500000000")], ERR),
        ("a BETWEEN 1 AND 3000000000", &[("a", "5")], T),
        // Negated bounds are not literals: no order check, just never TRUE.
        ("a BETWEEN -10 AND -20", &[("a", "-15")], F),
        ("a BETWEEN -20 AND -10", &[("a", "-15")], T),
        // NOT BETWEEN never checks its bounds.
        ("a NOT BETWEEN 10 AND 0", &[("a", "5")], T),
        (
            "a between 2 and 3 and b = 'x'",
            &[("a", "2"), ("b", "x")],
            T,
        ),
        ("5 BETWEEN 1 AND 10", &[], T),
    ] {
        check(s, m, want);
    }
    assert!(ce("a BETWEEN 10 AND 0").reason.contains("lower bound"));
    ce("a BETWEEN NULL AND 5");
    ce("a BETWEEN 1 AND NULL");
    ce("a NOT BETWEEN NULL AND 5");
    ce("a BETWEEN 'a' AND 'z'");
    ce("a BETWEEN 1 AND 'z'");
    ce("a BETWEEN TRUE AND FALSE");
    ce("'x' BETWEEN 1 AND 2");
    ce("(a = 1) BETWEEN 1 AND 2");
    ce("a BETWEEN 1 OR 2");
    ce("a BETWEEN 1");
    c("a BETWEEN 1 AND 1");
    c("a BETWEEN 1 AND 1.0");
    c("a BETWEEN 2147483647 AND 2147483648");
}

#[test]
fn in_and_not_in() {
    for (s, m, want) in [
        ("a IN ('3', '4', '5')", &[("a", "4")][..], T),
        ("a IN ('3', '4', '5')", &[("a", "8")], F),
        ("a IN ('3', '4', '5')", &[], N),
        ("a NOT IN ('3', '4', '5')", &[("a", "8")], T),
        ("a NOT IN ('3', '4', '5')", &[("a", "3")], F),
        ("a NOT IN ('3', '4', '5')", &[], N),
        ("a IN ('x')", &[("a", "x")], T),
        ("a IN ('')", &[("a", "")], T),
        ("a IN ('4.0')", &[("a", "4")], F), // exact string membership
        (
            "a IN ('a', 'b', 'c', 'd', 'e', 'f', 'g', 'a')",
            &[("a", "g")],
            T,
        ),
        (
            "a IN ('a', 'b', 'c', 'd', 'e', 'f', 'g', 'a')",
            &[("a", "h")],
            F,
        ),
        ("(a) IN ('x')", &[("a", "x")], T),
        ("+a IN ('x')", &[("a", "x")], T),
    ] {
        check(s, m, want);
    }
    ce("'a' IN ('a')");
    ce("a IN (1)");
    ce("a IN ()");
    ce("a IN ('x',)");
    ce("a IN 'x'");
    ce("-a IN ('x')");
    ce("(a = 'x') IN ('x')");
    // Big lists: binary search over the sorted, deduplicated list.
    let list: Vec<String> = (0..1000).rev().map(|i| format!("'v{i}'")).collect();
    let e = c(&format!("a IN ({})", list.join(",")));
    for i in (0..1000).step_by(37) {
        assert!(e.matches(&[("a", format!("v{i}").as_str())]));
    }
    assert!(!e.matches(&[("a", "v1000")]));
}

#[test]
fn is_null() {
    for (s, m, want) in [
        ("a IS NULL", &[][..], T),
        ("a IS NULL", &[("a", "")], F),
        ("a IS NOT NULL", &[("a", "")], T),
        ("a IS NOT NULL", &[], F),
        ("NULL IS NULL", &[], T),
        ("5 IS NULL", &[], F),
        ("'x' IS NOT NULL", &[], T),
        ("-a IS NULL", &[("a", "5")], T),
        ("(a = 1) IS NULL", &[], T),
        ("(a = 1) IS NULL", &[("a", "1")], F),
        ("(a = 1) IS NULL", &[("a", "x")], ERR),
        ("a IS NULL IS NULL", &[], F),
        ("a is null OR a='hello'", &[], T),
        ("a is null OR a='hello'", &[("a", "hello")], T),
        ("a is null OR a='hello'", &[("a", "abc")], F),
    ] {
        check(s, m, want);
    }
    ce("a IS 5");
    ce("a IS NOT 5");
    ce("a IS");
}

#[test]
fn text_operators() {
    for (s, m, want) in [
        ("v CONTAINS 'x'", &[("v", "axb")][..], T),
        ("v STARTSWITH 'ax'", &[("v", "axb")], T),
        ("v ENDSWITH 'xb'", &[("v", "axb")], T),
        ("v CONTAINS 'u'", &[("v", "axb")], F),
        ("v STARTSWITH 'x'", &[("v", "axb")], F),
        ("v ENDSWITH 'a'", &[("v", "axb")], F),
        ("v NOT CONTAINS 'x'", &[("v", "axb")], F),
        ("v NOT STARTSWITH 'ax'", &[("v", "axb")], F),
        ("v NOT ENDSWITH 'xb'", &[("v", "axb")], F),
        ("v NOT CONTAINS 'u'", &[("v", "axb")], T),
        ("v NOT STARTSWITH 'x'", &[("v", "axb")], T),
        ("v NOT ENDSWITH 'a'", &[("v", "axb")], T),
        // Missing property: FALSE for the NOT forms too, never UNKNOWN.
        ("v CONTAINS 'x'", &[], F),
        ("v NOT CONTAINS 'x'", &[], F),
        ("v NOT STARTSWITH 'x'", &[], F),
        ("v NOT ENDSWITH 'x'", &[], F),
        // Empty pattern: FALSE either way.
        ("v CONTAINS ''", &[("v", "axb")], F),
        ("v NOT CONTAINS ''", &[("v", "axb")], F),
        ("v NOT STARTSWITH ''", &[("v", "axb")], F),
        ("v ENDSWITH ''", &[("v", "")], F),
        // Non-strings: FALSE.
        ("5 CONTAINS '5'", &[], F),
        ("5 NOT CONTAINS '5'", &[], F),
        ("(v = 'a') NOT CONTAINS 'x'", &[("v", "a")], F),
        ("'axb' contains 'x'", &[], T),
        ("' ' startswith ' '", &[], T),
        ("'axb' not endswith '.'", &[], T),
        ("v CONTAINS 'é'", &[("v", "café")], T),
        ("v ENDSWITH 'é'", &[("v", "café")], T),
        // The empty pattern short-circuits before evaluating the left side.
        ("(v > 1) CONTAINS ''", &[("v", "x")], F),
        ("(v > 1) CONTAINS 'x'", &[("v", "x")], ERR),
    ] {
        check(s, m, want);
    }
    ce("v CONTAINS x");
    ce("v CONTAINS 123");
    ce("v NOT CONTAINS x");
    ce("'axb' contains ");
    ce("v NOT LIKE 'x'");
    ce("v NOT 'x'");
    ce("v NOT");
}

// ------------------------------------------------------ three-valued logic

#[test]
fn truth_tables() {
    let vals = [("TRUE", Some(true)), ("FALSE", Some(false)), ("NULL", None)];
    let and = |a: Option<bool>, b: Option<bool>| match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    };
    let or = |a: Option<bool>, b: Option<bool>| match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    };
    // Literals, and the same truth values coming from properties.
    let prop = |v: Option<bool>| match v {
        Some(true) => "p = '1'",
        Some(false) => "p = '0'",
        None => "q = '1'",
    };
    let msg = [("p", "1")];
    for (ls, lv) in vals {
        check(&format!("NOT {ls}"), &[], Ok(lv.map(|b| !b)));
        check(&format!("NOT ({})", prop(lv)), &msg, Ok(lv.map(|b| !b)));
        for (rs, rv) in vals {
            check(&format!("{ls} AND {rs}"), &[], Ok(and(lv, rv)));
            check(&format!("{ls} OR {rs}"), &[], Ok(or(lv, rv)));
            let (pl, pr) = (prop(lv), prop(rv));
            check(&format!("{pl} AND {pr}"), &msg, Ok(and(lv, rv)));
            check(&format!("{pl} OR {pr}"), &msg, Ok(or(lv, rv)));
            for (xs, xv) in vals {
                check(
                    &format!("{ls} AND {rs} AND {xs}"),
                    &[],
                    Ok(and(and(lv, rv), xv)),
                );
                check(
                    &format!("{ls} OR {rs} OR {xs}"),
                    &[],
                    Ok(or(or(lv, rv), xv)),
                );
                check(
                    &format!("{ls} OR {rs} AND {xs}"),
                    &[],
                    Ok(or(lv, and(rv, xv))),
                );
                check(
                    &format!("({ls} OR {rs}) AND {xs}"),
                    &[],
                    Ok(and(or(lv, rv), xv)),
                );
            }
        }
    }
    // A bare property: NULL when missing, otherwise always FALSE.
    check("a", &[], N);
    check("a", &[("a", "true")], F);
    check("NOT a", &[("a", "true")], T);
    check("NOT a", &[], N);
    check("a OR b", &[("a", "1")], N);
    check("a OR b", &[("a", "1"), ("b", "1")], F);
    check("NOT NOT a", &[("a", "1")], F);
    check("TRUE", &[], T);
    check("NULL", &[], N);
}

#[test]
fn errors_propagate_unless_short_circuited() {
    // `x > 1` with x = 'abc' throws in RocketMQ.
    let m = [("x", "abc")];
    check("x > 1", &m, ERR);
    check("x > 1 OR TRUE", &m, ERR);
    check("TRUE OR x > 1", &m, T);
    check("FALSE AND x > 1", &m, F);
    check("x > 1 AND FALSE", &m, ERR);
    check("NULL AND x > 1", &m, ERR);
    check("NOT (x > 1)", &m, ERR);
    check("(x > 1) IS NULL", &m, ERR);
    check("-(x > 1) IS NULL", &m, ERR);
    check("-(x > 1) IS NULL", &[("x", "2")], T);
    check("x = 'abc' OR x > 1", &m, T);
    check("x IS NULL OR x > 1", &[], T);
    assert!(!c("x > 1 OR TRUE").matches(&m));
    assert_eq!(c("x > 1 OR TRUE").evaluate(&m), None);
    let e = c("x > 1").try_evaluate(&m).unwrap_err();
    assert!(!e.to_string().is_empty());
}

// ---------------------------------------------------------------- coercion

#[test]
fn coercion_of_strings_to_numbers() {
    for (s, v, want) in [
        // Integer literal: Integer.valueOf (sign, Unicode digits, no spaces).
        ("a = 5", "5", T),
        ("a = 5", "+5", T),
        ("a = 5", "05", T),
        ("a = 5", "\u{0665}", T), // ARABIC-INDIC DIGIT FIVE
        ("a = 5", "\u{FF15}", T), // FULLWIDTH DIGIT FIVE
        ("a = 5", "5.0", ERR),
        ("a = 5", " 5", ERR),
        ("a = 5", "5 ", ERR),
        ("a = 5", "0x5", ERR),
        ("a = 5", "5L", ERR),
        ("a > 5", "3000000000", ERR), // beyond Integer
        ("a = 0", "-0", T),
        ("a > -2147483648", "-2147483648", F), // a Long literal (negated 2147483648)
        ("a > -2147483648", "-2147483649", F),
        ("a < 2147483647", "2147483648", ERR),
        // `5L` fits in an int, so it is an Integer too.
        ("a = 5L", "5", T),
        ("a = 5l", "3000000000", ERR),
        // Long literal: Long.valueOf.
        ("a > 3000000000", "3000000001", T),
        ("a > 3000000000", "9223372036854775807", T),
        ("a > 3000000000", "9223372036854775808", ERR),
        ("a < 9223372036854775807", "-9223372036854775808", T),
        ("a > 3000000000", "3.5e9", ERR),
        // Double literal: Double.valueOf (trims, suffixes, exponents, hex, NaN).
        ("a = 5.0", "5", T),
        ("a = 5.0", "5.", T),
        ("a = 5.0", " 5 ", T),
        ("a = 5.0", "5d", T),
        ("a = 5.0", "5F", T),
        ("a = 5.0", "+5.00", T),
        ("a = 5.0", "0x1.4p2", T),
        ("a = 5.0", "0x5", ERR),
        ("a = 5.0", "5,0", ERR),
        ("a = 5.0", "\u{0665}", ERR), // only ASCII digits here
        ("a = 5.0", "five", ERR),
        ("a > 3.14", "3.1415", T),
        ("a > 3.1E10", "3.1415E10", T),
        ("a > 1.5", "NaN", T), // NaN sorts above everything
        ("a < 1.5", "NaN", F),
        ("a > 1.5", "Infinity", T),
        ("a < 1.5", "-Infinity", T),
        ("a > 1.5", "nan", ERR),
        ("a > 1.5", "inf", ERR),
        ("a > 1.5", "1e999", T),
        ("a < 1.5", "1e-999", T),
    ] {
        check(s, &[("a", v)], want);
    }
    // Two properties: both through Double.valueOf; Double.compare order.
    check("a < b", &[("a", "-0.0"), ("b", "0")], T);
    check("a = b", &[("a", "-0.0"), ("b", "0")], F); // `=` on strings is exact
    check("a >= b", &[("a", "NaN"), ("b", "NaN")], T);
    check("a > b", &[("a", "0x10p0"), ("b", "15")], T);
    // Integer/Long/Double literals compare among themselves numerically.
    check("5 = 5.0", &[], T);
    check("3000000000 > 5", &[], T);
    check("3000000000 = 3000000000.0", &[], T);
    check("5 < 5.5", &[], T);
    check("-5 < -4", &[], T);
    check("- -5 = 5", &[], T);
}

#[test]
fn booleans() {
    for (s, m, want) in [
        ("a = TRUE", &[("a", "true")][..], T),
        ("a = TRUE", &[("a", "TRUE")], T),
        ("a = TRUE", &[("a", "yes")], F),
        ("a = FALSE", &[("a", "xyz")], T), // Boolean.valueOf is false for anything else
        ("a = TRUE", &[], N),
        ("a <> TRUE", &[("a", "true")], F),
        ("a=TRUE OR b=FALSE", &[("a", "true"), ("b", "false")], T),
        ("a=TRUE OR b=FALSE", &[("a", "false"), ("b", "true")], F),
        ("'true' = TRUE", &[], T),
        ("'x' = TRUE", &[], F),
        ("5 = TRUE", &[], F), // Integer vs Boolean: not equal
        ("TRUE = TRUE", &[], T),
        ("TRUE = FALSE", &[], F),
        ("TRUE = -5", &[], F),
        ("(a = '1') = TRUE", &[("a", "1")], T),
        ("(a = '1') = (b = '1')", &[("a", "1"), ("b", "2")], F),
        ("(a = '1') = (b = '1')", &[("b", "2")], N),
        ("(a = '1') = (b = '1')", &[("a", "2")], F),
        ("(a = '1') = 1", &[("a", "1")], F),
        // Boolean on the left, string on the right: ClassCastException.
        ("TRUE = a", &[("a", "true")], ERR),
        ("TRUE = a", &[], F),
        ("(a = '1') = 'x'", &[("a", "1")], ERR),
        ("(a = '1') = b", &[("a", "1"), ("b", "true")], ERR),
        ("(a = '1') = b", &[("b", "true")], N),
        // NOT binds tighter than '=': (NOT a) = 1, (NOT a) = 'x'.
        ("NOT a = 1", &[("a", "2")], F),
        ("NOT a = 1", &[], N),
        ("NOT a = 'x'", &[("a", "y")], ERR),
        ("NOT a IS NULL", &[], T),
        ("NOT (a = 1)", &[("a", "2")], T),
        ("a = 1 AND NOT b = 2", &[("a", "1"), ("b", "3")], F),
    ] {
        check(s, m, want);
    }
    ce("TRUE = 'x'");
    ce("FALSE <> 5");
    ce("TRUE = 1.5");
    ce("NOT a > 1");
    ce("NOT a BETWEEN 1 AND 2");
    ce("NOT a IN ('x')");
}

#[test]
fn negation() {
    for (s, m, want) in [
        ("a > -5", &[("a", "-3")][..], T),
        ("a < -5.5", &[("a", "-6")], T),
        ("-a < 0", &[("a", "5")], N), // a property negates to NULL
        ("-a IS NULL", &[("a", "5")], T),
        ("-'x' IS NULL", &[], T),
        ("-TRUE IS NULL", &[], T),
        ("-(5) = -5", &[], T),
        ("+5 = 5", &[], T),
        ("+ + a = 'x'", &[("a", "x")], T),
        ("- - a IS NULL", &[("a", "x")], T),
        ("-a = -5", &[("a", "-5")], N),
        ("-a = 'x' OR TRUE", &[], T),
    ] {
        check(s, m, want);
    }
}

// ------------------------------------------------------------ compile checks

#[test]
fn compile_time_rejections() {
    for s in [
        "a > 'x'",
        "'x' < a",
        "a > TRUE",
        "a > NULL",
        "a >= (b = 1)",
        "a > 1 > 2",
        "a = NULL",
        "NULL = a",
        "NULL <> 1",
        "(NULL) = a",
        "5",
        "'x'",
        "-a",
        "-5",
        "a = 1 AND 5",
        "'x' OR a = 1",
        "NOT 5",
        "NOT 'x'",
        "NOT -a",
        "a = 1 OR (2)",
        "9223372036854775808",
        "a > 9223372036854775808",
        "a > 0.0",
        "a > 0.",
        "a > .0",
        "a > 0e5",
        "a > 1e-400",
        "a > 1e400",
        "a >",
        "a = ",
        "(a = 1",
        "a = 1 AND",
        "a = 1 OR OR b = 2",
        "a == 1",
        "a != 1",
        "a = 1 && b = 2",
        "a.b = 1",
        "a = \"x\"",
        "a = 'x",
        "a = 1 /* open",
        "()",
        ")",
        ",",
        "AND",
        "a IN",
        "a IN (",
        "a IN ('x'",
        "a IS NOT",
        "a NOT IS NULL",
        "a = 1 NOT",
        "a = 1 IS",
        "a = 1 =",
    ] {
        let e = ce(s);
        assert!(e.position <= s.len(), "{s:?}: {e}");
    }
    // Accepted oddities.
    c("a <= now"); // `now` is just a property
    c("a > 1.5e-300");
    c("a > 4.9E-324");
    c("a > 0");
    c("a > 9223372036854775807");
    c("a > 1.7976931348623157E308");
    c("'x' = a");
    c("5 = TRUE");
    c("TRUE = a");
    c("TRUE = FALSE");
    c("TRUE");
    c("NULL");
    c("NOT NULL");
    c("a");
    c("$_a1$ = 'x'");
}

#[test]
fn literals_and_lexing() {
    check(
        "TAGS is not null and TAGS='''''tag'''''",
        &[("TAGS", "''tag''")],
        T,
    );
    check("a = 'it''s'", &[("a", "it's")], T);
    check("a = ''''", &[("a", "'")], T);
    check("a = ''", &[("a", "")], T);
    check("a = 'line\nbreak'", &[("a", "line\nbreak")], T);
    check("a = 'back\\slash'", &[("a", "back\\slash")], T);
    check("a = '日本'", &[("a", "日本")], T);
    check(
        "a = 'x' -- comment\n AND b = 'y'",
        &[("a", "x"), ("b", "y")],
        T,
    );
    check("a = 'x' -- comment\r AND b = 'y'", &[("a", "x")], N);
    check("/* lead */ a /**/ = /* * */ 'x'", &[("a", "x")], T);
    check("\ta\r\n=\x0c'x'", &[("a", "x")], T);
    // Keywords in any case; property names are case-sensitive.
    check(
        "a iS nOt NuLl aNd b BeTwEeN 1 AnD 2 oR c In ('x')",
        &[("a", "1"), ("b", "2")],
        T,
    );
    check("a = tRuE", &[("a", "true")], T);
    check(
        "v cOnTaInS 'x' AND v StartsWith 'a' AND v endsWITH 'b'",
        &[("v", "axb")],
        T,
    );
    check("A = 'x'", &[("a", "x")], N);
    check("a = 1.5E1", &[("a", "15")], T);
    check("a = 15e-1", &[("a", "1.5")], T);
    check("a = .5", &[("a", "0.5")], T);
    check("a = 5.", &[("a", "5")], T);
    check("a = 1.e2", &[("a", "100")], T);
    check("a = 1.5e", &[("a", "1.5")], T); // `1.5` then the property `e`
}

#[test]
fn trailing_input_is_ignored_like_rocketmq() {
    // JmsSelector() has no <EOF>: parsing stops where the grammar cannot go on.
    check("a = 1 b = 2", &[("a", "1")], T);
    check("a = 1)", &[("a", "1")], T);
    check("a = 1 )))", &[("a", "1")], T);
    check("a = 0x1F", &[("a", "0")], T);
    check("a = 010", &[("a", "0")], T);
    check("a = 'x' 'y'", &[("a", "x")], T);
    check("a = 1 -- no newline", &[("a", "1")], T);
    check("a = 1 b @#!", &[("a", "1")], T);
    check("a > 0L", &[("a", "1")], T); // `0` then the property `L`
    check("a = 1 + 1", &[("a", "1")], T); // no arithmetic: `+ 1` is trailing
    check("a - 1", &[], N); // the bare property `a`
    check("a BETWEEN 1 AND 2 x", &[("a", "1")], T);
    // After IS [NOT] NULL RocketMQ is in its equality loop: comparison-level
    // operators end the expression there.
    check("a IS NULL < 5", &[], T);
    check("a IS NOT NULL BETWEEN 1 AND 2", &[("a", "x")], T);
    check("a IS NULL NOT IN ('x')", &[], T);
    check("a IS NULL CONTAINS 'x'", &[("a", "1")], F);
    check("a = 1 IS NULL > 5", &[("a", "1")], F);
    check("a IS NULL = TRUE AND b IS NULL", &[], T); // '=' and AND do continue
    check("a IS NULL IS NULL", &[], F);
    ce("(a IS NULL < 5)");
    ce("(a IS NULL) < 5"); // a parenthesized condition is an operand again
    check("a LIKE 'x'", &[("a", "x")], F); // a bare property, then junk
    check("a LIKE 'x'", &[], N);
    // An unterminated literal still lexes up to its last '' pair.
    check("a = 'x' ' '' ", &[("a", "x")], T);
    ce("a = 'x''y"); // `'x'` then `'y`: the look-ahead token does not lex
    ce("a = 'x''y' '");
    // The token right after the expression is lexed: it must be valid.
    let e = ce("a = 1 @");
    assert_eq!(e.position, 6);
    let e = ce("a = 1 /* open");
    assert_eq!(e.position, 6);
}

#[test]
fn error_positions() {
    for (s, pos) in [
        ("", 0),
        ("   ", 0),
        ("a @ b", 2),
        ("a = ", 4),
        ("a > 'x'", 4),
        ("'x' < a", 0),
        ("(a = 1", 6),
        ("a IN ('x', 1)", 11),
        ("a BETWEEN 10 AND 0", 10),
        ("a = 1 AND 5", 10),
        ("TRUE = 'x'", 7),
        ("a = NULL", 4),
        ("a NOT LIKE 'x'", 6),
        ("'a' IN ('a')", 0),
        ("a = 1 AND b = 'x", 14),
        ("a > 0.0", 4),
        ("a > 99999999999999999999", 4),
        ("a = é", 4),
        ("a IS 5", 5),
    ] {
        let e = ce(s);
        assert_eq!(e.position, pos, "{s:?}: {e}");
        assert!(e.to_string().contains(&format!("byte {pos}")), "{e}");
    }
    assert!(ce("").reason.contains("empty"));
}

// --------------------------------------------------------------- bad input

fn fast<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let r = f();
    assert!(t.elapsed().as_secs() < 5, "{what} took {:?}", t.elapsed());
    r
}

#[test]
fn hostile_inputs_fail_fast() {
    let mib = "a = 'x' OR ".repeat(100_000);
    let e = fast("1 MiB", || compile(&mib).unwrap_err());
    assert!(e.reason.contains("too long"), "{e}");
    assert_eq!(e.position, 64 * 1024);

    let deep = format!("{}a = 1{}", "(".repeat(10_000), ")".repeat(10_000));
    let e = fast("parens", || compile(&deep).unwrap_err());
    assert_eq!(e.position, 128, "{e}");
    assert!(e.reason.contains("deep"));

    let nots = format!("{}a", "NOT ".repeat(10_000));
    let e = fast("nots", || compile(&nots).unwrap_err());
    assert_eq!(e.position, 128 * 4, "{e}");

    let minus = format!("a > {}5", "-".repeat(10_000));
    fast("minus", || compile(&minus).unwrap_err());
    let plus = format!("a > {}5", "+ ".repeat(10_000));
    fast("plus", || compile(&plus).unwrap_err());

    // Deep trees built by loops rather than recursion.
    let chain = format!("a{}", " IS NULL".repeat(5_000));
    fast("is null chain", || compile(&chain).unwrap_err());
    let chain = format!("a{}", " = a".repeat(5_000));
    fast("= chain", || compile(&chain).unwrap_err());
    let chain = format!("a{}", " CONTAINS 'x'".repeat(3_000));
    fast("contains chain", || compile(&chain).unwrap_err());

    // Long flat chains are fine: AND/OR are n-ary.
    let flat = vec!["a = '1'"; 5_000].join(" AND ");
    let e = fast("flat", || compile(&flat).unwrap());
    assert!(e.matches(&[("a", "1")]));
    let flat = vec!["a = '1'"; 5_000].join(" OR ");
    let e = fast("flat or", || compile(&flat).unwrap());
    assert!(!e.matches(&[("a", "2")]));
    let mixed: String = (0..3_000)
        .map(|i| {
            if i % 2 == 0 {
                "a = '1' AND "
            } else {
                "b = '1' OR "
            }
        })
        .collect::<String>()
        + "TRUE";
    fast("mixed", || compile(&mixed).unwrap());

    // Just at the limits.
    let ok = format!("{}a = 1{}", "(".repeat(127), ")".repeat(127));
    c(&ok);
    let nots = format!("{}a", "NOT ".repeat(128));
    c(&nots);

    // Bigger limits with the parser still bounded.
    // Bigger limits: the parser uses no recursion at all, so parentheses and
    // prefix operators cost heap, not stack.
    let big = Limits {
        max_len: 4 << 20,
        max_depth: 1_000_000,
    };
    let deep = "(".repeat(2 << 20);
    fast("2 MiB parens", || compile_with(&deep, &big).unwrap_err());
    let ok = format!("{}a = 1{}", "(".repeat(500_000), ")".repeat(500_000));
    fast("500k parens", || compile_with(&ok, &big).unwrap());
    let ok = format!("{}a", "NOT ".repeat(500_000));
    fast("500k NOTs", || compile_with(&ok, &big).unwrap());
    let small = Limits {
        max_len: 1 << 20,
        max_depth: 10,
    };
    assert_eq!(
        compile_with("((((((((((a))))))))))", &small)
            .unwrap()
            .properties()
            .count(),
        1
    );
    assert_eq!(
        compile_with("(((((((((((a)))))))))))", &small)
            .unwrap_err()
            .position,
        10
    );

    // Many "--" without a line terminator: linear lexing.
    let dashes = format!("a = 1 {}", "-- ".repeat(20_000));
    fast("dashes", || compile(&dashes).unwrap());
    let dashes = format!("a > {}1", "--".repeat(60));
    fast("dash prefix", || compile(&dashes).unwrap());

    // Huge literals.
    let digits = format!("a > 1{}.5", "1".repeat(60_000));
    fast("huge float", || compile(&digits).unwrap_err());
    let digits = format!("a > 0.{}1", "0".repeat(60_000));
    fast("tiny float", || compile(&digits).unwrap_err());
    let e = c("a > 1.5");
    let value = format!("{}1", "0".repeat(1 << 20));
    fast("huge property", || {
        e.try_evaluate(&[("a", value.as_str())]).unwrap()
    });
    let hex = format!("0x{}p-4000000", "f".repeat(1 << 20));
    fast("huge hex property", || {
        e.try_evaluate(&[("a", hex.as_str())]).unwrap()
    });
    let e = c("a > 5");
    let long = "9".repeat(1 << 20);
    assert!(is_err(fast("huge int property", || e
        .try_evaluate(&[("a", long.as_str())]))));
}

// ------------------------------------------------------------------- misc

#[test]
fn properties_are_listed_once_in_order() {
    let e = c("b = 1 AND a IN ('x') OR b > 2 AND c CONTAINS 'x' OR -d IS NULL OR e");
    assert_eq!(
        e.properties().collect::<Vec<_>>(),
        ["b", "a", "c", "d", "e"]
    );
    assert_eq!(c("TRUE").properties().count(), 0);
}

#[test]
fn lookups() {
    let e = c("a = 'x' AND b IS NULL");
    let hm: HashMap<String, String> = [("a".to_string(), "x".to_string())].into();
    let bt: BTreeMap<String, String> = [("a".to_string(), "x".to_string())].into();
    assert!(e.matches(&hm));
    assert!(e.matches(&bt));
    assert!(e.matches(&&hm));
    let slice: &[(&str, &str)] = &[("a", "x"), ("a", "y")];
    assert!(e.matches(slice));
    assert!(e.matches(&[("a", "x")]));
    assert!(!e.matches(&[("a", "y"), ("a", "x")])); // first pair wins
                                                    // A Lookup that allocates.
    struct Upper;
    impl Lookup for Upper {
        fn get(&self, name: &str) -> Option<Cow<'_, str>> {
            Some(Cow::Owned(name.to_uppercase()))
        }
    }
    assert!(c("abc = 'ABC'").matches(&Upper));
}

#[test]
fn expr_is_send_sync_clone() {
    fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    assert_traits::<Expr>();
    assert_traits::<CompileError>();
    assert_traits::<EvalError>();
    let e = c("a = 1");
    let e2 = e.clone();
    std::thread::spawn(move || assert!(e2.matches(&[("a", "1")])))
        .join()
        .unwrap();
    let err: Box<dyn std::error::Error> = Box::new(ce("a ="));
    assert!(err
        .to_string()
        .starts_with("invalid SQL92 selector at byte"));
}

// ------------------------------------------------- RocketMQ's own test cases

#[test]
fn rocketmq_expression_test() {
    let and = "a=3 and b<>4 And c>5 AND d<=4";
    let or = "a=3 or b<>4 Or c>5 OR d<=4";
    check(and, &[("a", "3"), ("b", "5"), ("c", "6"), ("d", "1")], T);
    check(and, &[("a", "4"), ("b", "5"), ("c", "6"), ("d", "1")], F);
    check(or, &[("a", "3")], T);
    check(or, &[("a", "4"), ("b", "5")], T);
    check(or, &[("a", "4"), ("b", "4"), ("c", "6")], T);
    check(or, &[("a", "4"), ("b", "4"), ("c", "3"), ("d", "2")], T);
    check(or, &[("a", "4"), ("b", "4"), ("c", "3"), ("d", "10")], F);
    check("a is not null and a='hello'", &[("a", "hello")], T);
    check("a is not null and a='hello'", &[], F);
    check("a between 2 and 10", &[("a", "3")], T);
    check("a is null", &[("abc", "2")], T);
    check("a is not null", &[("abc", "2")], F);
    check("a > 3.1E10", &[("a", "3.1415E10")], T);
    check("a > b", &[("a", "10"), ("b", "20")], F);
    check("a > b", &[("a", "20"), ("b", "10")], T);
    // testEvaluate_stringCompare: string/number mixes throw.
    check("a between up and low", &[("a", "3.14")], N);
    check(
        "a between up and low",
        &[("a", "3.14"), ("up", "up"), ("low", "low")],
        ERR,
    );
    check(
        "key is not null and key between 0 and 100",
        &[("key", "con")],
        ERR,
    );
    check("a between 0 and 100", &[("a", "abc")], ERR);
    check("a=b", &[("a", "3.14"), ("b", "3.14")], T);
    check("a<>b", &[("a", "3.14"), ("b", "3.14")], F);
    check("a<>b", &[("a", "3.14"), ("b", "3.141")], T);
    let all = "a not in ('4', '4', '5') and b between 3 and 10 and c not contains 'axbc'";
    check(all, &[("a", "3"), ("b", "3"), ("c", "axbdc")], T);
    // ParserTest
    for s in [
        "a=3  and    b<>4 And c>5 AND d<=4",
        "(a not in ('6', '4', '5')) or (b in ('3', '4', '5'))",
        "(a between 2 and 10) AND (b not between 6 and 9)",
        "a=3 and b contains 'xxx' and c not contains 'xxx'",
    ] {
        c(s);
    }
    ce("a and between 2 and 10");
    ce(" a between 10 and 0");
    ce("a > 100000000000000000000000");
}

// ---------------------------------------------------------- random rounds

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const PROPS: [&str; 4] = ["a", "b", "c", "d"];
const VALUES: [&str; 16] = [
    "1",
    "5",
    "-3",
    "2.5",
    "abc",
    "",
    " 7",
    "true",
    "x",
    "0x1p3",
    "NaN",
    "3000000000",
    "٣",
    "1e400",
    "-0",
    "9223372036854775808",
];

fn operand(r: &mut Rng, depth: usize) -> String {
    match r.below(if depth > 0 { 9 } else { 8 }) {
        0..=2 => r.pick(&PROPS).to_string(),
        3 => r
            .pick(&[
                "1",
                "5",
                "-3",
                "2.5",
                "3000000000",
                "1e3",
                "5L",
                ".5",
                "-0.5",
            ])
            .to_string(),
        4 => r
            .pick(&["'x'", "'5'", "''", "'it''s'", "'true'"])
            .to_string(),
        5 => r.pick(&["TRUE", "FALSE", "NULL"]).to_string(),
        6 => format!("-{}", r.pick(&PROPS)),
        7 => format!("+{}", r.pick(&["1", "a"])),
        _ => format!("({})", condition(r, depth - 1)),
    }
}

fn condition(r: &mut Rng, depth: usize) -> String {
    let a = operand(r, depth);
    match r.below(if depth > 0 { 14 } else { 11 }) {
        0 => format!("{a} = {}", operand(r, depth)),
        1 => format!("{a} <> {}", operand(r, depth)),
        2 => format!(
            "{a} {} {}",
            r.pick(&[">", ">=", "<", "<="]),
            operand(r, depth)
        ),
        3 => format!("{a} IS {}NULL", r.pick(&["", "NOT "])),
        4 => format!(
            "{a} {}BETWEEN {} AND {}",
            r.pick(&["", "NOT "]),
            operand(r, depth),
            operand(r, depth)
        ),
        5 => format!(
            "{} {}IN ('1', 'x', '')",
            r.pick(&PROPS),
            r.pick(&["", "NOT "])
        ),
        6 => format!(
            "{a} {}{} {}",
            r.pick(&["", "NOT "]),
            r.pick(&["CONTAINS", "STARTSWITH", "ENDSWITH"]),
            r.pick(&["'x'", "''", "'1'"])
        ),
        7 => a,
        8 => format!("NOT {a}"),
        9 | 10 => r.pick(&PROPS).to_string(),
        11 => format!(
            "{} AND {}",
            condition(r, depth - 1),
            condition(r, depth - 1)
        ),
        12 => format!("{} OR {}", condition(r, depth - 1), condition(r, depth - 1)),
        _ => format!("NOT ({})", condition(r, depth - 1)),
    }
}

fn message(r: &mut Rng) -> Vec<(&'static str, &'static str)> {
    let mut m = Vec::new();
    for p in PROPS {
        if r.below(4) != 0 {
            m.push((p, VALUES[r.below(VALUES.len())]));
        }
    }
    m
}

#[test]
fn random_structured_expressions_are_consistent() {
    let mut r = Rng(0x5eed_1234_abcd_0001);
    let mut compiled = 0;
    for _ in 0..20_000 {
        let src = condition(&mut r, 4);
        let Ok(e) = compile(&src) else { continue };
        compiled += 1;
        let not = compile(&format!("NOT ({src})")).expect("NOT of a condition compiles");
        let and_true = compile(&format!("({src}) AND TRUE")).unwrap();
        let or_false = compile(&format!("FALSE OR ({src})")).unwrap();
        let twice = compile(&format!("({src}) AND ({src})")).unwrap();
        for _ in 0..4 {
            let m = message(&mut r);
            let got = e.try_evaluate(m.as_slice());
            assert_eq!(e.matches(m.as_slice()), got == T, "{src}");
            assert_eq!(
                not.try_evaluate(m.as_slice()),
                got.map(|o| o.map(|b| !b)),
                "{src}"
            );
            assert_eq!(and_true.try_evaluate(m.as_slice()), got, "{src}");
            assert_eq!(or_false.try_evaluate(m.as_slice()), got, "{src}");
            assert_eq!(twice.try_evaluate(m.as_slice()), got, "{src}");
        }
    }
    assert!(compiled > 5_000, "only {compiled} compiled");
}

#[test]
fn random_token_soup_never_panics() {
    const VOCAB: [&str; 48] = [
        "a",
        "b",
        "x1",
        "$",
        "_",
        "(",
        ")",
        "(",
        ")",
        ",",
        "=",
        "<>",
        ">",
        ">=",
        "<",
        "<=",
        "+",
        "-",
        "NOT",
        "AND",
        "OR",
        "BETWEEN",
        "IN",
        "IS",
        "NULL",
        "TRUE",
        "FALSE",
        "CONTAINS",
        "STARTSWITH",
        "ENDSWITH",
        "'s'",
        "''",
        "'",
        "0",
        "5",
        "5L",
        "1.5",
        ".5",
        "1e9",
        "0.0",
        "99999999999999999999",
        "--",
        "\n",
        "/*",
        "*/",
        "@",
        "é",
        " ",
    ];
    let mut r = Rng(0xdead_beef_cafe_f00d);
    let mut ok = 0;
    for round in 0..50_000 {
        let n = 1 + r.below(24);
        let mut src = String::new();
        for _ in 0..n {
            src.push_str(r.pick(&VOCAB));
            if r.below(3) != 0 {
                src.push(' ');
            }
        }
        // Also cut at random byte offsets (char boundaries) to create truncations.
        if round % 5 == 0 {
            let mut cut = r.below(src.len() + 1);
            while !src.is_char_boundary(cut) {
                cut -= 1;
            }
            src.truncate(cut);
        }
        match compile(&src) {
            Ok(e) => {
                ok += 1;
                for _ in 0..3 {
                    let m = message(&mut r);
                    let _ = e.try_evaluate(m.as_slice());
                }
                let _ = e.properties().count();
            }
            Err(e) => assert!(e.position <= src.len(), "{src:?}: {e}"),
        }
    }
    assert!(ok > 100, "only {ok} compiled");
}

#[test]
fn random_bytes_never_panic() {
    let mut r = Rng(42);
    for _ in 0..20_000 {
        let n = r.below(40);
        let bytes: Vec<u8> = (0..n)
            .map(|_| b" ()'=<>!-+*/.,0159aAzZ_$\n\teE\xc3\xa9"[r.below(30)])
            .collect();
        let src = String::from_utf8_lossy(&bytes);
        if let Err(e) = compile(&src) {
            assert!(e.position <= src.len());
        }
    }
}
