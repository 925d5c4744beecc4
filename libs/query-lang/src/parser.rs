//! Recursive-descent parser from query text to [`Expr`], with located errors.
//!
//! Grammar (lowest precedence first):
//!
//! ```text
//! query      = expr EOF
//! expr       = additive [ cmp_op additive ]          -- comparisons do not chain
//! cmp_op     = ">" | ">=" | "<" | "<=" | "==" | "!="
//! additive   = term { ("+" | "-") term }             -- left associative
//! term       = unary { ("*" | "/") unary }           -- left associative
//! unary      = "-" unary | primary
//! primary    = NUMBER | DURATION | STRING | "(" expr ")"
//!            | "ts" "(" pattern "," pattern "," pattern ")"
//!            | IDENT "(" [ expr { "," expr } ] ")" [ "by" "(" part { "," part } ")" ]
//!            | IDENT
//! part       = "service" | "source" | "metric"
//! pattern    = "*" | "/" regex "/" | STRING | "members" "(" "role." NAME ")" | bare text
//! NUMBER     = digits [ "." digits ] [ ("e" | "E") [ "+" | "-" ] digits ]
//! DURATION   = { digits ("ms" | "s" | "m" | "h" | "d" | "w") }+      -- 1h30m
//! STRING     = '"' ... '"' | "'" ... "'"       -- escapes \\ \" \' \n \t
//! ```
//! `#` starts a comment that runs to the end of the line.

use crate::ast::{ArithOp, CmpOp, Expr, ExprKind, KeyPart, Selection};
use crate::lexer::{LexError, Lexer, ParseErrorKind, Tok, Token};
use crate::span::{Located, Span};

/// A syntax error located in the query text.
pub type ParseError = Located<ParseErrorKind>;

/// How deeply expressions may nest before the parser refuses the query.
pub const MAX_DEPTH: usize = 100;

/// Parses a whole query.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        lex: Lexer::new(src),
        ahead: None,
        depth: 0,
    };
    p.query().map_err(|(k, s)| Located::new(k, s, src))
}

struct Parser<'a> {
    lex: Lexer<'a>,
    ahead: Option<Token>,
    depth: usize,
}

type PResult<T> = Result<T, LexError>;

