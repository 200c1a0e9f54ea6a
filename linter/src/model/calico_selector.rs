//! Calico's label selector language, as its reference documents it
//! (`docs.tigera.io/calico/latest/reference/resources/networkpolicy#selectors`):
//!
//! - match operators: `all()`, `global()`, `has(k)`, `k == 'v'`, `k != 'v'`, `k in {'a', 'b'}`,
//!   `k not in {…}`, `k contains 's'`, `k starts with 's'`, `k ends with 's'`;
//! - `!`, `&&`, `||` and parentheses, binding in that order (`!` tightest, `||` loosest);
//! - strings in single or double quotes (no escapes), label keys of `[a-zA-Z0-9_./-]`;
//! - an empty selector means `all()`.
//!
//! This module parses; what a selector matches (pods, namespaces, network sets, and labels the
//! input cannot tell) is `semantics::calico`'s business.

use std::fmt;

/// Longest selector read (bytes). Calico has no limit of its own; the API server's request
/// size bounds it. Past this, nothing written by hand is lost and a hostile input costs nothing.
pub const MAX_SELECTOR_LEN: usize = 16 * 1024;
/// Deepest nesting of parentheses and `!` read (the parser recurses).
pub const MAX_DEPTH: usize = 64;
/// Longest label key Calico accepts.
const MAX_KEY_LEN: usize = 512;

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `all()`: every resource in scope (also the empty selector).
    All,
    /// `global()`: every non-namespaced resource.
    Global,
    Has(String),
    Eq(String, String),
    /// Also true when the label is absent.
    Ne(String, String),
    In(String, Vec<String>),
    /// Also true when the label is absent.
    NotIn(String, Vec<String>),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Whether the expression is `all()` (so the selector selects everything in its scope).
    pub fn is_all(&self) -> bool {
        matches!(self, Expr::All)
    }

    /// Whether every label key the expression reads passes `test`.
    pub fn reads_only(&self, test: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Expr::All | Expr::Global => true,
            Expr::Has(k)
            | Expr::Eq(k, _)
            | Expr::Ne(k, _)
            | Expr::In(k, _)
            | Expr::NotIn(k, _)
            | Expr::Contains(k, _)
            | Expr::StartsWith(k, _)
            | Expr::EndsWith(k, _) => test(k),
            Expr::Not(e) => e.reads_only(test),
            Expr::And(a, b) | Expr::Or(a, b) => a.reads_only(test) && b.reads_only(test),
        }
    }
}

/// A selector with the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub source: String,
    pub expr: Expr,
}

