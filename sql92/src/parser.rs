//! Recursive-descent parser following `SelectorParser.jj`'s productions, with
//! the construction-time checks of `ComparisonExpression` and
//! `SelectorParser.asBooleanExpression`.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use crate::eval::{CmpOp, Node, Operand, TextOp};
use crate::java::{self, Val};
use crate::lexer::{Kw, Lexer, Tok, Token};
use crate::{CompileError, Limits};

/// What RocketMQ's construction-time checks can see of an expression: which
/// Java class the parser built (`ConstantExpression` holding what,
/// `PropertyExpression`, a negation, or a `BooleanExpression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// ConstantExpression(String)
    StrConst,
    /// ConstantExpression(Integer | Long | Double)
    NumConst,
    /// BooleanConstantExpression TRUE/FALSE (a constant *and* boolean)
    BoolConst,
    /// BooleanConstantExpression NULL (a constant *and* boolean)
    NullConst,
    Property,
    /// `-x`: neither a constant nor boolean (never folded by RocketMQ)
    Negate,
    /// Any other BooleanExpression
    BoolExpr,
}

impl Kind {
    fn is_constant(self) -> bool {
        matches!(
            self,
            Kind::StrConst | Kind::NumConst | Kind::BoolConst | Kind::NullConst
        )
    }
}

enum Body {
    Val(Operand),
    Bool(Node),
}

struct Ex {
    kind: Kind,
    /// Byte offset where the expression starts.
    pos: usize,
    /// Tree depth (leaves are 0).
    depth: usize,
    body: Body,
}

impl Ex {
    fn operand(self) -> Operand {
        match self.body {
            Body::Val(v) => v,
            Body::Bool(Node::Const(Some(b))) => Operand::Bool(b),
            Body::Bool(Node::Const(None)) => Operand::Null,
            Body::Bool(n) => Operand::Pred(Box::new(n)),
        }
    }

    /// The value of a constant, for BETWEEN's construction-time check.
    fn const_val(&self) -> Option<Val<'_>> {
        Some(match &self.body {
            Body::Val(Operand::Str(s)) => Val::Str(s.as_ref().into()),
            Body::Val(Operand::Int(i)) => Val::Int(*i),
            Body::Val(Operand::Long(i)) => Val::Long(*i),
            Body::Val(Operand::Double(d)) => Val::Double(*d),
            Body::Bool(Node::Const(Some(b))) => Val::Bool(*b),
            _ => return None,
        })
    }

    fn describe(&self) -> &'static str {
        match self.kind {
            Kind::StrConst => "a string literal",
            Kind::NumConst => "a number",
            Kind::BoolConst => "TRUE/FALSE",
            Kind::NullConst => "NULL",
            Kind::Property => "a property",
            Kind::Negate => "a negation",
            Kind::BoolExpr => "a condition",
        }
    }
}

pub(crate) struct Parsed {
    pub(crate) root: Node,
    pub(crate) props: Vec<Box<str>>,
}

pub(crate) fn parse(src: &str, limits: &Limits) -> Result<Parsed, CompileError> {
    if src.len() > limits.max_len {
        return Err(err(
            limits.max_len,
            format!(
                "expression too long: {} bytes, the limit is {}",
                src.len(),
                limits.max_len
            ),
        ));
    }
    let mut p = Parser {
        lex: Lexer::new(src),
        peeked: None,
        max_depth: limits.max_depth,
        nesting: 0,
        props: Vec::new(),
    };
    if p.peek()?.tok == Tok::Eof {
        return Err(err(0, "empty expression"));
    }
    let e = p.expression()?;
    // RocketMQ's JmsSelector() does not require <EOF>: the expression ends
    // where the grammar cannot continue. The one token after it has been
    // lexed (as RocketMQ's loops look ahead), so a lexical error there is
    // reported; anything further is ignored, exactly as RocketMQ does.
    let root = as_boolean(e)?;
    Ok(Parsed {
        root,
        props: dedup(p.props),
    })
}

