//! `nnc fmt`: the one canonical layout of a `.nn` file.
//!
//! - Blocks are indented by four spaces; one statement per line; `model` and
//!   `train` blocks are separated by one blank line, and inside a block a run of
//!   blank lines becomes one.
//! - One space around `=` and after `,` and `:`; no space inside brackets; no
//!   trailing commas.
//! - The `=` of the `train` settings are aligned within each paragraph (settings
//!   not separated by a blank line).
//! - An argument list or list longer than the line (100 columns) is filled: as many
//!   items per line as fit, continuation lines aligned just after the opening bracket.
//! - Comments stay where they were: a comment that ended a line of code still ends
//!   the line holding the same code (the comments of consecutive lines aligned two
//!   spaces after the longest), and a comment on its own line stays on its own line.
//!
//! The output depends only on the tokens, on where comments are and on where blank
//! lines were, never on the rest of the input's layout, so formatting is idempotent.
//! Only whitespace, trailing commas and line breaks change: tests check that the
//! formatted file parses to the same model.

use super::ast::*;
use super::lex::{self, TokenKind};
use crate::diag::Diagnostic;
use crate::diag::Span;

/// Lines are filled up to this many columns (comments may run past it).
pub const MAX_WIDTH: usize = 100;
const INDENT: usize = 4;

/// Formats a whole file; a file that does not parse is returned as its diagnostic.
#[allow(clippy::result_large_err)] // `Diagnostic` is the parser's error type.
pub fn format(src: &str) -> Result<String, Diagnostic> {
    let file = super::parse(src)?;
    Ok(Printer::new(src).file(&file))
}

struct Comment {
    span: Span,
    /// Nothing but whitespace precedes it on its line.
    own_line: bool,
}

struct Line {
    text: String,
    /// A comment at the end of the line, aligned with its group's.
    comment: Option<String>,
    /// Lines whose end-of-line comments are aligned together; `None` for blank
    /// lines and comment lines.
    group: Option<usize>,
}

/// Where a comment that has a line to itself goes.
#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    /// Between `model` and `train` blocks: column 0.
    Top,
    /// Between the statements of a block: the block's indentation.
    Block,
    /// Inside a statement: the current continuation column.
    Inline,
}

/// Whether a blank line may precede the next statement or comment of a block.
#[derive(Clone, Copy, PartialEq)]
enum Blank {
    /// First thing in a block or file.
    Never,
    /// Where the source had one.
    Keep,
    /// Between top-level blocks.
    Force,
}

/// An item of a bracketed sequence: a call's argument or a list's element.
#[derive(Clone, Copy)]
enum Elem<'a> {
    Arg(&'a Arg),
    Value(&'a Value),
}

impl Elem<'_> {
    fn span(&self) -> Span {
        match self {
            Elem::Arg(a) => a.span.clone(),
            Elem::Value(v) => v.span.clone(),
        }
    }
}

struct Printer<'s> {
    src: &'s str,
    /// Punctuation and comments, in source order.
    tokens: Vec<lex::Token>,
    comments: Vec<Comment>,
    next_comment: usize,
    /// The output so far; the last line is the one being written.
    lines: Vec<Line>,
    /// The column a broken line continues at.
    indent: usize,
    /// A comment ended the current line: the next token starts a new one.
    break_pending: bool,
    /// Where the last printed token or comment ends in the source.
    last_end: usize,
    blank: Blank,
    group: usize,
}

impl<'s> Printer<'s> {
    fn new(src: &'s str) -> Self {
        let tokens = lex::lex(src);
        let comments = tokens
            .iter()
            .filter(|t| t.kind == TokenKind::Comment)
            .map(|t| Comment {
                span: t.span.clone(),
                own_line: lex::starts_line(src, t.span.start),
            })
            .collect();
        Printer {
            src,
            tokens,
            comments,
            next_comment: 0,
            lines: vec![Line {
                text: String::new(),
                comment: None,
                group: Some(0),
            }],
            indent: 0,
            break_pending: false,
            last_end: 0,
            blank: Blank::Never,
            group: 0,
        }
    }

