//! Compiled tree and its evaluation (RocketMQ's `Expression.evaluate`).
//!
//! Every node returns `Ok(Some(b))` for TRUE/FALSE, `Ok(None)` for NULL
//! (UNKNOWN) and `Err(fault)` where RocketMQ throws. Recursion depth is the
//! tree depth, which the parser bounds by `Limits::max_depth`.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::java::{self, Fault, Val};
use crate::Lookup;

/// A boolean-valued node (`BooleanExpression`).
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// TRUE, FALSE or NULL; also folded results (e.g. `x CONTAINS ''`).
    Const(Option<bool>),
    /// n-ary AND (left-assoc chains flattened; same short-circuit order).
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    /// `UnaryExpression.createBooleanCast(property)`: a bare property used as
    /// a condition. NULL when missing, otherwise FALSE (a string is never a
    /// `Boolean`).
    PropTruth(Box<str>),
    /// `=` (and `<>` when `not`).
    Eq {
        l: Operand,
        r: Operand,
        not: bool,
    },
    /// `IS NULL` (and `IS NOT NULL` when `not`).
    IsNull {
        v: Operand,
        not: bool,
    },
    /// `>`, `>=`, `<`, `<=`.
    Cmp {
        op: CmpOp,
        l: Operand,
        r: Operand,
    },
    /// `[NOT] BETWEEN lo AND hi`: `v >= lo AND v <= hi` or `v < lo OR v > hi`.
    Between {
        v: Operand,
        lo: Operand,
        hi: Operand,
        not: bool,
    },
    /// `prop [NOT] IN (...)`; `list` sorted and deduplicated.
    In {
        name: Box<str>,
        list: Box<[Box<str>]>,
        not: bool,
    },
    /// `[NOT] CONTAINS | STARTSWITH | ENDSWITH 'pat'`, `pat` non-empty.
    Text {
        v: Operand,
        op: TextOp,
        pat: Box<str>,
        not: bool,
    },
}

/// A value-producing operand.
#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Null,
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Str(Box<str>),
    Prop(Box<str>),
    /// A boolean expression used as a value (e.g. `(a = 1) = TRUE`).
    Pred(Box<Node>),
    /// `-(boolean expression)`: evaluates it (it may fail), yields NULL.
    NegPred(Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    fn test(self, o: Ordering) -> bool {
        match self {
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

type Truth = Result<Option<bool>, Fault>;

impl Operand {
    #[inline]
    fn eval<'a, L: Lookup + ?Sized>(&'a self, m: &'a L) -> Result<Val<'a>, Fault> {
        Ok(match self {
            Operand::Prop(name) => match m.get(name) {
                Some(v) => Val::Str(v),
                None => Val::Null,
            },
            Operand::Str(s) => Val::Str(Cow::Borrowed(s)),
            Operand::Int(i) => Val::Int(*i),
            Operand::Long(i) => Val::Long(*i),
            Operand::Double(d) => Val::Double(*d),
            Operand::Bool(b) => Val::Bool(*b),
            Operand::Null => Val::Null,
            Operand::Pred(n) => match n.eval(m)? {
                Some(b) => Val::Bool(b),
                None => Val::Null,
            },
            Operand::NegPred(n) => {
                n.eval(m)?;
                Val::Null
            }
        })
    }
}

/// `ComparisonExpression.evaluate` for `>`, `>=`, `<`, `<=` with the left
/// value already computed: NULL on either side gives NULL (the right side is
/// not evaluated when the left is NULL); two strings are both converted with
/// `Double.valueOf`; anything else goes through `__compare`.
#[inline]
fn cmp_with<L: Lookup + ?Sized>(op: CmpOp, lv: &Val<'_>, r: &Operand, m: &L) -> Truth {
    if matches!(lv, Val::Null) {
        return Ok(None);
    }
    let rv = r.eval(m)?;
    let ord = match (lv, &rv) {
        (_, Val::Null) => return Ok(None),
        (Val::Str(a), Val::Str(b)) => {
            java::double_cmp(java::parse_double(a)?, java::parse_double(b)?)
        }
        _ => java::compare(lv, &rv)?,
    };
    Ok(Some(op.test(ord)))
}

impl Node {
    pub(crate) fn eval<L: Lookup + ?Sized>(&self, m: &L) -> Truth {
        match self {
            Node::Eq { l, r, not } => {
                // doCreateEqual: both sides are always evaluated.
                let lv = l.eval(m)?;
                let rv = r.eval(m)?;
                let eq = match (&lv, &rv) {
                    (Val::Null, Val::Null) => Some(true),
                    (Val::Null, _) => None,
                    // Only a NULL *left* side gives UNKNOWN: `5 = a` is FALSE
                    // when `a` is missing.
                    (_, Val::Null) => Some(false),
                    (Val::Str(a), Val::Str(b)) => Some(a == b),
                    _ => Some(java::compare(&lv, &rv)? == Ordering::Equal),
                };
                Ok(if *not { eq.map(|b| !b) } else { eq })
            }
            Node::Cmp { op, l, r } => cmp_with(*op, &l.eval(m)?, r, m),
            Node::And(xs) => {
                let mut unknown = false;
                for x in xs.iter() {
                    match x.eval(m)? {
                        Some(false) => return Ok(Some(false)),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                Ok(if unknown { None } else { Some(true) })
            }
            Node::Or(xs) => {
                let mut unknown = false;
                for x in xs.iter() {
                    match x.eval(m)? {
                        Some(true) => return Ok(Some(true)),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                Ok(if unknown { None } else { Some(false) })
            }
            Node::Not(x) => Ok(x.eval(m)?.map(|b| !b)),
            Node::Const(v) => Ok(*v),
            Node::PropTruth(name) => Ok(m.get(name).map(|_| false)),
            Node::IsNull { v, not } => {
                let null = matches!(v.eval(m)?, Val::Null);
                Ok(Some(null != *not))
            }
            Node::Between { v, lo, hi, not } => {
                // The operand is evaluated once; RocketMQ evaluates it once per
                // half, which is indistinguishable (evaluation is pure).
                let val = v.eval(m)?;
                if !*not {
                    let ge = cmp_with(CmpOp::Ge, &val, lo, m)?;
                    if ge == Some(false) {
                        return Ok(Some(false));
                    }
                    let le = cmp_with(CmpOp::Le, &val, hi, m)?;
                    Ok(match (ge, le) {
                        (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    })
                } else {
                    let lt = cmp_with(CmpOp::Lt, &val, lo, m)?;
                    if lt == Some(true) {
                        return Ok(Some(true));
                    }
                    let gt = cmp_with(CmpOp::Gt, &val, hi, m)?;
                    Ok(match (lt, gt) {
                        (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    })
                }
            }
            Node::In { name, list, not } => Ok(m.get(name).map(|v| {
                let found = list.binary_search_by(|x| (**x).cmp(v.as_ref())).is_ok();
                found != *not
            })),
            Node::Text { v, op, pat, not } => Ok(Some(match v.eval(m)? {
                Val::Str(s) => {
                    let hit = match op {
                        TextOp::Contains => s.contains(&**pat),
                        TextOp::StartsWith => s.starts_with(&**pat),
                        TextOp::EndsWith => s.ends_with(&**pat),
                    };
                    hit != *not
                }
                // NULL or a non-string: FALSE for the NOT forms too.
                _ => false,
            })),
        }
    }
}