/// First-seen order, without duplicates.
fn dedup(props: Vec<Box<str>>) -> Vec<Box<str>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for p in props {
        if seen.insert(p.clone()) {
            out.push(p);
        }
    }
    out
}

fn err(position: usize, reason: impl Into<String>) -> CompileError {
    CompileError {
        position,
        reason: reason.into(),
    }
}

/// `SelectorParser.asBooleanExpression`.
fn as_boolean(e: Ex) -> Result<Node, CompileError> {
    let (pos, kind, what) = (e.pos, e.kind, e.describe());
    match e.body {
        Body::Bool(n) => Ok(n),
        // A bare property becomes a boolean cast.
        Body::Val(Operand::Prop(name)) if kind == Kind::Property => Ok(Node::PropTruth(name)),
        Body::Val(_) => Err(err(
            pos,
            format!("expression will not result in a boolean value ({what})"),
        )),
    }
}

/// `ComparisonExpression.checkLessThanOperand`: only numeric constants,
/// properties and negations may be compared with `>`, `>=`, `<`, `<=`.
fn check_ordered(e: &Ex) -> Result<(), CompileError> {
    match e.kind {
        Kind::NumConst | Kind::Property | Kind::Negate => Ok(()),
        _ => Err(err(
            e.pos,
            format!(
                "{} cannot be compared with '>', '>=', '<', '<=' or BETWEEN",
                e.describe()
            ),
        )),
    }
}

/// Prefix operators of `unaryExpr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Plus,
    Minus,
    Not,
}

/// Binary operators, with RocketMQ's precedence levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Cmp(CmpOp),
}

impl BinOp {
    fn prec(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Eq | BinOp::Ne => 3,
            BinOp::Cmp(_) => 4,
        }
    }
}

const PREC_EQUALITY: u8 = 3;
const PREC_COMPARISON: u8 = 4;

/// Pending work on the parser's explicit stack (the parser never recurses).
enum Frame {
    /// An open parenthesis.
    Paren,
    /// A prefix operator waiting for its operand.
    Prefix(Prefix, usize),
    /// `v [NOT] BETWEEN` waiting for the lower bound.
    BetweenLo { v: Ex, not: bool, pos: usize },
    /// `v [NOT] BETWEEN lo AND` waiting for the upper bound.
    BetweenHi {
        v: Ex,
        lo: Ex,
        not: bool,
        pos: usize,
    },
    /// `left op` waiting for its right operand.
    Binary { op: BinOp, pos: usize, left: Ex },
}

struct Parser<'s> {
    lex: Lexer<'s>,
    peeked: Option<Token<'s>>,
    max_depth: usize,
    /// Open parentheses, prefix operators and BETWEENs on the stack: the
    /// nesting RocketMQ's recursive parser would be in.
    nesting: usize,
    props: Vec<Box<str>>,
}