    fn file(mut self, f: &File) -> String {
        for item in &f.items {
            match item {
                Item::Model(m) => self.model(m),
                Item::Train(t) => self.train(t),
            }
            self.blank = Blank::Force;
        }
        // Comments after the last block keep their own spacing.
        if self.blank == Blank::Force {
            self.blank = Blank::Keep;
        }
        self.comments_before(usize::MAX, Ctx::Top);
        self.finish()
    }

    fn model(&mut self, m: &ModelBlock) {
        self.begin_item(m.keyword.start, 0);
        self.token("", m.keyword.clone(), "model");
        self.token(" ", m.name.span.clone(), &m.name.name);
        self.open_block(m.name.span.end);
        for s in &m.stmts {
            match s {
                Stmt::Input { name, shape, span } => {
                    self.begin_item(span.start, INDENT);
                    self.token("", span.start..span.start + "input".len(), "input");
                    self.token(" ", name.span.clone(), &name.name);
                    self.punct("", name.span.end, ":");
                    self.value(" ", shape, 0);
                }
                Stmt::Layer {
                    name,
                    call,
                    input,
                    span,
                } => {
                    self.begin_item(span.start, INDENT);
                    let mut sep = "";
                    if let Some(n) = name {
                        self.token("", n.span.clone(), &n.name);
                        self.punct(" ", n.span.end, "=");
                        sep = " ";
                    }
                    // `(INPUT)` follows the call's `)` with no space, as in Keras.
                    let trail = input.as_ref().map_or(0, |i| i.name.len() + 2);
                    self.call(sep, call, trail);
                    if let Some(i) = input {
                        self.punct("", call.span.end, "(");
                        self.token("", i.span.clone(), &i.name);
                        self.punct("", i.span.end, ")");
                    }
                }
            }
        }
        self.close_block(m.span.end);
    }

    fn train(&mut self, t: &TrainBlock) {
        self.begin_item(t.keyword.start, 0);
        self.token("", t.keyword.clone(), "train");
        self.open_block(t.keyword.end);
        let widths = self.key_widths(&t.settings);
        for (s, width) in t.settings.iter().zip(widths) {
            self.begin_item(s.span.start, INDENT);
            self.token("", s.key.span.clone(), &s.key.name);
            let pad = " ".repeat(width - s.key.name.len() + 1);
            self.punct(&pad, s.key.span.end, "=");
            self.value(" ", &s.value, 0);
        }
        self.close_block(t.span.end);
    }

    /// The width each setting's key is padded to: the longest key of its paragraph.
    fn key_widths(&self, settings: &[Setting]) -> Vec<usize> {
        let mut widths = vec![0; settings.len()];
        let mut start = 0;
        for i in 1..=settings.len() {
            let ends_paragraph = i == settings.len()
                || has_blank_line(self.src, settings[i - 1].span.end, settings[i].span.start);
            if ends_paragraph {
                let paragraph = start..i;
                let width = settings[paragraph.clone()]
                    .iter()
                    .map(|s| s.key.name.len())
                    .max()
                    .unwrap_or(0);
                widths[paragraph].fill(width);
                start = i;
            }
        }
        widths
    }

    /// `{` after `after`, then the block's statements start.
    fn open_block(&mut self, after: usize) {
        self.punct(" ", after, "{");
        self.group += 1;
        self.blank = Blank::Never;
    }

    /// The `}` that ends at `end`, on its own line after the block's last comments.
    fn close_block(&mut self, end: usize) {
        let close = end.saturating_sub(1);
        self.comments_before(close, Ctx::Block);
        self.group += 1;
        self.new_line(0);
        self.token("", close..end, "}");
        self.group += 1;
    }

    /// Starts a statement or block at `start` on a new line at `indent`, after the
    /// comments before it.
    fn begin_item(&mut self, start: usize, indent: usize) {
        let ctx = if indent == 0 { Ctx::Top } else { Ctx::Block };
        self.comments_before(start, ctx);
        self.start_line(start, indent);
        self.indent = indent + INDENT;
    }

