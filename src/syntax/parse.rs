//! pest parse tree to AST, and pest errors to readable diagnostics.

// `Diagnostic` (a contract type) is large; errors are the cold path, so it is not boxed.
#![allow(clippy::result_large_err)]

use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::Parser;
use pest_derive::Parser;

use super::ast::*;
use crate::diag::codes;
use crate::diag::Diagnostic;
use crate::diag::Span;

#[derive(Parser)]
#[grammar = "../grammar/nn.pest"]
struct NnParser;

/// Larger sources are refused before parsing (real models are a few hundred bytes).
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// Deeper bracket nesting is refused before parsing: pest recurses once per level.
pub const MAX_NESTING: usize = 64;

/// Parses a whole file. On a syntax error, returns that one diagnostic.
pub fn parse(src: &str) -> Result<File, Diagnostic> {
    check_nesting(src)?;
    let mut pairs = NnParser::parse(Rule::file, src).map_err(|e| syntax_error(src, &e))?;
    let file = pairs.next().map(|p| p.into_inner()).into_iter().flatten();
    let items = file
        .filter_map(|p| match p.as_rule() {
            Rule::model_block => Some(Item::Model(model_block(p))),
            Rule::train_block => Some(Item::Train(train_block(p))),
            _ => None,
        })
        .collect();
    Ok(File { items })
}

/// Finds the first bracket nested deeper than `MAX_NESTING`, skipping strings and comments.
fn check_nesting(src: &str) -> Result<(), Diagnostic> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut in_comment = false;
    let mut escaped = false;
    for (i, c) in src.char_indices() {
        if in_comment {
            in_comment = c != '\n';
        } else if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' || c == '\n' {
                in_string = false;
            }
        } else {
            match c {
                '#' => in_comment = true,
                '"' => in_string = true,
                '(' | '[' | '{' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(Diagnostic::error(
                            codes::TOO_LARGE,
                            format!("brackets are nested more than {MAX_NESTING} levels deep"),
                            i..i + 1,
                            "this bracket is too deep",
                        ));
                    }
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    Ok(())
}

fn span(p: &Pair<Rule>) -> Span {
    p.as_span().start()..p.as_span().end()
}

fn ident(p: Pair<Rule>) -> Ident {
    Ident {
        span: span(&p),
        name: p.as_str().to_string(),
    }
}

fn model_block(p: Pair<Rule>) -> ModelBlock {
    let whole = span(&p);
    let mut inner = p.into_inner();
    let keyword = inner.next().map(|k| span(&k)).unwrap_or(whole.clone());
    let name = inner.next().map(ident).unwrap_or(Ident {
        name: String::new(),
        span: whole.clone(),
    });
    let stmts = inner
        .filter_map(|s| match s.as_rule() {
            Rule::input_stmt => Some(input_stmt(s)),
            Rule::layer_stmt => Some(layer_stmt(s)),
            _ => None,
        })
        .collect();
    ModelBlock {
        keyword,
        name,
        stmts,
        span: whole,
    }
}

fn input_stmt(p: Pair<Rule>) -> Stmt {
    let whole = span(&p);
    let mut name = None;
    let mut shape = None;
    for q in p.into_inner() {
        match q.as_rule() {
            Rule::ident => name = Some(ident(q)),
            Rule::kw_input | Rule::colon => {}
            _ => shape = Some(value(q)),
        }
    }
    Stmt::Input {
        name: name.unwrap_or(Ident {
            name: String::new(),
            span: whole.clone(),
        }),
        shape: shape.unwrap_or(Value {
            kind: ValueKind::List(vec![]),
            span: whole.clone(),
        }),
        span: whole,
    }
}

fn layer_stmt(p: Pair<Rule>) -> Stmt {
    let whole = span(&p);
    let mut name = None;
    let mut call_node = None;
    let mut input: Option<Ident> = None;
    let mut input_end = None;
    for q in p.into_inner() {
        match q.as_rule() {
            Rule::layer_name => name = q.into_inner().next().map(ident),
            Rule::call => call_node = Some(call(q)),
            Rule::layer_input => {
                // The statement ends at this `)`.
                input_end = Some(span(&q).end);
                input = q
                    .into_inner()
                    .find(|x| x.as_rule() == Rule::ident)
                    .map(ident);
            }
            _ => {}
        }
    }
    let call = call_node.unwrap_or(Call {
        name: Ident {
            name: String::new(),
            span: whole.clone(),
        },
        args: None,
        span: whole.clone(),
    });
    let end = input_end.unwrap_or(call.span.end);
    Stmt::Layer {
        name,
        span: whole.start..end,
        call,
        input,
    }
}

