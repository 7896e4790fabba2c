//! `nnc fmt`: on every `.nn` file of the repository that parses, and on generated
//! files, formatting is idempotent, keeps every comment in order, and never changes
//! what the file means: the checked model, the summary and every diagnostic (but
//! their positions) are those of the input. The command itself: `--check`, in-place
//! rewriting, standard input, files that do not parse.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nnc::syntax::fmt::format;
use nnc::syntax::lex::{lex, TokenKind};
use nnc::{check_source, CheckOptions};
use proptest::prelude::*;

/// Every `.nn` file the repository ships, and the checker's fuzzing corpus.
fn corpus() -> Vec<PathBuf> {
    let mut files = vec![];
    for dir in [
        "examples",
        "tests/golden",
        "tests/broken_inputs/nn",
        "tests/fuzz_corpus/check_source",
    ] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let is_nn = path.extension().is_some_and(|e| e == "nn") || dir.contains("fuzz");
            if is_nn && path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn comments(src: &str) -> Vec<&str> {
    lex(src)
        .into_iter()
        .filter(|t| t.kind == TokenKind::Comment)
        .map(|t| &src[t.span])
        .collect()
}

/// What `nnc check` makes of a file, positions left out.
fn meaning(src: &str, base: &Path) -> String {
    let o = check_source("f.nn", src.as_bytes(), base, &CheckOptions::default());
    let diagnostics: Vec<String> = o
        .diagnostics
        .iter()
        .map(|d| {
            let labels: Vec<&str> = d.labels.iter().map(|l| l.message.as_str()).collect();
            format!(
                "{:?} {} {} [{}] {labels:?} {:?}",
                d.severity, d.code, d.message, d.label, d.help
            )
        })
        .collect();
    let model = o.model.map(|mut m| {
        for l in &mut m.layers {
            l.span = 0..0;
        }
        if let Some(t) = &mut m.train {
            t.spans = Default::default();
        }
        m
    });
    let summary = o.summary.as_ref().map(nnc::sema::summary::render_text);
    format!("{diagnostics:#?}\n{model:#?}\n{summary:#?}")
}

/// The properties, for one source that parses; `Err` says which one failed.
fn check_properties(src: &str, base: &Path) -> Result<(), String> {
    let once = format(src).map_err(|d| d.message)?;
    let twice = format(&once).map_err(|d| format!("the output does not parse: {}", d.message))?;
    if twice != once {
        return Err(format!("not idempotent:\n{once}\n---\n{twice}"));
    }
    if comments(&once) != comments(src) {
        return Err(format!("comments changed:\n{once}"));
    }
    let (before, after) = (meaning(src, base), meaning(&once, base));
    if before != after {
        return Err(format!(
            "meaning changed:\n{before}\n---\n{after}\n---\n{once}"
        ));
    }
    Ok(())
}

#[test]
fn corpus_files_keep_their_meaning() {
    let mut parsed = 0;
    for path in corpus() {
        let bytes = std::fs::read(&path).unwrap();
        let Ok(src) = std::str::from_utf8(&bytes) else {
            continue;
        };
        if nnc::syntax::parse(src).is_err() {
            continue;
        }
        parsed += 1;
        let base = path.parent().unwrap();
        if let Err(e) = check_properties(src, base) {
            panic!("{}: {e}", path.display());
        }
    }
    // The examples and most golden files parse.
    assert!(parsed >= 60, "only {parsed} corpus files parse");
}

/// Golden cases whose layout is what they test: a model on one long line, and CRLF
/// line endings after a byte-order mark.
const LAYOUT_CASES: &[&str] = &["long_line.nn", "valid_crlf_bom.nn"];

#[test]
fn examples_and_golden_files_are_formatted() {
    for path in corpus() {
        let dir = path.parent().unwrap();
        let layout_case = LAYOUT_CASES.iter().any(|c| path.ends_with(c));
        if !(dir.ends_with("examples") || dir.ends_with("golden")) || layout_case {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap_or_default();
        if let Ok(formatted) = format(&src) {
            assert_eq!(
                formatted,
                src,
                "{} is not formatted: run `nnc fmt {}`",
                path.display(),
                path.display()
            );
        }
    }
}

const NAMES: &[&str] = &[
    "dense",
    "conv2d",
    "maxpool2d",
    "flatten",
    "dropout",
    "relu",
    "softmax",
    "batchnorm",
    "reshape",
    "activation",
    "units",
    "kernel_size",
    "padding",
    "h",
    "out",
    "adam",
    "csv",
    "mnist",
    "split",
    "learning_rate",
    "accuracy",
    "target",
    "features",
    "x",
];
const SETTINGS: &[&str] = &[
    "data",
    "test",
    "loss",
    "optimizer",
    "metrics",
    "epochs",
    "batch_size",
    "seed",
    "shuffle",
];

fn name() -> impl Strategy<Value = String> {
    proptest::sample::select(NAMES).prop_map(str::to_string)
}

/// A value's tokens: literals, lists and calls, nested a few levels.
fn value() -> impl Strategy<Value = Vec<String>> {
    let leaf = prop_oneof![
        proptest::sample::select(vec!["3", "128", "0.5", "1e-3", "-2", "true", "false"])
            .prop_map(|t| vec![t.to_string()]),
        proptest::sample::select(vec!["\"data/x.csv\"", "\"same\"", "\"a\\\"b # c\""])
            .prop_map(|t| vec![t.to_string()]),
        name().prop_map(|n| vec![n]),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let items = proptest::collection::vec((proptest::option::of(name()), inner.clone()), 0..6);
        prop_oneof![
            (proptest::collection::vec(inner, 0..8), any::<bool>())
                .prop_map(|(items, trailing)| bracketed("[", items, "]", trailing)),
            (name(), items, any::<bool>()).prop_map(|(callee, args, trailing)| {
                let args = args
                    .into_iter()
                    .map(|(key, mut v)| match key {
                        Some(k) => {
                            v.splice(0..0, [k, "=".to_string()]);
                            v
                        }
                        None => v,
                    })
                    .collect();
                let mut out = vec![callee];
                out.extend(bracketed("(", args, ")", trailing));
                out
            }),
        ]
    })
}

fn bracketed(open: &str, items: Vec<Vec<String>>, close: &str, trailing: bool) -> Vec<String> {
    let mut out = vec![open.to_string()];
    let n = items.len();
    for (i, item) in items.into_iter().enumerate() {
        out.extend(item);
        if i + 1 < n || trailing {
            out.push(",".into());
        }
    }
    out.push(close.to_string());
    out
}

/// The tokens of a whole file: a model block and a train block.
fn file_tokens() -> impl Strategy<Value = Vec<String>> {
    let layer = (proptest::option::of(name()), value());
    let setting = (proptest::sample::select(SETTINGS), value());
    (
        proptest::collection::vec(layer, 0..6),
        proptest::collection::vec(setting, 0..6),
        proptest::collection::vec(1u32..100, 1..4),
    )
        .prop_map(|(layers, settings, dims)| {
            let dims: Vec<Vec<String>> = dims.iter().map(|d| vec![d.to_string()]).collect();
            let mut t: Vec<String> = ["model", "m", "{", "input", "x", ":"]
                .map(String::from)
                .to_vec();
            t.extend(bracketed("[", dims, "]", false));
            for (name, v) in layers {
                if let Some(n) = name {
                    t.extend([n, "=".to_string()]);
                }
                t.extend(v);
            }
            t.extend(["}", "train", "{"].map(String::from));
            for (key, v) in settings {
                t.extend([key.to_string(), "=".to_string()]);
                t.extend(v);
            }
            t.push("}".into());
            t
        })
}

const SEPARATORS: &[&str] = &[
    "",
    " ",
    "\n",
    "\n\n\n",
    "   # note\n",
    "\n# own line\n",
    "\t",
    "\r\n",
    " #\n\n",
];

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn generated_files_keep_their_meaning(
        tokens in file_tokens(),
        seps in proptest::collection::vec(proptest::sample::select(SEPARATORS), 400),
    ) {
        let mut src = String::new();
        for (i, t) in tokens.iter().enumerate() {
            let sep = seps[i % seps.len()];
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || "_\"-.".contains(c));
            let glued = word(src.chars().last()) && word(t.chars().next());
            src.push_str(if sep.is_empty() && glued { " " } else { sep });
            src.push_str(t);
        }
        prop_assume!(nnc::syntax::parse(&src).is_ok());
        if let Err(e) = check_properties(&src, Path::new("examples")) {
            return Err(TestCaseError::fail(format!("{e}\nsource:\n{src}")));
        }
    }
}