    /// A new line for a statement or comment of a block, after a blank line where
    /// one belongs.
    fn start_line(&mut self, start: usize, indent: usize) {
        let blank = match self.blank {
            Blank::Never => false,
            Blank::Keep => has_blank_line(self.src, self.last_end, start),
            Blank::Force => true,
        };
        if blank {
            self.blank_line();
        }
        self.new_line(indent);
        self.blank = Blank::Keep;
    }

    fn value(&mut self, sep: &str, v: &Value, trail: usize) {
        match &v.kind {
            ValueKind::Call(c) => self.call(sep, c, trail),
            ValueKind::List(items) => {
                let elems: Vec<Elem> = items.iter().map(Elem::Value).collect();
                self.seq(sep, &v.span, "[", &elems, "]", trail);
            }
            // Literals keep their text: `1e-3` stays `1e-3`, escapes stay escapes.
            _ => {
                let src = self.src;
                self.token(sep, v.span.clone(), &src[v.span.clone()]);
            }
        }
    }

    fn call(&mut self, sep: &str, c: &Call, trail: usize) {
        self.token(sep, c.name.span.clone(), &c.name.name);
        if let Some(args) = &c.args {
            let elems: Vec<Elem> = args.items.iter().map(Elem::Arg).collect();
            self.seq("", &args.span, "(", &elems, ")", trail);
        }
    }

    fn elem(&mut self, sep: &str, e: Elem, trail: usize) {
        match e {
            Elem::Value(v) => self.value(sep, v, trail),
            Elem::Arg(Arg {
                key: None, value, ..
            }) => self.value(sep, value, trail),
            Elem::Arg(Arg {
                key: Some(key),
                value,
                ..
            }) => {
                self.token(sep, key.span.clone(), &key.name);
                self.punct(" ", key.span.end, "=");
                self.value(" ", value, trail);
            }
        }
    }

    /// A bracketed sequence spanning `span`, filled: items stay on the line while
    /// they fit (`trail` columns must follow the closing bracket), and continue
    /// below the first item.
    fn seq(
        &mut self,
        sep: &str,
        span: &Span,
        open: &str,
        elems: &[Elem],
        close: &str,
        trail: usize,
    ) {
        self.token(sep, span.start..span.start + 1, open);
        let outer = self.indent;
        self.indent = self.col();
        for (i, &e) in elems.iter().enumerate() {
            let last = i + 1 == elems.len();
            // The closing bracket and what follows it, or the comma.
            let after = if last { 1 + trail } else { 1 };
            self.comments_before(e.span().start, Ctx::Inline);
            if i > 0 && !self.break_pending {
                let fits = self
                    .flat(e)
                    .is_some_and(|w| self.col() + 1 + w.chars().count() + after <= MAX_WIDTH);
                if !fits {
                    self.new_line(self.indent);
                }
            }
            self.elem(if i == 0 { "" } else { " " }, e, after);
            if !last {
                self.put(",");
            }
        }
        self.token("", span.end.saturating_sub(1)..span.end, close);
        self.indent = outer;
    }

    /// The item on one line, or `None` when a comment inside it forces a break.
    fn flat(&self, e: Elem) -> Option<String> {
        let span = e.span();
        let has_comment = self.comments[self.next_comment..]
            .iter()
            .take_while(|c| c.span.start < span.end)
            .any(|c| c.span.start >= span.start);
        if has_comment {
            return None;
        }
        let mut out = String::new();
        self.flat_elem(e, &mut out);
        Some(out)
    }

    fn flat_elem(&self, e: Elem, out: &mut String) {
        match e {
            Elem::Arg(a) => {
                if let Some(k) = &a.key {
                    out.push_str(&k.name);
                    out.push_str(" = ");
                }
                self.flat_elem(Elem::Value(&a.value), out);
            }
            Elem::Value(v) => match &v.kind {
                ValueKind::List(items) => {
                    out.push('[');
                    self.flat_items(items.iter().map(Elem::Value), out);
                    out.push(']');
                }
                ValueKind::Call(c) => {
                    out.push_str(&c.name.name);
                    if let Some(args) = &c.args {
                        out.push('(');
                        self.flat_items(args.items.iter().map(Elem::Arg), out);
                        out.push(')');
                    }
                }
                _ => out.push_str(&self.src[v.span.clone()]),
            },
        }
    }