fn train_block(p: Pair<Rule>) -> TrainBlock {
    let whole = span(&p);
    let mut keyword = whole.clone();
    let mut settings = vec![];
    for q in p.into_inner() {
        match q.as_rule() {
            Rule::kw_train => keyword = span(&q),
            Rule::setting => {
                let sp = span(&q);
                let mut inner = q.into_inner();
                let key = inner.next().map(ident);
                let val = inner.find(|x| x.as_rule() != Rule::assign).map(value);
                if let (Some(key), Some(value)) = (key, val) {
                    settings.push(Setting {
                        span: sp.start..value.span.end,
                        key,
                        value,
                    });
                }
            }
            _ => {}
        }
    }
    TrainBlock {
        keyword,
        settings,
        span: whole,
    }
}

fn call(p: Pair<Rule>) -> Call {
    let whole = span(&p);
    let mut inner = p.into_inner();
    let name = inner.next().map(ident).unwrap_or(Ident {
        name: String::new(),
        span: whole.clone(),
    });
    let args = inner.next().map(|a| {
        let sp = span(&a);
        let items = a
            .into_inner()
            .filter(|x| x.as_rule() == Rule::arg)
            .filter_map(arg)
            .collect();
        Args { items, span: sp }
    });
    // pest's span of an argument-less call includes the whitespace after it.
    let end = args.as_ref().map(|a| a.span.end).unwrap_or(name.span.end);
    Call {
        span: whole.start..end,
        name,
        args,
    }
}

fn arg(p: Pair<Rule>) -> Option<Arg> {
    let sp = span(&p);
    let q = p.into_inner().next()?;
    if q.as_rule() == Rule::kwarg {
        let mut inner = q.into_inner();
        let key = inner.next().map(ident)?;
        let val = inner.find(|x| x.as_rule() != Rule::assign).map(value)?;
        Some(Arg {
            span: sp.start..val.span.end,
            key: Some(key),
            value: val,
        })
    } else {
        let val = value(q);
        Some(Arg {
            span: sp.start..val.span.end,
            key: None,
            value: val,
        })
    }
}

fn value(p: Pair<Rule>) -> Value {
    let sp = span(&p);
    let kind = match p.as_rule() {
        Rule::number => ValueKind::Number(p.as_str().to_string()),
        Rule::boolean => ValueKind::Bool(p.as_str() == "true"),
        Rule::string => ValueKind::Str(unescape(
            p.into_inner().next().map(|s| s.as_str()).unwrap_or(""),
        )),
        Rule::list => ValueKind::List(
            p.into_inner()
                .filter(|x| !matches!(x.as_rule(), Rule::lbrack | Rule::rbrack | Rule::comma))
                .map(value)
                .collect(),
        ),
        _ => {
            let c = call(p);
            return Value {
                span: c.span.clone(),
                kind: ValueKind::Call(c),
            };
        }
    };
    Value { kind, span: sp }
}

/// The grammar admits only `\"` and `\\` escapes.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// How a grammar rule is named in "expected ..." messages.
fn rule_words(r: Rule) -> &'static str {
    match r {
        Rule::lbrace => "`{`",
        Rule::rbrace => "`}`",
        Rule::lparen => "`(`",
        Rule::rparen => "`)`",
        Rule::lbrack => "`[`",
        Rule::rbrack => "`]`",
        Rule::comma => "`,`",
        Rule::colon => "`:`",
        Rule::assign => "`=`",
        Rule::kw_model | Rule::model_block => "`model`",
        Rule::kw_train | Rule::train_block => "`train`",
        Rule::kw_input | Rule::input_stmt => "`input`",
        Rule::ident
        | Rule::layer_stmt
        | Rule::layer_name
        | Rule::layer_input
        | Rule::call
        | Rule::setting => "a name",
        Rule::number => "a number",
        Rule::string | Rule::string_inner => "a string",
        Rule::boolean => "`true` or `false`",
        Rule::list => "a list",
        Rule::value | Rule::arg | Rule::kwarg => "a value",
        Rule::EOI => "end of file",
        _ => "something else",
    }
}

