//! `nnc lsp`: the language server editors start, speaking LSP over stdin and stdout.
//!
//! Synchronous and small: one thread handles one message at a time, and every
//! change re-checks the whole document (a 200-line file takes well under a
//! millisecond), so there is no state to keep but the open documents' text.
//! - diagnostics: `nnc check`'s, with their codes, secondary labels as related
//!   information, and the help appended; plus a warning on each data path that does
//!   not exist (`check` does not read data; `run` would fail);
//! - hover on a layer: its output shape, parameters and multiply-adds;
//! - completion of layer kinds, argument names, activations, initializers, losses,
//!   optimizers, metrics, data sources and settings, from the tokens before the
//!   cursor (the line being typed rarely parses);
//! - go to definition of a layer or input name where it is used;
//! - formatting through `nnc fmt`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types as lsp;
use lsp_types::notification::Notification as _;

use crate::diag::{Diagnostic, Severity};
use crate::sema::{self, names, CheckOptions};
use crate::syntax::ast::{Item, Stmt, ValueKind};
use crate::syntax::lex::{self, Token, TokenKind};

/// Runs the server on stdin and stdout until the client says `exit`. `Ok` after a
/// proper shutdown; the caller must not hold stdout's lock (the server's writer
/// thread takes it).
pub fn serve() -> Result<(), String> {
    let (connection, threads) = Connection::stdio();
    let result = run(&connection);
    drop(connection);
    let joined = threads.join().map_err(|e| e.to_string());
    match result.and_then(|clean| joined.map(|()| clean)) {
        Ok(true) => Ok(()),
        Ok(false) => Err("the client closed the connection without `shutdown`".into()),
        Err(e) => Err(e),
    }
}

/// Serves one connection; true when it ended with `shutdown` then `exit`.
pub fn run(connection: &Connection) -> Result<bool, String> {
    let (id, params) = connection.initialize_start().map_err(|e| e.to_string())?;
    let params: lsp::InitializeParams = serde_json::from_value(params).unwrap_or_default();
    let utf8 = params
        .capabilities
        .general
        .and_then(|g| g.position_encodings)
        .is_some_and(|e| e.contains(&lsp::PositionEncodingKind::UTF8));
    let capabilities = lsp::ServerCapabilities {
        position_encoding: Some(if utf8 {
            lsp::PositionEncodingKind::UTF8
        } else {
            lsp::PositionEncodingKind::UTF16
        }),
        text_document_sync: Some(lsp::TextDocumentSyncCapability::Kind(
            lsp::TextDocumentSyncKind::FULL,
        )),
        hover_provider: Some(lsp::HoverProviderCapability::Simple(true)),
        completion_provider: Some(lsp::CompletionOptions {
            trigger_characters: Some(["(", "[", ",", "=", " "].map(String::from).to_vec()),
            ..Default::default()
        }),
        definition_provider: Some(lsp::OneOf::Left(true)),
        document_formatting_provider: Some(lsp::OneOf::Left(true)),
        ..Default::default()
    };
    let result = serde_json::json!({
        "capabilities": capabilities,
        "serverInfo": { "name": "nnc", "version": env!("CARGO_PKG_VERSION") },
    });
    connection
        .initialize_finish(id, result)
        .map_err(|e| e.to_string())?;

    let mut server = Server {
        docs: HashMap::new(),
        utf8,
    };
    let send = |m: Message| connection.sender.send(m).map_err(|e| e.to_string());
    for message in &connection.receiver {
        match message {
            Message::Request(req) => {
                if connection
                    .handle_shutdown(&req)
                    .map_err(|e| e.to_string())?
                {
                    return Ok(true);
                }
                send(server.request(req).into())?;
            }
            Message::Notification(n) => {
                if let Some(out) = server.notification(n) {
                    send(out.into())?;
                }
            }
            Message::Response(_) => {}
        }
    }
    Ok(false)
}

struct Server {
    docs: HashMap<lsp::Uri, String>,
    /// Positions count bytes (UTF-8) instead of the protocol's default UTF-16 units.
    utf8: bool,
}

