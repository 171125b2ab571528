//! On-demand tokenizer mirroring the token rules of RocketMQ's `SelectorParser.jj`.
//!
//! Tokens are produced one at a time because RocketMQ's parser only ever lexes
//! one token past the end of the expression (see the crate docs on trailing
//! input): a lexical error further on must not be reported.

use crate::CompileError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kw {
    Not,
    And,
    Or,
    Between,
    In,
    True,
    False,
    Null,
    Is,
    Contains,
    StartsWith,
    EndsWith,
}

impl Kw {
    /// Reserved words, matched case-insensitively (ASCII only, as JavaCC's
    /// `IGNORE_CASE` generates both cases of each ASCII letter).
    fn from_word(w: &str) -> Option<Kw> {
        const WORDS: [(&str, Kw); 12] = [
            ("NOT", Kw::Not),
            ("AND", Kw::And),
            ("OR", Kw::Or),
            ("BETWEEN", Kw::Between),
            ("IN", Kw::In),
            ("TRUE", Kw::True),
            ("FALSE", Kw::False),
            ("NULL", Kw::Null),
            ("IS", Kw::Is),
            ("CONTAINS", Kw::Contains),
            ("STARTSWITH", Kw::StartsWith),
            ("ENDSWITH", Kw::EndsWith),
        ];
        WORDS
            .iter()
            .find(|(k, _)| k.len() == w.len() && k.eq_ignore_ascii_case(w))
            .map(|&(_, kw)| kw)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kw::Not => "NOT",
            Kw::And => "AND",
            Kw::Or => "OR",
            Kw::Between => "BETWEEN",
            Kw::In => "IN",
            Kw::True => "TRUE",
            Kw::False => "FALSE",
            Kw::Null => "NULL",
            Kw::Is => "IS",
            Kw::Contains => "CONTAINS",
            Kw::StartsWith => "STARTSWITH",
            Kw::EndsWith => "ENDSWITH",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok<'s> {
    Eof,
    Kw(Kw),
    /// `0 | [1-9][0-9]*[lL]?`, raw text.
    Decimal(&'s str),
    /// Floating point literal, raw text.
    Float(&'s str),
    /// String literal, already decoded (`''` -> `'`).
    Str(String),
    Ident(&'s str),
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    LParen,
    Comma,
    RParen,
    Plus,
    Minus,
}

impl Tok<'_> {
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Eof => "end of expression".to_string(),
            Tok::Kw(k) => format!("keyword {}", k.name()),
            Tok::Decimal(s) | Tok::Float(s) => format!("number {s}"),
            Tok::Str(_) => "string literal".to_string(),
            Tok::Ident(s) => format!("property {s}"),
            Tok::Eq => "'='".to_string(),
            Tok::Ne => "'<>'".to_string(),
            Tok::Gt => "'>'".to_string(),
            Tok::Ge => "'>='".to_string(),
            Tok::Lt => "'<'".to_string(),
            Tok::Le => "'<='".to_string(),
            Tok::LParen => "'('".to_string(),
            Tok::Comma => "','".to_string(),
            Tok::RParen => "')'".to_string(),
            Tok::Plus => "'+'".to_string(),
            Tok::Minus => "'-'".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token<'s> {
    pub(crate) tok: Tok<'s>,
    /// Byte offset of the token's first byte.
    pub(crate) pos: usize,
}

pub(crate) struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    /// Offset of the last `\n` or `\r` in the source: a `--` comment after it
    /// has no terminator and is not a comment (keeps lexing linear).
    last_eol: Option<usize>,
}

fn err(position: usize, reason: impl Into<String>) -> CompileError {
    CompileError {
        position,
        reason: reason.into(),
    }
}

impl<'s> Lexer<'s> {
    pub(crate) fn new(src: &'s str) -> Self {
        let last_eol = src.bytes().rposition(|b| b == b'\n' || b == b'\r');
        Lexer {
            src,
            pos: 0,
            last_eol,
        }
    }

    /// Skips whitespace and comments (`-- ... EOL`, `/* ... */`).
    fn skip_trivia(&mut self) {
        let b = self.src.as_bytes();
        loop {
            match b.get(self.pos) {
                // Exactly JavaCC's SPECIAL_TOKEN set; no other whitespace.
                Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0c) => self.pos += 1,
                Some(b'-') if b.get(self.pos + 1) == Some(&b'-') => {
                    // LINE_COMMENT needs a line terminator; without one the
                    // longest match is the single '-' token.
                    match self.last_eol {
                        Some(eol) if eol >= self.pos + 2 => {
                            let rest = &b[self.pos + 2..];
                            let i = rest
                                .iter()
                                .position(|&c| c == b'\n' || c == b'\r')
                                .expect("a line terminator exists after this point");
                            let mut end = self.pos + 2 + i + 1;
                            if rest[i] == b'\r' && b.get(end) == Some(&b'\n') {
                                end += 1;
                            }
                            self.pos = end;
                        }
                        _ => return,
                    }
                }
                Some(b'/') if b.get(self.pos + 1) == Some(&b'*') => {
                    match self.src[self.pos + 2..].find("*/") {
                        Some(i) => self.pos += 2 + i + 2,
                        // Unterminated: '/' alone is no token, reported by next().
                        None => return,
                    }
                }
                _ => return,
            }
        }
    }

    pub(crate) fn next_token(&mut self) -> Result<Token<'s>, CompileError> {
        self.skip_trivia();
        let b = self.src.as_bytes();
        let start = self.pos;
        let Some(&c) = b.get(start) else {
            return Ok(Token {
                tok: Tok::Eof,
                pos: start,
            });
        };
        let tok = match c {
            b'=' => self.single(Tok::Eq),
            b'(' => self.single(Tok::LParen),
            b')' => self.single(Tok::RParen),
            b',' => self.single(Tok::Comma),
            b'+' => self.single(Tok::Plus),
            b'-' => self.single(Tok::Minus),
            b'<' => match b.get(start + 1) {
                Some(b'>') => self.double(Tok::Ne),
                Some(b'=') => self.double(Tok::Le),
                _ => self.single(Tok::Lt),
            },
            b'>' => match b.get(start + 1) {
                Some(b'=') => self.double(Tok::Ge),
                _ => self.single(Tok::Gt),
            },
            b'\'' => self.string()?,
            b'0'..=b'9' => self.number(),
            b'.' if b.get(start + 1).is_some_and(u8::is_ascii_digit) => self.number(),
            b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'$' => {
                let len = b[start..]
                    .iter()
                    .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b'$'))
                    .unwrap_or(b.len() - start);
                self.pos = start + len;
                let word = &self.src[start..self.pos];
                match Kw::from_word(word) {
                    Some(kw) => Tok::Kw(kw),
                    None => Tok::Ident(word),
                }
            }
            b'/' if b.get(start + 1) == Some(&b'*') => {
                return Err(err(start, "unterminated comment"));
            }
            _ => {
                let ch = self.src[start..].chars().next().unwrap_or('?');
                return Err(err(start, format!("unexpected character {ch:?}")));
            }
        };
        Ok(Token { tok, pos: start })
    }

    fn single(&mut self, t: Tok<'s>) -> Tok<'s> {
        self.pos += 1;
        t
    }

    fn double(&mut self, t: Tok<'s>) -> Tok<'s> {
        self.pos += 2;
        t
    }

    /// `'` ( `''` | any char but `'` )* `'`, longest match.
    ///
    /// Without a lone closing quote, JavaCC's longest match still ends at the
    /// first quote of the last `''` pair (`'a''b` lexes as `'a'` then `'b`);
    /// only a literal with no such pair is a lexical error.
    fn string(&mut self) -> Result<Tok<'s>, CompileError> {
        let start = self.pos;
        let b = self.src.as_bytes();
        let mut out = String::new();
        let mut seg = start + 1; // start of the pending unescaped run
        let mut i = start + 1;
        let mut last_pair: Option<(usize, usize)> = None; // (quote offset, out.len())
        loop {
            match b[i..].iter().position(|&c| c == b'\'') {
                None => {
                    let Some((q, len)) = last_pair else {
                        return Err(err(start, "unterminated string literal"));
                    };
                    out.truncate(len);
                    self.pos = q + 1;
                    return Ok(Tok::Str(out));
                }
                Some(d) => {
                    i += d;
                    if b.get(i + 1) == Some(&b'\'') {
                        out.push_str(&self.src[seg..i]);
                        last_pair = Some((i, out.len()));
                        out.push('\'');
                        i += 2;
                        seg = i;
                    } else {
                        out.push_str(&self.src[seg..i]);
                        self.pos = i + 1;
                        return Ok(Tok::Str(out));
                    }
                }
            }
        }
    }

    /// DECIMAL_LITERAL or FLOATING_POINT_LITERAL, longest match.
    fn number(&mut self) -> Tok<'s> {
        let b = self.src.as_bytes();
        let start = self.pos;
        let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
        // Length of an EXPONENT (`E [+-]? [0-9]+`) starting at `at`, or 0.
        let exponent = |at: usize| -> usize {
            if !matches!(b.get(at), Some(b'e' | b'E')) {
                return 0;
            }
            let mut j = at + 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            let d = digits(j);
            if d == 0 {
                0
            } else {
                j + d - at
            }
        };
        let int_len = digits(start);
        let mut end = start + int_len;
        if b.get(end) == Some(&b'.') {
            // `digits . digits* exp?` or `. digits+ exp?` (the caller checked
            // that a leading '.' is followed by a digit).
            end += 1;
            end += digits(end);
            end += exponent(end);
            self.pos = end;
            return Tok::Float(&self.src[start..end]);
        }
        let e = exponent(end);
        if e > 0 {
            end += e;
            self.pos = end;
            return Tok::Float(&self.src[start..end]);
        }
        // DECIMAL_LITERAL: "0" (no suffix) | [1-9][0-9]* [lL]?
        if b[start] == b'0' {
            end = start + 1;
        } else if matches!(b.get(end), Some(b'l' | b'L')) {
            end += 1;
        }
        self.pos = end;
        Tok::Decimal(&self.src[start..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok<'_>> {
        let mut l = Lexer::new(s);
        let mut v = Vec::new();
        loop {
            let t = l.next_token().unwrap();
            if t.tok == Tok::Eof {
                return v;
            }
            v.push(t.tok);
        }
    }

    #[test]
    fn numbers_follow_longest_match() {
        assert_eq!(toks("0"), vec![Tok::Decimal("0")]);
        assert_eq!(
            toks("007"),
            vec![Tok::Decimal("0"), Tok::Decimal("0"), Tok::Decimal("7")]
        );
        assert_eq!(toks("0L"), vec![Tok::Decimal("0"), Tok::Ident("L")]);
        assert_eq!(toks("12l"), vec![Tok::Decimal("12l")]);
        assert_eq!(toks("0x1F"), vec![Tok::Decimal("0"), Tok::Ident("x1F")]);
        assert_eq!(toks("5."), vec![Tok::Float("5.")]);
        assert_eq!(toks(".5e3"), vec![Tok::Float(".5e3")]);
        assert_eq!(toks("5E+10"), vec![Tok::Float("5E+10")]);
        assert_eq!(toks("5e"), vec![Tok::Decimal("5"), Tok::Ident("e")]);
        assert_eq!(toks("5.5.5"), vec![Tok::Float("5.5"), Tok::Float(".5")]);
        assert_eq!(toks("007.5"), vec![Tok::Float("007.5")]);
        assert_eq!(toks("1.5L"), vec![Tok::Float("1.5"), Tok::Ident("L")]);
    }

    #[test]
    fn words_operators_comments() {
        assert_eq!(
            toks("a<>b<=c>=d<e>f"),
            vec![
                Tok::Ident("a"),
                Tok::Ne,
                Tok::Ident("b"),
                Tok::Le,
                Tok::Ident("c"),
                Tok::Ge,
                Tok::Ident("d"),
                Tok::Lt,
                Tok::Ident("e"),
                Tok::Gt,
                Tok::Ident("f"),
            ]
        );
        assert_eq!(toks("nOt notx"), vec![Tok::Kw(Kw::Not), Tok::Ident("notx")]);
        assert_eq!(toks("a -- c\r\nb"), vec![Tok::Ident("a"), Tok::Ident("b")]);
        assert_eq!(
            toks("a /* * / */ b"),
            vec![Tok::Ident("a"), Tok::Ident("b")]
        );
        // No line terminator: not a comment.
        assert_eq!(
            toks("a --b"),
            vec![Tok::Ident("a"), Tok::Minus, Tok::Minus, Tok::Ident("b")]
        );
        assert_eq!(
            toks("'it''s' ''"),
            vec![Tok::Str("it's".into()), Tok::Str(String::new())]
        );
        assert_eq!(toks("'é\n'"), vec![Tok::Str("é\n".into())]);
        // Unterminated, but a shorter literal ends at a '' pair's first quote.
        let mut l = Lexer::new("'a''b''c x");
        assert_eq!(l.next_token().unwrap().tok, Tok::Str("a'b".into()));
        assert_eq!(l.next_token().unwrap_err().position, 6);
    }

    #[test]
    fn lexical_errors() {
        for (s, pos) in [
            ("a @", 2),
            ("'abc", 0),
            ("/* x", 0),
            ("a.b", 1),
            ("\u{a0}", 0),
            ("a\x0bb", 1),
        ] {
            let mut l = Lexer::new(s);
            let e = loop {
                match l.next_token() {
                    Ok(t) if t.tok == Tok::Eof => panic!("{s:?} lexed"),
                    Ok(_) => {}
                    Err(e) => break e,
                }
            };
            assert_eq!(e.position, pos, "{s:?}: {e}");
        }
    }
}