/// The words the grammar reserves (`keyword` in nn.pest).
const KEYWORDS: [&str; 5] = ["model", "input", "train", "true", "false"];

/// Closing tokens are reported at the end of the previous token, where they are missing.
fn is_closer(r: Rule) -> bool {
    matches!(r, Rule::rparen | Rule::rbrack | Rule::rbrace | Rule::comma)
}

fn syntax_error(src: &str, e: &pest::error::Error<Rule>) -> Diagnostic {
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let (mut expected, closer) = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut words: Vec<&str> = vec![];
            for r in positives {
                let w = rule_words(*r);
                if !words.contains(&w) {
                    words.push(w);
                }
            }
            (words, positives.iter().any(|r| is_closer(*r)))
        }
        ErrorVariant::CustomError { .. } => (vec![], false),
    };
    // A value-start rule list is long and the same everywhere: say "a value".
    if expected.contains(&"a number") && expected.contains(&"a string") {
        expected.retain(|w| {
            !matches!(
                *w,
                "a number" | "a string" | "a list" | "`true` or `false`" | "a name" | "`[`"
            )
        });
        expected.insert(0, "a value");
    }
    // A name is a value: `dropout(.5)` may also be read as `dropout` then `(INPUT)`.
    if expected.contains(&"a value") {
        expected.retain(|w| *w != "a name");
    }
    let found = describe_token(src, pos);
    let message = if expected.is_empty() {
        format!("unexpected {found}")
    } else {
        format!("expected {}, found {found}", join_or(&expected))
    };
    let prev_end = src[..pos].trim_end().len();
    let gap_has_newline = src[prev_end..pos].contains('\n') || pos >= src.len();
    let (sp, label) = if closer && gap_has_newline && prev_end > 0 {
        (
            prev_end..prev_end,
            format!("expected {} after this", join_or(&expected)),
        )
    } else {
        let len = token_len(src, pos);
        (pos..pos + len, format!("found {found} here"))
    };
    let rest = &src[pos..];
    let word = &rest[..token_len(src, pos)];
    let line_rest = rest.lines().next().unwrap_or("");
    // Mistakes with a message of their own, most of them Python or Keras habits.
    if rest.starts_with('"') && !line_rest[1..].contains('"') {
        return Diagnostic::error(
            codes::SYNTAX,
            "this string is never closed",
            pos..pos + 1,
            "the string starts here",
        )
        .with_help("end it with `\"` on the same line");
    }
    if KEYWORDS.contains(&word) && rest[word.len()..].trim_start().starts_with('=') {
        return Diagnostic::error(
            codes::SYNTAX,
            format!("`{word}` is a keyword, so it cannot be a name"),
            pos..pos + word.len(),
            "a keyword",
        )
        .with_help(format!(
            "choose another name, e.g. `{word}_layer`; the keywords are {}",
            KEYWORDS
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if rest
        .chars()
        .next()
        .is_some_and(|c| !c.is_ascii() && c.is_alphabetic())
    {
        return Diagnostic::error(
            codes::SYNTAX,
            format!("{found} is not an ASCII letter: names are ASCII"),
            sp,
            "not ASCII",
        )
        .with_help(
            "names use the letters a-z and A-Z, digits and `_` (text in strings may be any UTF-8)",
        );
    }
    let mut d = Diagnostic::error(codes::SYNTAX, message, sp, label);
    let wants_value = expected.contains(&"a value");
    if rest.starts_with('\'') {
        d.help = Some(
            "strings use double quotes (`\"data.csv\"`); names such as `relu` need no quotes"
                .into(),
        );
    } else if rest.starts_with("//") {
        d.help = Some("comments start with `#`".into());
    } else if rest.starts_with('(') && wants_value {
        d.help = Some("lists use square brackets: `[3, 3]`, not a tuple `(3, 3)`".into());
    } else if rest.starts_with('.') {
        d.help = Some("write a leading zero: `0.5`, not `.5`".into());
    } else if src[pos..].starts_with('"')
        && src[pos..].lines().next().is_some_and(|l| l.contains('\\'))
    {
        d.help = Some("strings allow only the escapes `\\\"` and `\\\\`".into());
    } else if src[pos..].starts_with(';') {
        d.help = Some("statements are separated by newlines; remove the `;`".into());
    }
    d
}

fn token_len(src: &str, pos: usize) -> usize {
    let rest = &src[pos..];
    let word: usize = rest
        .char_indices()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
        .map(|(_, c)| c.len_utf8())
        .sum();
    if word > 0 {
        word
    } else {
        rest.chars().next().map(char::len_utf8).unwrap_or(0)
    }
}

fn describe_token(src: &str, pos: usize) -> String {
    let len = token_len(src, pos);
    match &src[pos..pos + len] {
        "" => "end of file".to_string(),
        "\n" | "\r" => "end of line".to_string(),
        t => {
            let shown: String = t.chars().take(30).collect();
            format!("`{shown}`")
        }
    }
}

fn join_or(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_layer_args(src: &str) -> Vec<Arg> {
        let f = parse(src).unwrap();
        let Item::Model(m) = &f.items[0] else {
            panic!("no model")
        };
        let Stmt::Layer { call, .. } = &m.stmts[1] else {
            panic!("no layer")
        };
        call.args.clone().unwrap().items
    }

    #[test]
    fn spans_are_bytes_after_multibyte_comment() {
        let src = "# résumé ✓\nmodel m { input x: [3]\n dense(5) }";
        let f = parse(src).unwrap();
        let Item::Model(m) = &f.items[0] else {
            panic!()
        };
        let Stmt::Layer { call, .. } = &m.stmts[1] else {
            panic!()
        };
        assert_eq!(&src[call.span.clone()], "dense(5)");
    }

    #[test]
    fn numbers_strings_and_keywords() {
        let args = first_layer_args(
            "model m { input x: [1]\n f(1e-3, -2, \"a\\\"b\", true, [1, 2,], k = relu) }",
        );
        let kinds: Vec<_> = args.iter().map(|a| a.value.kind.clone()).collect();
        assert_eq!(kinds[0], ValueKind::Number("1e-3".into()));
        assert_eq!(kinds[1], ValueKind::Number("-2".into()));
        assert_eq!(kinds[2], ValueKind::Str("a\"b".into()));
        assert_eq!(kinds[3], ValueKind::Bool(true));
        assert!(matches!(&kinds[4], ValueKind::List(v) if v.len() == 2));
        assert_eq!(args[5].key.as_ref().unwrap().name, "k");
    }

    #[test]
    fn leading_dot_is_a_syntax_error_with_help() {
        let d = parse("model m { input x: [1]\n dropout(.5) }").unwrap_err();
        assert_eq!(d.code, codes::SYNTAX);
        assert!(d.help.unwrap().contains("0.5"));
    }

    #[test]
    fn missing_paren_points_at_line_end() {
        let src = "model m { input x: [1]\n dense(5, activation = relu\n}";
        let d = parse(src).unwrap_err();
        assert_eq!(d.span.start, src.find("relu").unwrap() + 4);
        assert!(d.message.contains("`)`"), "{}", d.message);
    }

    #[test]
    fn call_spans_exclude_trailing_space() {
        let src = "model m { input x: [1]\n flatten   # c\n relu\n}";
        let f = parse(src).unwrap();
        let Item::Model(m) = &f.items[0] else {
            panic!()
        };
        let Stmt::Layer { span, .. } = &m.stmts[1] else {
            panic!()
        };
        assert_eq!(&src[span.clone()], "flatten");
    }

    #[test]
    fn keyword_boundary() {
        // `inputs` is a name, not the keyword `input` followed by `s`.
        let f = parse("model m { input x: [1]\n inputs }").unwrap();
        let Item::Model(m) = &f.items[0] else {
            panic!()
        };
        assert_eq!(m.stmts.len(), 2);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let src = format!(
            "model m {{ input x: {}1{} }}",
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(parse(&src).unwrap_err().code, codes::TOO_LARGE);
    }
}