fn nnc(args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const MESSY: &str = "model m{input x:[3]\n  dense(1,activation=sigmoid)}  # out\n";
const TIDY: &str = "model m {\n    input x: [3]\n    dense(1, activation = sigmoid)\n}  # out\n";

#[test]
fn check_prints_a_diff_and_fails_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (messy, tidy) = (dir.path().join("messy.nn"), dir.path().join("tidy.nn"));
    std::fs::write(&messy, MESSY).unwrap();
    std::fs::write(&tidy, TIDY).unwrap();
    let (code, out, _) = nnc(
        &[
            "fmt",
            "--check",
            tidy.to_str().unwrap(),
            messy.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(code, 1);
    assert!(out.contains("+    dense(1, activation = sigmoid)"), "{out}");
    assert!(
        out.contains("-  dense(1,activation=sigmoid)}  # out"),
        "{out}"
    );
    assert!(
        !out.contains("tidy.nn"),
        "a formatted file has no diff: {out}"
    );
    assert_eq!(std::fs::read_to_string(&messy).unwrap(), MESSY);
    let (code, out, _) = nnc(&["fmt", "--check", tidy.to_str().unwrap()], "");
    assert_eq!((code, out.as_str()), (0, ""));
}

#[test]
fn files_are_rewritten_in_place_and_stdin_goes_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let messy = dir.path().join("messy.nn");
    std::fs::write(&messy, MESSY).unwrap();
    let (code, out, err) = nnc(&["fmt", messy.to_str().unwrap()], "");
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    assert_eq!(std::fs::read_to_string(&messy).unwrap(), TIDY);
    // Only the file itself is left in the folder: the temporary file was renamed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    assert_eq!(
        nnc(&["fmt", "-"], MESSY),
        (0, TIDY.to_string(), String::new())
    );
}

#[test]
fn bad_files_are_diagnosed_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.nn");
    std::fs::write(&broken, "model m { dense( }\n").unwrap();
    let (code, _, err) = nnc(&["fmt", broken.to_str().unwrap()], "");
    assert_eq!(code, 1);
    assert!(err.contains("E0001"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&broken).unwrap(),
        "model m { dense( }\n"
    );
    std::fs::write(&broken, b"model \xff").unwrap();
    let (code, _, err) = nnc(&["fmt", broken.to_str().unwrap()], "");
    assert_eq!(code, 1);
    assert!(err.contains("E0002"), "{err}");
    let (code, _, err) = nnc(&["fmt", dir.path().join("nope.nn").to_str().unwrap()], "");
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"), "{err}");
    // A device that never ends is read one byte past the limit, then refused.
    if cfg!(unix) {
        let (code, _, err) = nnc(&["fmt", "/dev/zero"], "");
        assert_eq!(code, 1);
        assert!(err.contains("E0003"), "{err}");
    }
}
