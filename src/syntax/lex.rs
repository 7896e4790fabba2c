//! A forgiving lexer for the editor features (`nnc fmt`, `nnc lsp`). The parser
//! (pest) drops comments and stops at the first error; these features need the
//! comments, and completion needs the tokens of a half-written line. Any text
//! lexes: a character that starts no token becomes an `Unknown` token.

use crate::diag::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Ident,
    Number,
    /// A string with its quotes; one left open ends at the end of its line.
    Str,
    /// One of `{ } ( ) [ ] , : =`.
    Punct,
    /// `#` to the end of the line, without the line break.
    Comment,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

impl Token {
    pub fn text<'s>(&self, src: &'s str) -> &'s str {
        &src[self.span.clone()]
    }
}

/// Every token of `src`, comments included, whitespace left out.
pub fn lex(src: &str) -> Vec<Token> {
    let bytes = src.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < src.len() {
        let c = bytes[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'#' => {
                i = src[i..].find('\n').map_or(src.len(), |n| i + n);
                TokenKind::Comment
            }
            b'"' => {
                i += 1;
                while i < src.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' && i + 1 < src.len() && bytes[i + 1] != b'\n' {
                        2
                    } else {
                        1
                    };
                }
                if i < src.len() && bytes[i] == b'"' {
                    i += 1;
                }
                TokenKind::Str
            }
            b'{' | b'}' | b'(' | b')' | b'[' | b']' | b',' | b':' | b'=' => {
                i += 1;
                TokenKind::Punct
            }
            b'-' | b'0'..=b'9' if c != b'-' || bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                while i < src.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'.'
                        || (matches!(bytes[i], b'+' | b'-') && matches!(bytes[i - 1], b'e' | b'E')))
                {
                    i += 1;
                }
                TokenKind::Number
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < src.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                TokenKind::Ident
            }
            _ => {
                i += src[i..].chars().next().map_or(1, char::len_utf8);
                TokenKind::Unknown
            }
        };
        let end = if kind == TokenKind::Comment {
            start + src[start..i].trim_end().len()
        } else {
            i
        };
        out.push(Token {
            kind,
            span: start..end,
        });
    }
    out
}

/// True when only whitespace (or a byte-order mark) precedes `offset` on its line.
pub fn starts_line(src: &str, offset: usize) -> bool {
    let line_start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    src[line_start..offset]
        .chars()
        .all(|c| c.is_whitespace() || c == '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(TokenKind, &str)> {
        lex(src).iter().map(|t| (t.kind, t.text(src))).collect()
    }

    #[test]
    fn tokens_of_a_line() {
        use TokenKind::*;
        assert_eq!(
            kinds("x = f(-1e-3, \"a\\\"#b\", k = [2.5]) # c \r\n; é"),
            vec![
                (Ident, "x"),
                (Punct, "="),
                (Ident, "f"),
                (Punct, "("),
                (Number, "-1e-3"),
                (Punct, ","),
                (Str, "\"a\\\"#b\""),
                (Punct, ","),
                (Ident, "k"),
                (Punct, "="),
                (Punct, "["),
                (Number, "2.5"),
                (Punct, "]"),
                (Punct, ")"),
                (Comment, "# c"),
                (Unknown, ";"),
                (Unknown, "é"),
            ]
        );
    }

    #[test]
    fn open_string_ends_at_the_line_end() {
        use TokenKind::*;
        assert_eq!(
            kinds("\"abc\ndef \\"),
            vec![(Str, "\"abc"), (Ident, "def"), (Unknown, "\\")]
        );
    }

    #[test]
    fn comment_position() {
        let src = "\u{FEFF}  # a\nx # b";
        assert!(starts_line(src, src.find("# a").unwrap()));
        assert!(!starts_line(src, src.find("# b").unwrap()));
    }
}