impl Selector {
    /// The selector `all()`.
    pub fn all() -> Selector {
        Selector { source: "all()".to_owned(), expr: Expr::All }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Why a selector does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    /// Byte offset in the selector where reading stopped.
    pub at: usize,
    pub message: String,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.at)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Label(String),
    Str(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Eq,
    Ne,
    Not,
    And,
    Or,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    Has(String),
    All,
    Global,
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

/// Splits a selector into tokens. Words after a label are operators (`in`, `not in`,
/// `contains`, `starts with`, `ends with`); anywhere else they are labels, as in Calico.
fn tokenize(input: &str) -> Result<Vec<(usize, Token)>, SelectorError> {
    let bytes = input.as_bytes();
    let mut tokens: Vec<(usize, Token)> = Vec::new();
    let mut i = 0;
    let err = |at: usize, message: &str| SelectorError { at, message: message.to_owned() };
    let skip_ws = |mut i: usize| {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        i
    };
    loop {
        i = skip_ws(i);
        let Some(&b) = bytes.get(i) else { return Ok(tokens) };
        let start = i;
        let after_label = matches!(tokens.last(), Some((_, Token::Label(_))));
        let rest = &input[i..];
        let fixed = match b {
            b'(' => Some((1, Token::LParen)),
            b')' => Some((1, Token::RParen)),
            b'{' => Some((1, Token::LBrace)),
            b'}' => Some((1, Token::RBrace)),
            b',' => Some((1, Token::Comma)),
            b'=' if rest.starts_with("==") => Some((2, Token::Eq)),
            b'!' if rest.starts_with("!=") => Some((2, Token::Ne)),
            b'!' => Some((1, Token::Not)),
            b'&' if rest.starts_with("&&") => Some((2, Token::And)),
            b'|' if rest.starts_with("||") => Some((2, Token::Or)),
            _ => None,
        };
        if let Some((len, token)) = fixed {
            i += len;
            tokens.push((start, token));
            continue;
        }
        let token = match b {
            b'"' | b'\'' => {
                let Some(len) = rest[1..].find(b as char) else { return Err(err(start, "unterminated string")) };
                i += len + 2;
                Token::Str(rest[1..1 + len].to_owned())
            }
            _ if after_label => {
                let word = |w: &str| rest.starts_with(w);
                let then = |skip: usize, w: &str| {
                    let j = skip_ws(i + skip);
                    input[j..].starts_with(w).then(|| j + w.len())
                };
                if word("contains") {
                    i += "contains".len();
                    Token::Contains
                } else if word("starts") {
                    i = then("starts".len(), "with").ok_or_else(|| err(start, "expected \"starts with\""))?;
                    Token::StartsWith
                } else if word("ends") {
                    i = then("ends".len(), "with").ok_or_else(|| err(start, "expected \"ends with\""))?;
                    Token::EndsWith
                } else if word("not") {
                    i = then("not".len(), "in").ok_or_else(|| err(start, "expected \"not in\""))?;
                    Token::NotIn
                } else if word("in") {
                    i += 2;
                    Token::In
                } else {
                    return Err(err(start, "expected an operator after the label"));
                }
            }
            _ if rest.starts_with("has(") => {
                let j = skip_ws(i + 4);
                let key_len = bytes[j..].iter().take_while(|b| is_key_byte(**b)).count();
                if key_len == 0 {
                    return Err(err(j, "no label name in has()"));
                }
                let k = skip_ws(j + key_len);
                if bytes.get(k) != Some(&b')') {
                    return Err(err(k, "no closing ')' after has("));
                }
                i = k + 1;
                Token::Has(input[j..j + key_len].to_owned())
            }
            _ if rest.starts_with("all(") || rest.starts_with("global(") => {
                let global = rest.starts_with("global(");
                let j = skip_ws(i + if global { 7 } else { 4 });
                if bytes.get(j) != Some(&b')') {
                    return Err(err(j, "expected ')'"));
                }
                i = j + 1;
                if global { Token::Global } else { Token::All }
            }
            _ if is_key_byte(b) => {
                let len = bytes[i..].iter().take_while(|b| is_key_byte(**b)).count();
                i += len;
                Token::Label(input[start..i].to_owned())
            }
            _ => return Err(err(start, "unexpected character")),
        };
        if let Token::Label(k) | Token::Has(k) = &token
            && k.len() > MAX_KEY_LEN
        {
            return Err(err(start, "label key longer than 512 characters"));
        }
        tokens.push((start, token));
    }
}

struct Parser<'t> {
    tokens: &'t [(usize, Token)],
    pos: usize,
    end: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(at, _)| *at)
    }

    fn error(&self, message: &str) -> SelectorError {
        SelectorError { at: self.at(), message: message.to_owned() }
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn or(&mut self, depth: usize) -> Result<Expr, SelectorError> {
        let mut left = self.and(depth)?;
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            let right = self.and(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, SelectorError> {
        let mut left = self.unary(depth)?;
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            let right = self.unary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, SelectorError> {
        if depth >= MAX_DEPTH {
            return Err(self.error("selector nested too deeply"));
        }
        match self.next() {
            Some(Token::Not) => Ok(Expr::Not(Box::new(self.unary(depth + 1)?))),
            Some(Token::LParen) => {
                let inner = self.or(depth + 1)?;
                match self.next() {
                    Some(Token::RParen) => Ok(inner),
                    _ => {
                        self.pos -= 1;
                        Err(self.error("expected ')'"))
                    }
                }
            }
            Some(Token::All) => Ok(Expr::All),
            Some(Token::Global) => Ok(Expr::Global),
            Some(Token::Has(k)) => Ok(Expr::Has(k)),
            Some(Token::Label(k)) => self.comparison(k),
            _ => {
                self.pos -= 1;
                Err(self.error("expected a label, has(), all(), global(), '!' or '('"))
            }
        }
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        match self.next() {
            Some(Token::Str(s)) => Ok(s),
            _ => {
                self.pos -= 1;
                Err(self.error("expected a quoted string"))
            }
        }
    }

    fn comparison(&mut self, key: String) -> Result<Expr, SelectorError> {
        Ok(match self.next() {
            Some(Token::Eq) => Expr::Eq(key, self.string()?),
            Some(Token::Ne) => Expr::Ne(key, self.string()?),
            Some(Token::Contains) => Expr::Contains(key, self.string()?),
            Some(Token::StartsWith) => Expr::StartsWith(key, self.string()?),
            Some(Token::EndsWith) => Expr::EndsWith(key, self.string()?),
            Some(Token::In) => Expr::In(key, self.set()?),
            Some(Token::NotIn) => Expr::NotIn(key, self.set()?),
            _ => {
                self.pos -= 1;
                return Err(self.error("expected an operator after the label"));
            }
        })
    }

    fn set(&mut self) -> Result<Vec<String>, SelectorError> {
        if self.next() != Some(Token::LBrace) {
            self.pos -= 1;
            return Err(self.error("expected '{'"));
        }
        let mut values = Vec::new();
        if self.peek() == Some(&Token::RBrace) {
            self.pos += 1;
            return Ok(values);
        }
        loop {
            values.push(self.string()?);
            match self.next() {
                Some(Token::Comma) => {}
                Some(Token::RBrace) => return Ok(values),
                _ => {
                    self.pos -= 1;
                    return Err(self.error("expected ',' or '}'"));
                }
            }
        }
    }
}

/// Parses a selector; the empty (or blank) selector is `all()`.
pub fn parse(input: &str) -> Result<Selector, SelectorError> {
    if input.len() > MAX_SELECTOR_LEN {
        return Err(SelectorError { at: MAX_SELECTOR_LEN, message: format!("longer than {MAX_SELECTOR_LEN} bytes") });
    }
    let tokens = tokenize(input)?;
    if tokens.is_empty() {
        return Ok(Selector { source: input.to_owned(), expr: Expr::All });
    }
    let mut parser = Parser { tokens: &tokens, pos: 0, end: input.len() };
    let expr = parser.or(0)?;
    if parser.pos < tokens.len() {
        return Err(parser.error("unexpected text after the selector"));
    }
    Ok(Selector { source: input.to_owned(), expr })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Expr {
        parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}")).expr
    }

    fn label(k: &str, v: &str) -> Expr {
        Expr::Eq(k.to_owned(), v.to_owned())
    }

    #[test]
    fn empty_is_all() {
        assert_eq!(p(""), Expr::All);
        assert_eq!(p("  \t"), Expr::All);
        assert_eq!(p("all()"), Expr::All);
        assert_eq!(p("all( )"), Expr::All);
    }

    #[test]
    fn operators_of_the_reference() {
        assert_eq!(p("role == 'database'"), label("role", "database"));
        assert_eq!(p("role==\"database\""), label("role", "database"));
        assert_eq!(p("a != 'b'"), Expr::Ne("a".into(), "b".into()));
        assert_eq!(p("has(my-label)"), Expr::Has("my-label".into()));
        assert_eq!(p("has( projectcalico.org/name )"), Expr::Has("projectcalico.org/name".into()));
        assert_eq!(p("k in { 'v1', 'v2' }"), Expr::In("k".into(), vec!["v1".into(), "v2".into()]));
        assert_eq!(p("k not in {'v1'}"), Expr::NotIn("k".into(), vec!["v1".into()]));
        assert_eq!(p("k in {}"), Expr::In("k".into(), vec![]));
        assert_eq!(p("k contains 's'"), Expr::Contains("k".into(), "s".into()));
        assert_eq!(p("k starts  with 's'"), Expr::StartsWith("k".into(), "s".into()));
        assert_eq!(p("k ends with 's'"), Expr::EndsWith("k".into(), "s".into()));
        assert_eq!(p("global()"), Expr::Global);
        // A word is a label unless it follows one.
        assert_eq!(p("in == 'x'"), label("in", "x"));
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        // The reference's own example and its bracketing.
        let got = p("! has(my-label) || my-label starts with 'prod' && role in {'frontend','business'}");
        let want = Expr::Or(
            Box::new(Expr::Not(Box::new(Expr::Has("my-label".into())))),
            Box::new(Expr::And(
                Box::new(Expr::StartsWith("my-label".into(), "prod".into())),
                Box::new(Expr::In("role".into(), vec!["frontend".into(), "business".into()])),
            )),
        );
        assert_eq!(got, want);
        assert_eq!(
            p("!(a == 'x' || b == 'y')"),
            Expr::Not(Box::new(Expr::Or(Box::new(label("a", "x")), Box::new(label("b", "y")))))
        );
    }

    #[test]
    fn bad_selectors_say_where() {
        for (bad, at) in [
            ("a = 'b'", 2),
            ("a == b", 5),
            ("a == 'b", 5),
            ("a == 'b' &&", 11),
            ("(a == 'b'", 9),
            ("a == 'b')", 8),
            ("has()", 4),
            ("has(a", 5),
            ("a", 1),
            ("a is 'b'", 2),
            ("k in {'a' 'b'}", 10),
            ("k in 'a'", 5),
            ("a == 'b' || || c == 'd'", 12),
            ("a == 'b' c == 'd'", 9),
            ("a € 'b'", 2),
            ("all(x)", 4),
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.at, at, "{bad:?}: {e}");
        }
    }

    #[test]
    fn bounded_depth_and_length() {
        let deep = format!("{}a == 'b'{}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
        assert!(parse(&deep).expect_err("deep").message.contains("nested too deeply"));
        let nots = format!("{}all()", "!".repeat(10_000));
        assert!(parse(&nots).is_err());
        let shallow = format!("{}a == 'b'{}", "(".repeat(10), ")".repeat(10));
        assert_eq!(parse(&shallow).expect("shallow").expr, label("a", "b"));
        assert!(parse(&"a".repeat(MAX_SELECTOR_LEN + 1)).is_err());
        assert!(parse(&format!("has({})", "k".repeat(513))).is_err());
    }
}