impl Server {
    fn notification(&mut self, n: Notification) -> Option<Notification> {
        use lsp::notification::*;
        let uri = match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let p: lsp::DidOpenTextDocumentParams = serde_json::from_value(n.params).ok()?;
                let doc = p.text_document;
                self.docs.insert(doc.uri.clone(), doc.text);
                doc.uri
            }
            DidChangeTextDocument::METHOD => {
                let p: lsp::DidChangeTextDocumentParams = serde_json::from_value(n.params).ok()?;
                // Full synchronization: the last change holds the whole text.
                let text = p.content_changes.into_iter().last()?.text;
                self.docs.insert(p.text_document.uri.clone(), text);
                p.text_document.uri
            }
            DidCloseTextDocument::METHOD => {
                let p: lsp::DidCloseTextDocumentParams = serde_json::from_value(n.params).ok()?;
                self.docs.remove(&p.text_document.uri);
                return Some(publish(p.text_document.uri, vec![]));
            }
            _ => return None,
        };
        let text = self.docs.get(&uri)?;
        Some(publish(uri.clone(), diagnostics(&uri, text, self.utf8)))
    }

    fn request(&mut self, req: Request) -> Response {
        use lsp::request::*;
        let id = req.id.clone();
        let result = match req.method.as_str() {
            HoverRequest::METHOD => self.with_position(req, |text, offset, _| {
                hover(text, offset).map(|value| lsp::Hover {
                    contents: lsp::HoverContents::Markup(lsp::MarkupContent {
                        kind: lsp::MarkupKind::Markdown,
                        value,
                    }),
                    range: None,
                })
            }),
            Completion::METHOD => self.with_position(req, |text, offset, _| {
                Some(lsp::CompletionResponse::Array(completions(text, offset)))
            }),
            GotoDefinition::METHOD => {
                let uri = serde_json::from_value::<lsp::GotoDefinitionParams>(req.params.clone())
                    .ok()
                    .map(|p| p.text_document_position_params.text_document.uri);
                self.with_position(req, |text, offset, index| {
                    let span = definition(text, offset)?;
                    Some(lsp::GotoDefinitionResponse::Scalar(lsp::Location {
                        uri: uri?,
                        range: index.range(&span),
                    }))
                })
            }
            Formatting::METHOD => {
                match serde_json::from_value::<lsp::DocumentFormattingParams>(req.params) {
                    Ok(p) => Ok(self.docs.get(&p.text_document.uri).and_then(|text| {
                        let formatted = crate::syntax::fmt::format(text).ok()?;
                        let index = LineIndex::new(text, self.utf8);
                        Some(vec![lsp::TextEdit {
                            range: index.range(&(0..text.len())),
                            new_text: formatted,
                        }])
                        .filter(|edits| edits[0].new_text != *text)
                    }))
                    .map(|v| serde_json::to_value(v).unwrap_or_default()),
                    Err(e) => Err(e.to_string()),
                }
            }
            _ => {
                return Response::new_err(
                    id,
                    ErrorCode::MethodNotFound as i32,
                    format!("nnc does not handle `{}`", req.method),
                )
            }
        };
        match result {
            Ok(value) => Response::new_ok(id, value),
            Err(message) => Response::new_err(id, ErrorCode::InvalidParams as i32, message),
        }
    }

    /// Answers a request made at a position in an open document with `f`'s result
    /// (`null` when it has none).
    fn with_position<T: serde::Serialize>(
        &self,
        req: Request,
        f: impl FnOnce(&str, usize, &LineIndex) -> Option<T>,
    ) -> Result<serde_json::Value, String> {
        let p: lsp::TextDocumentPositionParams =
            serde_json::from_value(req.params).map_err(|e| e.to_string())?;
        let Some(text) = self.docs.get(&p.text_document.uri) else {
            return Ok(serde_json::Value::Null);
        };
        let index = LineIndex::new(text, self.utf8);
        let offset = index.offset(p.position);
        let answer = f(text, offset, &index);
        Ok(serde_json::to_value(answer).unwrap_or_default())
    }
}

fn publish(uri: lsp::Uri, diagnostics: Vec<lsp::Diagnostic>) -> Notification {
    Notification::new(
        lsp::notification::PublishDiagnostics::METHOD.to_string(),
        lsp::PublishDiagnosticsParams {
            uri,
            diagnostics,
            version: None,
        },
    )
}