    fn flat_items<'a>(&self, items: impl Iterator<Item = Elem<'a>>, out: &mut String) {
        for (i, e) in items.enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            self.flat_elem(e, out);
        }
    }

    /// The punctuation `text` that first follows `after` in the source.
    fn punct(&mut self, sep: &str, after: usize, text: &str) {
        let at = self
            .tokens
            .iter()
            .skip_while(|t| t.span.start < after)
            .find(|t| t.kind == TokenKind::Punct && &self.src[t.span.clone()] == text)
            .map_or(after, |t| t.span.start);
        self.token(sep, at..at + text.len(), text);
    }

    /// Prints a token found at `span` in the source, after the comments before it;
    /// `sep` separates it from the previous token on the same line.
    fn token(&mut self, sep: &str, span: Span, text: &str) {
        self.comments_before(span.start, Ctx::Inline);
        if !self.break_pending {
            self.put(sep);
        }
        self.put(text);
        self.last_end = self.last_end.max(span.end);
    }

    fn comments_before(&mut self, pos: usize, ctx: Ctx) {
        while let Some(c) = self.comments.get(self.next_comment) {
            if c.span.start >= pos {
                break;
            }
            let (span, own_line) = (c.span.clone(), c.own_line);
            self.next_comment += 1;
            let text = &self.src[span.clone()];
            // A comment after another comment gets a line of its own.
            if own_line || self.break_pending || self.line_is_empty() {
                match ctx {
                    Ctx::Top => self.start_line(span.start, 0),
                    Ctx::Block => self.start_line(span.start, INDENT),
                    Ctx::Inline => self.new_line(self.indent),
                }
                self.group += 1;
                let line = self.current();
                line.text.push_str(text);
                line.group = None;
            } else {
                self.current().comment = Some(text.to_string());
            }
            self.break_pending = true;
            self.last_end = span.end;
        }
    }

    fn current(&mut self) -> &mut Line {
        if self.lines.is_empty() {
            self.push_line();
        }
        let last = self.lines.len() - 1;
        &mut self.lines[last]
    }

    fn push_line(&mut self) {
        self.lines.push(Line {
            text: String::new(),
            comment: None,
            group: Some(self.group),
        });
    }

    fn line_is_empty(&mut self) -> bool {
        let line = self.current();
        line.text.trim().is_empty() && line.comment.is_none()
    }

    fn col(&mut self) -> usize {
        self.current().text.chars().count()
    }

    /// Writes `text`, first starting a new line if a comment ended the current one.
    fn put(&mut self, text: &str) {
        if self.break_pending {
            self.new_line(self.indent);
        }
        let line = self.current();
        if line.text.trim().is_empty() {
            line.text.push_str(text.trim_start());
        } else {
            line.text.push_str(text);
        }
    }

    /// Moves to an empty line indented to `indent` (the current one if it is empty).
    fn new_line(&mut self, indent: usize) {
        if !self.line_is_empty() {
            self.push_line();
        }
        let group = self.group;
        let line = self.current();
        line.text = " ".repeat(indent);
        line.group = Some(group);
        self.break_pending = false;
    }

    /// Ends the current line and leaves one blank line (never two, never first).
    fn blank_line(&mut self) {
        if !self.line_is_empty() {
            self.push_line();
        }
        let n = self.lines.len();
        if n >= 2 && !is_blank(&self.lines[n - 2]) {
            self.current().text.clear();
            self.push_line();
        }
        self.group += 1;
    }

    fn finish(self) -> String {
        let mut comment_col = std::collections::HashMap::new();
        for line in &self.lines {
            if let (Some(g), Some(_)) = (line.group, &line.comment) {
                let width = line.text.trim_end().chars().count() + 2;
                let col = comment_col.entry(g).or_insert(0);
                *col = width.max(*col);
            }
        }
        let mut out = String::new();
        for line in &self.lines {
            let text = line.text.trim_end();
            out.push_str(text);
            if let Some(c) = &line.comment {
                let col = line.group.and_then(|g| comment_col.get(&g)).copied();
                let pad = col.unwrap_or(0).saturating_sub(text.chars().count()).max(2);
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            }
            out.push('\n');
        }
        let kept = out.trim_end().len();
        out.truncate(kept);
        if !out.is_empty() {
            out.push('\n');
        }
        out
    }
}