impl Parser<'_> {
    fn peek(&mut self) -> PResult<&Token> {
        if self.ahead.is_none() {
            self.ahead = Some(self.lex.next_token()?);
        }
        Ok(self.ahead.as_ref().expect("just filled"))
    }

    fn next(&mut self) -> PResult<Token> {
        self.peek()?;
        Ok(self.ahead.take().expect("just peeked"))
    }

    fn text(&self, span: Span) -> &str {
        &self.lex.src()[span.start..span.end]
    }

    fn unexpected<T>(&mut self, expected: &str) -> PResult<T> {
        let t = self.next()?;
        let found = t.tok.describe(self.text(t.span));
        Err((
            ParseErrorKind::Expected {
                expected: expected.to_string(),
                found,
            },
            t.span,
        ))
    }

    fn expect(&mut self, tok: Tok, expected: &str) -> PResult<Span> {
        if self.peek()?.tok == tok {
            Ok(self.next()?.span)
        } else {
            self.unexpected(expected)
        }
    }

    fn query(&mut self) -> PResult<Expr> {
        let e = self.expr()?;
        if self.peek()?.tok != Tok::Eof {
            return self.unexpected("an operator or end of query");
        }
        Ok(e)
    }

    fn expr(&mut self) -> PResult<Expr> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let s = self.peek()?.span;
            return Err((ParseErrorKind::TooDeep(MAX_DEPTH), s));
        }
        let r = self.comparison();
        self.depth -= 1;
        r
    }

    fn cmp_op(tok: &Tok) -> Option<CmpOp> {
        Some(match tok {
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::EqEq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            _ => return None,
        })
    }

    fn comparison(&mut self) -> PResult<Expr> {
        let lhs = self.additive()?;
        let Some(op) = Self::cmp_op(&self.peek()?.tok) else {
            return Ok(lhs);
        };
        self.next()?;
        let rhs = self.additive()?;
        let t = self.peek()?;
        if Self::cmp_op(&t.tok).is_some() {
            return Err((ParseErrorKind::ChainedComparison, t.span));
        }
        let span = lhs.span.to(rhs.span);
        Ok(Expr::new(
            ExprKind::Cmp(op, Box::new(lhs), Box::new(rhs)),
            span,
        ))
    }

    fn additive(&mut self) -> PResult<Expr> {
        let mut lhs = self.term()?;
        loop {
            let op = match self.peek()?.tok {
                Tok::Plus => ArithOp::Add,
                Tok::Minus => ArithOp::Sub,
                _ => return Ok(lhs),
            };
            self.next()?;
            let rhs = self.term()?;
            let span = lhs.span.to(rhs.span);
            lhs = Expr::new(ExprKind::Arith(op, Box::new(lhs), Box::new(rhs)), span);
        }
    }

    fn term(&mut self) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek()?.tok {
                Tok::Star => ArithOp::Mul,
                Tok::Slash => ArithOp::Div,
                _ => return Ok(lhs),
            };
            self.next()?;
            let rhs = self.unary()?;
            let span = lhs.span.to(rhs.span);
            lhs = Expr::new(ExprKind::Arith(op, Box::new(lhs), Box::new(rhs)), span);
        }
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.peek()?.tok == Tok::Minus {
            let s = self.next()?.span;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err((ParseErrorKind::TooDeep(MAX_DEPTH), s));
            }
            let e = self.unary();
            self.depth -= 1;
            let e = e?;
            let span = s.to(e.span);
            return Ok(Expr::new(ExprKind::Neg(Box::new(e)), span));
        }
        self.primary()
    }

    fn primary(&mut self) -> PResult<Expr> {
        let t = self.next()?;
        let kind = match t.tok {
            Tok::Number(n) => ExprKind::Number(n),
            Tok::Duration(d) => ExprKind::Duration(d),
            Tok::Str(s) => ExprKind::Str(s),
            Tok::LParen => {
                let e = self.expr()?;
                let close = self.expect(Tok::RParen, "`)` or an operator")?;
                // The span of a parenthesised expression includes its parentheses.
                return Ok(Expr::new(e.kind, t.span.to(close)));
            }
            Tok::Ident(name) => {
                if self.peek()?.tok != Tok::LParen {
                    return Ok(Expr::new(ExprKind::Name(name), t.span));
                }
                self.next()?;
                if name == "ts" {
                    return self.selection(t.span);
                }
                return self.call(name, t.span);
            }
            tok => {
                let found = tok.describe(self.text(t.span));
                return Err((
                    ParseErrorKind::Expected {
                        expected: "an expression".into(),
                        found,
                    },
                    t.span,
                ));
            }
        };
        Ok(Expr::new(kind, t.span))
    }

    fn call(&mut self, name: String, name_span: Span) -> PResult<Expr> {
        let mut args = Vec::new();
        let close = if self.peek()?.tok == Tok::RParen {
            self.next()?.span
        } else {
            loop {
                args.push(self.expr()?);
                match self.peek()?.tok {
                    Tok::Comma => {
                        self.next()?;
                    }
                    Tok::RParen => break self.next()?.span,
                    _ => return self.unexpected("`,` or `)` in the argument list"),
                }
            }
        };
        let mut span = name_span.to(close);
        let mut by = None;
        if matches!(&self.peek()?.tok, Tok::Ident(k) if k == "by") {
            self.next()?;
            self.expect(Tok::LParen, "`(` after `by`")?;
            let mut parts = Vec::new();
            loop {
                let t = self.next()?;
                let part = match &t.tok {
                    Tok::Ident(n) => KeyPart::from_name(n),
                    _ => None,
                };
                let Some(part) = part else {
                    let found = t.tok.describe(self.text(t.span));
                    return Err((
                        ParseErrorKind::Expected {
                            expected: "a key part (service, source or metric)".into(),
                            found,
                        },
                        t.span,
                    ));
                };
                parts.push((part, t.span));
                match self.peek()?.tok {
                    Tok::Comma => {
                        self.next()?;
                    }
                    Tok::RParen => {
                        span = span.to(self.next()?.span);
                        break;
                    }
                    _ => return self.unexpected("`,` or `)` after a key part"),
                }
            }
            by = Some(parts);
        }
        Ok(Expr::new(
            ExprKind::Call {
                name,
                name_span,
                args,
                by,
            },
            span,
        ))
    }

    /// The rest of `ts(` with the lexer in pattern mode.
    fn selection(&mut self, start: Span) -> PResult<Expr> {
        debug_assert!(self.ahead.is_none());
        let service = self.lex.pattern("a service")?;
        self.pattern_sep(',', "`,` after the service")?;
        let source = self.lex.pattern("sources")?;
        self.pattern_sep(',', "`,` after the sources")?;
        let metric = self.lex.pattern("metrics")?;
        let close = self.pattern_sep(')', "`)` after the metrics")?;
        Ok(Expr::new(
            ExprKind::Select(Selection {
                service,
                source,
                metric,
            }),
            start.to(close),
        ))
    }

    fn pattern_sep(&mut self, c: char, expected: &str) -> PResult<Span> {
        if let Some(s) = self.lex.eat_char(c) {
            return Ok(s);
        }
        let (found, span) = self.lex.describe_next();
        // Name the whole next word, not only its first character.
        let (found, span) = if span.end > span.start {
            let rest = &self.lex.src()[span.start..];
            let len = rest
                .find(|ch: char| ch.is_whitespace() || ch == ',' || ch == ')')
                .unwrap_or(rest.len())
                .max(span.end - span.start);
            (
                format!("`{}`", &rest[..len]),
                Span::new(span.start, span.start + len),
            )
        } else {
            (found, span)
        };
        Err((
            ParseErrorKind::Expected {
                expected: expected.to_string(),
                found,
            },
            span,
        ))
    }
}