/// `nnc check`'s diagnostics of `text`, and the data paths that do not exist.
pub fn diagnostics(uri: &lsp::Uri, text: &str, utf8: bool) -> Vec<lsp::Diagnostic> {
    let path = file_path(uri);
    let base = path
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or(Path::new(""));
    let name = path
        .as_ref()
        .map_or(uri.as_str().to_string(), |p| p.display().to_string());
    let outcome = sema::check_source(&name, text.as_bytes(), base, &CheckOptions::default());
    let mut found = outcome.diagnostics;
    if path.is_some() {
        found.extend(missing_data_files(text, base));
    }
    let index = LineIndex::new(text, utf8);
    found
        .iter()
        .map(|d| lsp::Diagnostic {
            range: index.range(&d.span),
            severity: Some(match d.severity {
                Severity::Error => lsp::DiagnosticSeverity::ERROR,
                Severity::Warning => lsp::DiagnosticSeverity::WARNING,
            }),
            code: (!d.code.is_empty()).then(|| lsp::NumberOrString::String(d.code.to_string())),
            source: Some("nnc".into()),
            message: match &d.help {
                Some(help) => format!("{}\nhelp: {help}", d.message),
                None => d.message.clone(),
            },
            related_information: (!d.labels.is_empty()).then(|| {
                d.labels
                    .iter()
                    .map(|l| lsp::DiagnosticRelatedInformation {
                        location: lsp::Location {
                            uri: uri.clone(),
                            range: index.range(&l.span),
                        },
                        message: l.message.clone(),
                    })
                    .collect()
            }),
            ..Default::default()
        })
        .collect()
}

const MISSING_DATA_HELP: &str =
    "paths are relative to the folder of the .nn file; `nnc run` reads the data";

/// A warning on each path string of a data source that names nothing on disk.
fn missing_data_files(text: &str, base: &Path) -> Vec<Diagnostic> {
    let Ok(file) = crate::syntax::parse(text) else {
        return vec![];
    };
    let mut out = vec![];
    for item in &file.items {
        let Item::Train(t) = item else { continue };
        for setting in &t.settings {
            let ValueKind::Call(call) = &setting.value.kind else {
                continue;
            };
            // The parameters that name files, by position and by keyword.
            let params: &[&str] = match call.name.name.as_str() {
                "csv" => &["path"],
                "idx" => &["images", "labels"],
                "mnist" => &["folder"],
                _ => continue,
            };
            let args = call.args.iter().flat_map(|a| &a.items);
            for (i, arg) in args.enumerate() {
                let param = match &arg.key {
                    Some(k) => params.iter().find(|p| **p == k.name),
                    None => params.get(i),
                };
                let (Some(_), ValueKind::Str(p)) = (param, &arg.value.kind) else {
                    continue;
                };
                let full = base.join(p);
                if !full.exists() {
                    let warning = Diagnostic::warning(
                        "",
                        format!("`{}` does not exist", full.display()),
                        arg.value.span.clone(),
                        "no such file or folder",
                    );
                    out.push(warning.with_help(MISSING_DATA_HELP));
                }
            }
        }
    }
    out
}

/// Markdown describing the layer (or input) whose statement holds `offset`.
pub fn hover(text: &str, offset: usize) -> Option<String> {
    let file = crate::syntax::parse(text).ok()?;
    let block = file.items.iter().find_map(|i| match i {
        Item::Model(m) => Some(m),
        _ => None,
    })?;
    let stmt = block.stmts.iter().find(|s| {
        let span = match s {
            Stmt::Input { span, .. } | Stmt::Layer { span, .. } => span,
        };
        span.start <= offset && offset <= span.end
    })?;
    let checked = sema::check::check_model(block, &mut vec![]);
    match stmt {
        Stmt::Input { name, .. } => {
            let (_, shape, _) = checked.input.as_ref()?;
            Some(format!(
                "**{}** (input)\n\nShape: `{}`",
                name.name,
                keras_shape(shape)
            ))
        }
        Stmt::Layer { span, .. } => {
            let i = checked.layers.iter().position(|l| l.span == *span)?;
            let (input, shape, _) = checked.input.as_ref()?;
            let summary =
                sema::summary::summarize(&checked.name, (input, shape), &checked.layers, None, 32);
            let row = summary.layers.get(i)?;
            let (t, n) = (row.trainable_params as u128, row.params as u128);
            let mut out = format!(
                "**{}** ({})\n\nOutput shape: `{}`  \nParameters: {}",
                row.name,
                row.kind,
                keras_shape(&row.output_shape),
                sema::summary::thousands(n)
            );
            if t != n {
                out += &format!(" ({} trainable)", sema::summary::thousands(t));
            }
            out += &format!(
                "  \nMultiply-adds: {}",
                sema::summary::thousands(row.multiply_adds)
            );
            Some(out)
        }
    }
}