fn is_blank(line: &Line) -> bool {
    line.text.trim().is_empty() && line.comment.is_none()
}

/// True when a line of only whitespace lies between `from` and `to`.
fn has_blank_line(src: &str, from: usize, to: usize) -> bool {
    let Some(gap) = src.get(from..to) else {
        return false;
    };
    let mut lines = gap.split('\n');
    lines.next();
    let mut inner: Vec<&str> = lines.collect();
    inner.pop();
    inner.iter().any(|l| l.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(src: &str) -> String {
        format(src).unwrap_or_else(|d| panic!("{}: {src}", d.message))
    }

    #[test]
    fn canonical_spacing_and_indentation() {
        let src = "model   m{input x:[3 ,4,]\n  h=dense( 5,activation=relu )\n\n\n\n flatten}\ntrain{loss=mse\nbatch_size  =  8}";
        assert_eq!(
            fmt(src),
            "model m {\n    input x: [3, 4]\n    h = dense(5, activation = relu)\n\n    flatten\n}\n\n\
             train {\n    loss       = mse\n    batch_size = 8\n}\n"
        );
    }

    #[test]
    fn long_argument_lists_fill_and_align_after_the_bracket() {
        let src = "train { data = csv(\"data/breast_cancer.csv\", target = \"benign\", features = [\"mean_radius\", \"mean_texture\", \"mean_perimeter\"], standardize = true)\n}";
        assert_eq!(
            fmt(src),
            "train {\n    data = csv(\"data/breast_cancer.csv\", target = \"benign\",\n               \
             features = [\"mean_radius\", \"mean_texture\", \"mean_perimeter\"], standardize = true)\n}\n"
        );
        let long: Vec<String> = (0..40).map(|i| format!("{}", 1000 + i)).collect();
        let out = fmt(&format!("model m {{ input x: [{}] }}", long.join(",")));
        assert!(out.lines().all(|l| l.len() <= MAX_WIDTH), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].starts_with("    input x: [1000, 1001,"));
        assert!(
            lines[2].starts_with(&format!("{}1", " ".repeat(14))),
            "{out}"
        );
    }

    #[test]
    fn comments_stay_where_they_were() {
        let src = "# head\n\n\nmodel m { # opens\n  input x: [3]   # shape\n  # own line\n  dense(5,   # units\n   activation = relu) # act\n  relu\n  # last\n} # end\n# tail\n";
        assert_eq!(
            fmt(src),
            "# head\n\nmodel m {  # opens\n    input x: [3]  # shape\n    # own line\n    dense(5,                  # units\n          activation = relu)  # act\n    relu\n    # last\n}  # end\n# tail\n"
        );
    }

    #[test]
    fn paragraphs_align_separately() {
        let src = "train {\n loss = mse\n epochs = 2\n\n validation_split = 0.1\n}";
        assert_eq!(
            fmt(src),
            "train {\n    loss   = mse\n    epochs = 2\n\n    validation_split = 0.1\n}\n"
        );
    }

    #[test]
    fn odd_comment_places_are_kept_and_stable() {
        for src in [
            "model m # a\n { input x: [1] }",
            "model m { input x: [1]\n h # b\n = dense # c\n (1 # d\n ,) }",
            "model m { input x: [1]\n dense(\n # e\n 1\n # f\n ) }",
            "train { metrics = [ # g\n accuracy, # h\n ] }",
            "# only a comment",
            "",
        ] {
            let once = fmt(src);
            assert_eq!(fmt(&once), once, "{src:?}");
            let comments = |s: &str| -> Vec<String> {
                lex::lex(s)
                    .iter()
                    .filter(|t| t.kind == TokenKind::Comment)
                    .map(|t| t.text(s).to_string())
                    .collect()
            };
            assert_eq!(comments(&once), comments(src));
        }
    }

    #[test]
    fn syntax_errors_are_returned() {
        assert!(format("model m { dense( }").is_err());
    }
}