impl<'s> Parser<'s> {
    fn peek(&mut self) -> Result<&Token<'s>, CompileError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex.next_token()?);
        }
        Ok(self.peeked.as_ref().expect("just filled"))
    }

    fn bump(&mut self) -> Result<Token<'s>, CompileError> {
        self.peek()?;
        Ok(self.peeked.take().expect("peeked"))
    }

    fn expect_kw(&mut self, kw: Kw, what: &str) -> Result<Token<'s>, CompileError> {
        let t = self.bump()?;
        if t.tok == Tok::Kw(kw) {
            Ok(t)
        } else {
            Err(unexpected(&t, what))
        }
    }

    fn string_literal(&mut self) -> Result<String, CompileError> {
        let t = self.bump()?;
        match t.tok {
            Tok::Str(s) => Ok(s),
            _ => Err(unexpected(&t, "a string literal")),
        }
    }

    /// Pushes a nesting frame, refusing to go deeper than `max_depth`.
    fn push_nested(
        &mut self,
        stack: &mut Vec<Frame>,
        f: Frame,
        pos: usize,
    ) -> Result<(), CompileError> {
        if self.nesting >= self.max_depth {
            return Err(too_deep(pos, self.max_depth));
        }
        self.nesting += 1;
        stack.push(f);
        Ok(())
    }

    fn node(&self, pos: usize, depth: usize, n: Node) -> Result<Ex, CompileError> {
        if depth > self.max_depth {
            return Err(too_deep(pos, self.max_depth));
        }
        Ok(Ex {
            kind: Kind::BoolExpr,
            pos,
            depth,
            body: Body::Bool(n),
        })
    }

    /// The grammar of `SelectorParser.jj` (`orExpression` down to
    /// `primaryExpr`), as an operator-precedence parser with an explicit
    /// stack: all binary levels are left-associative loops, prefix operators
    /// bind to the next operand, `IS [NOT] NULL`, `[NOT] IN`, `[NOT] CONTAINS`
    /// etc. are postfix at their level, and BETWEEN's bounds are operands.
    /// Stops, like RocketMQ, at the first token that cannot continue the
    /// expression outside parentheses.
    fn expression(&mut self) -> Result<Ex, CompileError> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut open_parens = 0usize;
        'operand: loop {
            // ---- Expecting an operand: prefix operators, '(' or a primary.
            let t = self.bump()?;
            let pos = t.pos;
            let prefix = match t.tok {
                Tok::Plus => Some(Prefix::Plus),
                Tok::Minus => Some(Prefix::Minus),
                Tok::Kw(Kw::Not) => Some(Prefix::Not),
                Tok::LParen => {
                    self.push_nested(&mut stack, Frame::Paren, pos)?;
                    open_parens += 1;
                    continue 'operand;
                }
                _ => None,
            };
            if let Some(p) = prefix {
                self.push_nested(&mut stack, Frame::Prefix(p, pos), pos)?;
                continue 'operand;
            }
            let mut cur = self.primary(t)?;
            // True right after `IS [NOT] NULL`: RocketMQ is then in its
            // equality loop, where comparison-level operators cannot follow.
            let mut after_is_null = false;

            // ---- An operand is complete.
            loop {
                // Apply what waits for exactly one operand.
                loop {
                    match stack.last() {
                        Some(Frame::Prefix(..)) => {
                            let Some(Frame::Prefix(p, pos)) = stack.pop() else {
                                unreachable!()
                            };
                            self.nesting -= 1;
                            cur = self.prefix(p, pos, cur)?;
                        }
                        Some(Frame::BetweenLo { .. }) => {
                            let Some(Frame::BetweenLo { v, not, pos }) = stack.pop() else {
                                unreachable!()
                            };
                            self.expect_kw(Kw::And, "AND")?;
                            // Same nesting level: the frame is replaced.
                            stack.push(Frame::BetweenHi {
                                v,
                                lo: cur,
                                not,
                                pos,
                            });
                            continue 'operand;
                        }
                        Some(Frame::BetweenHi { .. }) => {
                            let Some(Frame::BetweenHi { v, lo, not, pos }) = stack.pop() else {
                                unreachable!()
                            };
                            self.nesting -= 1;
                            cur = self.between(v, lo, cur, not, pos)?;
                        }
                        _ => break,
                    }
                }

                // ---- Operator position.
                let t = self.peek()?;
                let pos = t.pos;
                let comparison_level = matches!(
                    t.tok,
                    Tok::Gt
                        | Tok::Ge
                        | Tok::Lt
                        | Tok::Le
                        | Tok::Kw(
                            Kw::Not
                                | Kw::Contains
                                | Kw::StartsWith
                                | Kw::EndsWith
                                | Kw::Between
                                | Kw::In
                        )
                );
                if after_is_null && comparison_level {
                    // Not a continuation: `a IS NULL > 1` is `a IS NULL`
                    // followed by ignored input (or a missing ')').
                    if open_parens > 0 {
                        let t = t.clone();
                        return Err(unexpected(&t, "')'"));
                    }
                    return self.reduce(&mut stack, 0, cur);
                }
                after_is_null = false;
                let bin = match t.tok {
                    Tok::Kw(Kw::Or) => Some(BinOp::Or),
                    Tok::Kw(Kw::And) => Some(BinOp::And),
                    Tok::Eq => Some(BinOp::Eq),
                    Tok::Ne => Some(BinOp::Ne),
                    Tok::Gt => Some(BinOp::Cmp(CmpOp::Gt)),
                    Tok::Ge => Some(BinOp::Cmp(CmpOp::Ge)),
                    Tok::Lt => Some(BinOp::Cmp(CmpOp::Lt)),
                    Tok::Le => Some(BinOp::Cmp(CmpOp::Le)),
                    _ => None,
                };
                if let Some(op) = bin {
                    self.bump()?;
                    cur = self.reduce(&mut stack, op.prec(), cur)?;
                    stack.push(Frame::Binary { op, pos, left: cur });
                    continue 'operand;
                }
                match t.tok {
                    Tok::Kw(Kw::Is) => {
                        self.bump()?;
                        cur = self.reduce(&mut stack, PREC_EQUALITY, cur)?;
                        let t = self.bump()?;
                        let not = match t.tok {
                            Tok::Kw(Kw::Null) => false,
                            Tok::Kw(Kw::Not) => {
                                self.expect_kw(Kw::Null, "NULL")?;
                                true
                            }
                            _ => return Err(unexpected(&t, "NULL or NOT NULL")),
                        };
                        cur = self.is_null(cur, not, pos)?;
                        after_is_null = true;
                    }
                    Tok::Kw(
                        Kw::Not
                        | Kw::Contains
                        | Kw::StartsWith
                        | Kw::EndsWith
                        | Kw::Between
                        | Kw::In,
                    ) => {
                        let mut kw = self.bump()?;
                        let not = kw.tok == Tok::Kw(Kw::Not);
                        if not {
                            // LOOKAHEAD(2): NOT must be followed by one of these.
                            kw = self.bump()?;
                            if !matches!(
                                kw.tok,
                                Tok::Kw(
                                    Kw::Contains
                                        | Kw::StartsWith
                                        | Kw::EndsWith
                                        | Kw::Between
                                        | Kw::In
                                )
                            ) {
                                return Err(unexpected(
                                    &kw,
                                    "CONTAINS, STARTSWITH, ENDSWITH, BETWEEN or IN after NOT",
                                ));
                            }
                        }
                        cur = self.reduce(&mut stack, PREC_COMPARISON, cur)?;
                        match kw.tok {
                            Tok::Kw(Kw::Between) => {
                                self.push_nested(
                                    &mut stack,
                                    Frame::BetweenLo { v: cur, not, pos },
                                    pos,
                                )?;
                                continue 'operand;
                            }
                            Tok::Kw(Kw::In) => cur = self.in_list(cur, not, pos)?,
                            Tok::Kw(k) => cur = self.text(cur, k, not, pos)?,
                            _ => unreachable!("checked above"),
                        }
                    }
                    Tok::RParen if open_parens > 0 => {
                        self.bump()?;
                        cur = self.reduce(&mut stack, 0, cur)?;
                        let Some(Frame::Paren) = stack.pop() else {
                            unreachable!("reduce stops at the open parenthesis")
                        };
                        self.nesting -= 1;
                        open_parens -= 1;
                        // `( orExpression )` is the inner expression itself; it
                        // now completes as an operand.
                    }
                    _ if open_parens > 0 => {
                        let t = t.clone();
                        return Err(unexpected(&t, "')'"));
                    }
                    _ => {
                        // End of the expression (trailing input is not read).
                        return self.reduce(&mut stack, 0, cur);
                    }
                }
            }
        }
    }

    /// Builds every pending binary operator of precedence >= `min` (stopping
    /// at an open parenthesis), innermost first: left-associativity.
    fn reduce(&self, stack: &mut Vec<Frame>, min: u8, mut cur: Ex) -> Result<Ex, CompileError> {
        while let Some(Frame::Binary { op, .. }) = stack.last() {
            if op.prec() < min {
                break;
            }
            let Some(Frame::Binary { op, pos, left }) = stack.pop() else {
                unreachable!()
            };
            cur = match op {
                BinOp::Or => self.logic(false, left, cur, pos)?,
                BinOp::And => self.logic(true, left, cur, pos)?,
                BinOp::Eq => self.equal(left, cur, false, pos)?,
                BinOp::Ne => self.equal(left, cur, true, pos)?,
                BinOp::Cmp(op) => self.compare(op, left, cur, pos)?,
            };
        }
        Ok(cur)
    }

    /// `LogicExpression.createAND/createOR(asBoolean(l), asBoolean(r))`,
    /// flattened into n-ary nodes (associative, same evaluation order).
    fn logic(&self, and: bool, l: Ex, r: Ex, op: usize) -> Result<Ex, CompileError> {
        let pos = l.pos;
        let (ld, rd) = (l.depth, r.depth);
        let mut parts = Vec::new();
        let mut depth = 0;
        for (n, d) in [(as_boolean(l)?, ld), (as_boolean(r)?, rd)] {
            match n {
                Node::And(xs) if and => {
                    parts.extend(xs.into_vec());
                    depth = depth.max(d);
                }
                Node::Or(xs) if !and => {
                    parts.extend(xs.into_vec());
                    depth = depth.max(d);
                }
                n => {
                    parts.push(n);
                    depth = depth.max(d + 1);
                }
            }
        }
        let parts = parts.into_boxed_slice();
        let n = if and {
            Node::And(parts)
        } else {
            Node::Or(parts)
        };
        let mut e = self.node(op, depth, n)?;
        e.pos = pos;
        Ok(e)
    }

    /// `ComparisonExpression.createEqual` / `createNotEqual`.
    fn equal(&self, l: Ex, r: Ex, not: bool, op: usize) -> Result<Ex, CompileError> {
        // checkEqualOperand: a NULL literal cannot be compared.
        for e in [&l, &r] {
            if e.kind == Kind::NullConst {
                return Err(err(
                    e.pos,
                    "NULL cannot be compared with '=' or '<>' (use IS NULL)",
                ));
            }
        }
        // checkEqualOperandCompatability: TRUE/FALSE on the left of two
        // constants requires a boolean on the right.
        if l.kind == Kind::BoolConst && r.kind.is_constant() && r.kind != Kind::BoolConst {
            return Err(err(
                r.pos,
                format!("{} cannot be compared with {}", l.describe(), r.describe()),
            ));
        }
        let (start, depth) = (l.pos, 1 + l.depth.max(r.depth));
        let n = Node::Eq {
            l: l.operand(),
            r: r.operand(),
            not,
        };
        let mut e = self.node(op, depth, n)?;
        e.pos = start;
        Ok(e)
    }

    /// `ComparisonExpression.createGreaterThan` etc.
    fn compare(&self, op: CmpOp, l: Ex, r: Ex, pos: usize) -> Result<Ex, CompileError> {
        check_ordered(&l)?;
        check_ordered(&r)?;
        let (start, depth) = (l.pos, 1 + l.depth.max(r.depth));
        let n = Node::Cmp {
            op,
            l: l.operand(),
            r: r.operand(),
        };
        let mut e = self.node(pos, depth, n)?;
        e.pos = start;
        Ok(e)
    }

    /// `createIsNull` / `createIsNotNull`: no operand checks.
    fn is_null(&self, v: Ex, not: bool, pos: usize) -> Result<Ex, CompileError> {
        let (start, depth) = (v.pos, v.depth + 1);
        let v = v.operand();
        let mut e = self.node(pos, depth, Node::IsNull { v, not })?;
        e.pos = start;
        Ok(e)
    }

    /// `createInFilter` / `createNotInFilter`: `'(' string (',' string)* ')'`,
    /// and the left side must be a property.
    fn in_list(&mut self, left: Ex, not: bool, pos: usize) -> Result<Ex, CompileError> {
        let open = self.bump()?;
        if open.tok != Tok::LParen {
            return Err(unexpected(&open, "'('"));
        }
        let mut list = vec![self.string_literal()?.into_boxed_str()];
        loop {
            let t = self.bump()?;
            match t.tok {
                Tok::Comma => list.push(self.string_literal()?.into_boxed_str()),
                Tok::RParen => break,
                _ => return Err(unexpected(&t, "',' or ')'")),
            }
        }
        let name = match (left.kind, left.body) {
            (Kind::Property, Body::Val(Operand::Prop(name))) => name,
            (kind, _) => {
                let what = match kind {
                    Kind::StrConst => "a string literal",
                    Kind::NumConst => "a number",
                    _ => "an expression",
                };
                return Err(err(
                    left.pos,
                    format!("IN needs a property on its left, got {what}"),
                ));
            }
        };
        list.sort_unstable();
        list.dedup();
        let n = Node::In {
            name,
            list: list.into_boxed_slice(),
            not,
        };
        let mut e = self.node(pos, 1, n)?;
        e.pos = left.pos;
        Ok(e)
    }

    /// `createContains`, `createStartsWith`, `createEndsWith` and their NOT
    /// forms: any left side, a string literal pattern.
    fn text(&mut self, left: Ex, k: Kw, not: bool, pos: usize) -> Result<Ex, CompileError> {
        let op = match k {
            Kw::Contains => TextOp::Contains,
            Kw::StartsWith => TextOp::StartsWith,
            _ => TextOp::EndsWith,
        };
        let pat = self.string_literal()?;
        let (start, depth) = (left.pos, left.depth + 1);
        // An empty pattern is FALSE, without evaluating the left side.
        let n = if pat.is_empty() {
            Node::Const(Some(false))
        } else {
            Node::Text {
                v: left.operand(),
                op,
                pat: pat.into_boxed_str(),
                not,
            }
        };
        let mut e = self.node(pos, depth, n)?;
        e.pos = start;
        Ok(e)
    }

    /// `ComparisonExpression.createBetween` / `createNotBetween`.
    fn between(&self, v: Ex, lo: Ex, hi: Ex, not: bool, op: usize) -> Result<Ex, CompileError> {
        if !not && lo.kind.is_constant() && hi.kind.is_constant() {
            // Only BETWEEN (not NOT BETWEEN) checks its constant bounds.
            if lo.kind == Kind::NullConst || hi.kind == Kind::NullConst {
                return Err(err(op, "BETWEEN bounds cannot be NULL"));
            }
            if let (Some(l), Some(h)) = (lo.const_val(), hi.const_val()) {
                match java::compare(&h, &l) {
                    Ok(Ordering::Less) => {
                        return Err(err(
                            lo.pos,
                            "BETWEEN's lower bound must be less than or equal to its upper bound",
                        ))
                    }
                    Ok(_) => {}
                    Err(_) => return Err(err(lo.pos, "BETWEEN bounds cannot be compared")),
                }
            }
        }
        check_ordered(&v)?;
        check_ordered(&lo)?;
        check_ordered(&hi)?;
        let start = v.pos;
        let depth = 1 + v.depth.max(lo.depth).max(hi.depth);
        let n = Node::Between {
            v: v.operand(),
            lo: lo.operand(),
            hi: hi.operand(),
            not,
        };
        let mut e = self.node(op, depth, n)?;
        e.pos = start;
        Ok(e)
    }

    /// `unaryExpr`'s prefix operators.
    fn prefix(&self, p: Prefix, pos: usize, e: Ex) -> Result<Ex, CompileError> {
        Ok(match p {
            // `+x` is `x` itself (still a constant if `x` is).
            Prefix::Plus => Ex { pos, ..e },
            Prefix::Minus => negate(e, pos),
            Prefix::Not => {
                let depth = e.depth + 1;
                let n = match as_boolean(e)? {
                    Node::Const(v) => Node::Const(v.map(|b| !b)),
                    Node::Not(inner) => *inner,
                    n => Node::Not(Box::new(n)),
                };
                self.node(pos, depth, n)?
            }
        })
    }

    /// `literal()` or `variable()`.
    fn primary(&mut self, t: Token<'s>) -> Result<Ex, CompileError> {
        let pos = t.pos;
        let (kind, body) = match t.tok {
            Tok::Str(s) => (Kind::StrConst, Body::Val(Operand::Str(s.into_boxed_str()))),
            Tok::Decimal(text) => (Kind::NumConst, Body::Val(decimal(text, pos)?)),
            Tok::Float(text) => (Kind::NumConst, Body::Val(float(text, pos)?)),
            Tok::Kw(Kw::True) => (Kind::BoolConst, Body::Bool(Node::Const(Some(true)))),
            Tok::Kw(Kw::False) => (Kind::BoolConst, Body::Bool(Node::Const(Some(false)))),
            Tok::Kw(Kw::Null) => (Kind::NullConst, Body::Bool(Node::Const(None))),
            Tok::Ident(name) => {
                let name: Box<str> = name.into();
                self.props.push(name.clone());
                (Kind::Property, Body::Val(Operand::Prop(name)))
            }
            _ => return Err(unexpected(&t, "a value, property, NOT or '('")),
        };
        Ok(Ex {
            kind,
            pos,
            depth: 0,
            body,
        })
    }
}