/// `(None, 28, 28, 1)`: the batch dimension first, as Keras prints it.
fn keras_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("(None, {})", dims.join(", "))
}

/// The arguments each call accepts, for completion. `sema` owns what is valid; a
/// test checks that it accepts every name listed here.
pub const SIGNATURES: &[(&str, &[&str])] = &[
    (
        "dense",
        &[
            "units",
            "activation",
            "use_bias",
            "kernel_initializer",
            "bias_initializer",
        ],
    ),
    (
        "conv2d",
        &[
            "filters",
            "kernel_size",
            "strides",
            "padding",
            "activation",
            "use_bias",
            "kernel_initializer",
            "bias_initializer",
        ],
    ),
    (
        "conv1d",
        &[
            "filters",
            "kernel_size",
            "strides",
            "padding",
            "activation",
            "use_bias",
            "kernel_initializer",
            "bias_initializer",
        ],
    ),
    ("maxpool1d", &["pool_size", "strides", "padding"]),
    ("avgpool1d", &["pool_size", "strides", "padding"]),
    (
        "embedding",
        &["input_dim", "output_dim", "embeddings_initializer"],
    ),
    ("layer_norm", &["epsilon", "center", "scale"]),
    ("maxpool2d", &["pool_size", "strides", "padding"]),
    ("avgpool2d", &["pool_size", "strides", "padding"]),
    ("dropout", &["rate"]),
    ("batchnorm", &["momentum", "epsilon"]),
    ("reshape", &["shape"]),
    ("leaky_relu", &["alpha"]),
    ("elu", &["alpha"]),
    ("csv", &["path", "target", "features", "standardize"]),
    ("idx", &["images", "labels"]),
    ("mnist", &["folder", "subset"]),
    ("split", &["fraction"]),
    ("sgd", &["learning_rate", "momentum", "nesterov"]),
    ("adam", &["learning_rate", "beta_1", "beta_2", "epsilon"]),
    (
        "adamw",
        &[
            "learning_rate",
            "beta_1",
            "beta_2",
            "epsilon",
            "weight_decay",
        ],
    ),
    ("rmsprop", &["learning_rate", "rho", "epsilon"]),
];

