//! The architecture ARCHITECTURE.md describes, checked against the code:
//! - each stage imports only the stages below it
//!   (diag < ops < syntax < sema < ir < codegen < runtime < export < lsp < cli);
//! - no two source files import each other;
//! - every file ARCHITECTURE.md names exists.
//!
//! Imports are read from the text (`crate::`, `super::` and `self::` paths outside
//! `#[cfg(test)]` modules): crude, but enough to catch a new upward import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const STAGES: &[&str] = &[
    "diag", "ops", "syntax", "sema", "ir", "codegen", "runtime", "export", "lsp", "cli",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file: `src/ir/graph.rs` -> `["ir", "graph"]`,
/// `src/ir/mod.rs` -> `["ir"]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root().join("src")).unwrap();
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The source without its `#[cfg(test)]` modules (they may reach anywhere).
fn non_test_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" && lines.peek().is_some_and(|l| l.contains("mod ")) {
            let depth_start = line.len() - line.trim_start().len();
            // Skip to the closing brace at the same indentation.
            for l in lines.by_ref() {
                if l.starts_with(&format!("{}}}", " ".repeat(depth_start))) {
                    break;
                }
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every module path the code names with `crate::`, `super::` or `self::`, resolved
/// to an absolute module path (as far as the path's segments go).
fn imports(module: &[String], is_mod_file: bool, code: &str) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut at = 0;
        while let Some(i) = code[at..].find(start) {
            let begin = at + i;
            at = begin + start.len();
            if begin > 0 && (bytes[begin - 1].is_ascii_alphanumeric() || bytes[begin - 1] == b'_') {
                continue;
            }
            let rest: String = code[begin..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut segments: Vec<&str> = rest.split("::").filter(|s| !s.is_empty()).collect();
            // The directory a file's `super::` starts from.
            let mut base: Vec<String> = if is_mod_file {
                module.to_vec()
            } else {
                module[..module.len().saturating_sub(1)].to_vec()
            };
            let mut path: Vec<String> = match segments.first() {
                Some(&"crate") => vec![],
                Some(&"self") => module.to_vec(),
                _ => {
                    while segments.first() == Some(&"super") {
                        segments.remove(0);
                        if segments.first() == Some(&"super") {
                            base.pop();
                        }
                    }
                    segments.insert(0, "self");
                    base
                }
            };
            path.extend(segments[1..].iter().map(|s| s.to_string()));
            found.insert(path);
        }
    }
    found
}

struct Source {
    file: PathBuf,
    module: Vec<String>,
    imports: BTreeSet<Vec<String>>,
}

fn sources() -> Vec<Source> {
    let mut files = vec![];
    rust_files(&root().join("src"), &mut files);
    files.sort();
    // Files that are `#[cfg(test)] mod NAME;` of their parent are test code.
    let mut test_files = BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.windows(2) {
            let declared = pair[1]
                .trim()
                .strip_prefix("mod ")
                .and_then(|m| m.strip_suffix(';'));
            if let (true, Some(name)) = (pair[0].trim() == "#[cfg(test)]", declared) {
                let dir = if f.ends_with("mod.rs") || f.ends_with("lib.rs") {
                    f.parent().unwrap().to_path_buf()
                } else {
                    f.with_extension("")
                };
                test_files.insert(dir.join(format!("{name}.rs")));
                test_files.insert(dir.join(name).join("mod.rs"));
            }
        }
    }
    files
        .into_iter()
        .filter(|f| !f.ends_with("main.rs") && !f.ends_with("lib.rs") && !test_files.contains(f))
        .map(|file| {
            let module = module_of(&file);
            let is_mod = file.ends_with("mod.rs");
            let text = std::fs::read_to_string(&file).unwrap();
            let imports = imports(&module, is_mod, &non_test_code(&text));
            Source {
                file,
                module,
                imports,
            }
        })
        .collect()
}

fn rank(stage: &str) -> usize {
    STAGES
        .iter()
        .position(|s| *s == stage)
        .unwrap_or_else(|| panic!("`{stage}` is not a stage of ARCHITECTURE.md: add it"))
}

#[test]
fn stages_import_only_the_stages_below() {
    let mut upward = vec![];
    for s in sources() {
        let own = rank(&s.module[0]);
        for import in &s.imports {
            let Some(stage) = import.first() else {
                continue;
            };
            if STAGES.contains(&stage.as_str()) && rank(stage) > own {
                upward.push(format!(
                    "{} imports {}",
                    s.file.display(),
                    import.join("::")
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a stage above:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_two_files_import_each_other() {
    let sources = sources();
    let modules: BTreeMap<Vec<String>, &Source> =
        sources.iter().map(|s| (s.module.clone(), s)).collect();
    // The file an import lands in: its longest prefix that is a file of its own.
    let target = |path: &Vec<String>| -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| modules.contains_key(p))
    };
    let mut pairs = vec![];
    for s in &sources {
        for import in &s.imports {
            let Some(t) = target(import) else { continue };
            if t == s.module {
                continue;
            }
            let back = modules[&t]
                .imports
                .iter()
                .any(|i| target(i).as_ref() == Some(&s.module));
            // A parent module re-exporting its child's items is not a cycle of code.
            let parent_child = t.starts_with(&s.module) || s.module.starts_with(&t);
            if back && !parent_child && s.module < t {
                pairs.push(format!("{} <-> {}", s.module.join("::"), t.join("::")));
            }
        }
    }
    pairs.sort();
    pairs.dedup();
    assert!(
        pairs.is_empty(),
        "files that import each other:\n{}",
        pairs.join("\n")
    );
}

#[test]
fn every_file_architecture_md_names_exists() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut all = vec![];
    for dir in [
        "src", "kernels", "tests", "benches", "fuzz", "grammar", "bench", "docs",
    ] {
        let path = root().join(dir);
        if path.is_dir() {
            let mut stack = vec![path];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p.clone());
                    }
                    all.push(p);
                }
            }
        }
    }
    let mut missing = vec![];
    let mut named = 0;
    for (i, chunk) in text.split('`').enumerate() {
        // Odd chunks are inside backticks.
        let looks_like_file = [".rs", ".pest", ".sh", ".py", ".md"]
            .iter()
            .any(|e| chunk.ends_with(e))
            || (chunk.ends_with('/') && !chunk.contains(' '));
        if i % 2 == 0 || !looks_like_file || chunk.contains(' ') {
            continue;
        }
        named += 1;
        let name = chunk.trim_end_matches('/');
        let exists = if root().join(name).exists() {
            true
        } else if name.contains('/') {
            all.iter().any(|p| p.ends_with(name))
        } else {
            all.iter().any(|p| p.file_name().is_some_and(|f| f == name))
        };
        if !exists {
            missing.push(chunk.to_string());
        }
    }
    assert!(named >= 20, "ARCHITECTURE.md names only {named} files");
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names missing files: {missing:?}"
    );
}