/// `UnaryExpression.createNegate`: numbers are negated (Java wrapping), any
/// other value gives NULL. Folded here, but the result is never a constant
/// for the construction-time checks, as in RocketMQ.
fn negate(e: Ex, pos: usize) -> Ex {
    let depth = e.depth;
    let op = match e.operand() {
        Operand::Int(i) => Operand::Int(i.wrapping_neg()),
        Operand::Long(i) => Operand::Long(i.wrapping_neg()),
        Operand::Double(d) => Operand::Double(-d),
        Operand::Pred(n) | Operand::NegPred(n) => Operand::NegPred(n),
        Operand::Null | Operand::Bool(_) | Operand::Str(_) | Operand::Prop(_) => Operand::Null,
    };
    Ex {
        kind: Kind::Negate,
        pos,
        depth,
        body: Body::Val(op),
    }
}

/// `ConstantExpression.createFromDecimal`: strip `l`/`L`, parse as a Java
/// `long` (overflow is an error), narrow to `Integer` when it fits.
fn decimal(text: &str, pos: usize) -> Result<Operand, CompileError> {
    let digits = text.trim_end_matches(['l', 'L']);
    let v: i64 = digits.parse().map_err(|_| {
        err(
            pos,
            format!("integer literal {text} is out of the range of a long"),
        )
    })?;
    Ok(match i32::try_from(v) {
        Ok(i) => Operand::Int(i),
        Err(_) => Operand::Long(v),
    })
}

/// `ConstantExpression.createFloat`: rejects infinity and anything below
/// `Double.MIN_VALUE` (4.9E-324), which includes every zero literal.
fn float(text: &str, pos: usize) -> Result<Operand, CompileError> {
    let v: f64 = text
        .parse()
        .map_err(|_| err(pos, format!("invalid floating point literal {text}")))?;
    if v > f64::MAX {
        return Err(err(pos, format!("{text} is greater than Double.MAX_VALUE")));
    }
    if v < f64::from_bits(1) {
        return Err(err(
            pos,
            format!("{text} is less than Double.MIN_VALUE (4.9E-324); RocketMQ rejects zero"),
        ));
    }
    Ok(Operand::Double(v))
}

fn unexpected(t: &Token<'_>, expected: &str) -> CompileError {
    err(
        t.pos,
        format!("unexpected {}, expected {expected}", t.tok.describe()),
    )
}

fn too_deep(pos: usize, max: usize) -> CompileError {
    err(
        pos,
        format!("expression nested too deeply (max_depth is {max})"),
    )
}