/// What the cursor is inside of, from the tokens before it.
enum Frame<'s> {
    Model,
    Train,
    /// `(` after a call's name.
    Call(&'s str),
    /// `[` after `key =`.
    List(Option<&'s str>),
    Other,
}

/// The completions at `offset`: names that fit where the cursor is.
pub fn completions(text: &str, offset: usize) -> Vec<lsp::CompletionItem> {
    use lsp::CompletionItemKind as K;
    let offset = offset.min(text.len());
    let tokens: Vec<Token> = lex::lex(text)
        .into_iter()
        .take_while(|t| t.span.start < offset)
        .collect();
    // Nothing inside a comment or a string.
    if let Some(last) = tokens.last() {
        let inside = offset < last.span.end
            || (offset == last.span.end
                && last.kind == TokenKind::Str
                && (last.span.len() < 2 || !last.text(text).ends_with('"')));
        if matches!(last.kind, TokenKind::Comment | TokenKind::Str) && inside {
            return vec![];
        }
        if last.kind == TokenKind::Comment && !text[last.span.end..offset].contains('\n') {
            return vec![];
        }
    }
    // The word being typed is what completion replaces, not context.
    let mut context: Vec<&Token> = tokens
        .iter()
        .filter(|t| t.kind != TokenKind::Comment)
        .collect();
    if context
        .last()
        .is_some_and(|t| t.kind == TokenKind::Ident && t.span.end == offset)
    {
        context.pop();
    }
    let word = |i: usize| context.get(i).map(|t| t.text(text));
    let mut stack: Vec<Frame> = vec![];
    for (i, t) in context.iter().enumerate() {
        match t.text(text) {
            "{" => stack.push(match i.checked_sub(1).and_then(word) {
                Some("train") => Frame::Train,
                _ if i >= 2 && word(i - 2) == Some("model") => Frame::Model,
                _ => Frame::Other,
            }),
            "(" => stack.push(match i.checked_sub(1).and_then(|j| context.get(j)) {
                Some(t) if t.kind == TokenKind::Ident => Frame::Call(t.text(text)),
                _ => Frame::Other,
            }),
            "[" => stack.push(Frame::List(
                (i >= 2 && word(i - 1) == Some("="))
                    .then(|| word(i - 2))
                    .flatten(),
            )),
            "}" | ")" | "]" => {
                stack.pop();
            }
            _ => {}
        }
    }
    let n = context.len();
    let prev = n.checked_sub(1).and_then(word);
    // The key of `key = |`.
    let key = (prev == Some("="))
        .then(|| n.checked_sub(2).and_then(word))
        .flatten();
    let items = |names: &[&str], kind: K, detail: &str| -> Vec<lsp::CompletionItem> {
        names
            .iter()
            .map(|n| lsp::CompletionItem {
                label: n.to_string(),
                kind: Some(kind),
                detail: Some(detail.to_string()),
                ..Default::default()
            })
            .collect()
    };
    let values = |key: &str| -> Vec<lsp::CompletionItem> {
        match key {
            "activation" => items(&names::ACTIVATIONS, K::FUNCTION, "activation"),
            "kernel_initializer" | "bias_initializer" => {
                items(&names::INITIALIZERS, K::FUNCTION, "initializer")
            }
            "padding" => items(&["\"valid\"", "\"same\""], K::VALUE, "padding"),
            "subset" => items(&["\"train\"", "\"test\""], K::VALUE, "MNIST subset"),
            "loss" => items(&names::LOSSES, K::FUNCTION, "loss"),
            "optimizer" => items(names::OPTIMIZERS, K::FUNCTION, "optimizer"),
            "data" => items(names::SOURCES, K::FUNCTION, "data source"),
            "test" => {
                let mut v = items(names::SOURCES, K::FUNCTION, "data source");
                v.extend(items(
                    &["split"],
                    K::FUNCTION,
                    "hold out a fraction of `data`",
                ));
                v
            }
            "validation_data" => items(names::SOURCES, K::FUNCTION, "data source"),
            "mode" => items(names::MODES, K::KEYWORD, "callback mode"),
            "use_bias"
            | "standardize"
            | "nesterov"
            | "shuffle"
            | "restore_best_weights"
            | "save_best_only" => items(&["true", "false"], K::KEYWORD, "boolean"),
            _ => vec![],
        }
    };
    match stack.last() {
        Some(Frame::Model) => match key {
            Some(_) => items(&names::LAYERS, K::CLASS, "layer"),
            None if prev == Some(":") || prev == Some("input") => vec![],
            None => {
                let mut v = items(&names::LAYERS, K::CLASS, "layer");
                v.extend(items(&["input"], K::KEYWORD, "the model's input"));
                v
            }
        },
        Some(Frame::Train) => match key {
            Some(k) => values(k),
            None => items(names::SETTINGS, K::PROPERTY, "train setting"),
        },
        Some(Frame::Call(call)) => match key {
            Some(k) => values(k),
            None if matches!(prev, Some("(" | ",")) => SIGNATURES
                .iter()
                .chain(crate::sema::callbacks::PARAMS)
                .find(|(name, _)| name == call)
                .map(|(name, params)| {
                    params
                        .iter()
                        .map(|p| lsp::CompletionItem {
                            label: p.to_string(),
                            kind: Some(K::FIELD),
                            detail: Some(format!("argument of `{name}`")),
                            insert_text: Some(format!("{p} = ")),
                            ..Default::default()
                        })
                        .collect()
                })
                .unwrap_or_default(),
            None => vec![],
        },
        Some(Frame::List(Some("metrics"))) if matches!(prev, Some("[" | ",")) => {
            items(&names::METRICS, K::FUNCTION, "metric")
        }
        Some(Frame::List(Some("callbacks"))) if matches!(prev, Some("[" | ",")) => {
            items(names::CALLBACKS, K::FUNCTION, "callback")
        }
        _ => vec![],
    }
}

/// Where the layer or input named at `offset` is defined in the model block, when
/// `offset` is on a use of the name (a layer's input, as graphs write them).
pub fn definition(text: &str, offset: usize) -> Option<crate::diag::Span> {
    let tokens: Vec<Token> = lex::lex(text)
        .into_iter()
        .filter(|t| t.kind != TokenKind::Comment)
        .collect();
    let at = tokens.iter().position(|t| {
        t.kind == TokenKind::Ident && t.span.start <= offset && offset <= t.span.end
    })?;
    let word = |i: usize| tokens.get(i).map(|t| t.text(text));
    // Statement-level names of the model block holding `at`: `NAME =` and `input NAME:`.
    let mut defs: Vec<(usize, &str)> = vec![];
    let mut depth = 0usize;
    let mut in_model = false;
    let mut model_of_at = false;
    for (i, t) in tokens.iter().enumerate() {
        match t.text(text) {
            "{" | "(" | "[" => {
                if depth == 0 && i >= 2 && word(i - 2) == Some("model") {
                    in_model = true;
                    defs.clear();
                }
                depth += 1;
            }
            "}" | ")" | "]" => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    if in_model && model_of_at {
                        break;
                    }
                    in_model = false;
                }
            }
            _ if in_model && depth == 1 && t.kind == TokenKind::Ident => {
                let is_def = word(i + 1) == Some("=")
                    || (i >= 1 && word(i - 1) == Some("input") && word(i + 1) == Some(":"));
                if is_def {
                    defs.push((i, t.text(text)));
                }
            }
            _ => {}
        }
        if i == at {
            model_of_at = in_model;
        }
    }
    if !model_of_at {
        return None;
    }
    let name = tokens[at].text(text);
    let (def, _) = defs.iter().find(|(_, n)| *n == name)?;
    (*def != at).then(|| tokens[*def].span.clone())
}

/// The local path of a `file:` URI, percent-decoded.
fn file_path(uri: &lsp::Uri) -> Option<PathBuf> {
    let rest = uri.as_str().strip_prefix("file://")?;
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    let path = String::from_utf8(out).ok()?;
    // `file:///C:/x` is `C:/x` on Windows.
    let path = match path.as_bytes() {
        [b'/', d, b':', ..] if d.is_ascii_alphabetic() => path[1..].to_string(),
        _ => path,
    };
    Some(PathBuf::from(path))
}

/// Byte offsets to protocol positions and back.
struct LineIndex<'s> {
    text: &'s str,
    /// Byte offset of each line's start.
    starts: Vec<usize>,
    utf8: bool,
}

impl<'s> LineIndex<'s> {
    fn new(text: &'s str, utf8: bool) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts, utf8 }
    }

    fn position(&self, offset: usize) -> lsp::Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let before = &self.text[self.starts[line]..offset];
        let character = if self.utf8 {
            before.len()
        } else {
            before.encode_utf16().count()
        };
        lsp::Position::new(line as u32, character as u32)
    }

    fn range(&self, span: &crate::diag::Span) -> lsp::Range {
        lsp::Range::new(self.position(span.start), self.position(span.end))
    }

    fn offset(&self, p: lsp::Position) -> usize {
        let Some(&start) = self.starts.get(p.line as usize) else {
            return self.text.len();
        };
        let end = self
            .starts
            .get(p.line as usize + 1)
            .map_or(self.text.len(), |&e| e - 1);
        let mut units = 0;
        for (i, c) in self.text[start..end].char_indices() {
            if units >= p.character as usize {
                return start + i;
            }
            units += if self.utf8 {
                c.len_utf8()
            } else {
                c.len_utf16()
            };
        }
        end
    }
}
