//! Replays every input under tests/fuzz_corpus/TARGET/ (the seed corpus of the fuzz
//! targets and every input that once crashed one) through the same entry point the
//! fuzz target drives (fuzz/src/harness.rs): none may panic, and every seed of
//! `jit_vs_interp` must get some values compared.

use std::path::Path;

#[path = "../fuzz/src/harness.rs"]
mod harness;

fn replay(target: &str, entry: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    for file in files {
        let bytes = std::fs::read(&file).expect("corpus file");
        // Name the input in the failure: the panic itself says only where it happened.
        let ran = std::panic::catch_unwind(|| entry(&bytes));
        assert!(ran.is_ok(), "{} panicked", file.display());
    }
    harness::remove_scratch();
}

#[test]
fn check_source_corpus() {
    replay("check_source", harness::check_source);
}

#[test]
fn csv_corpus() {
    replay("csv", harness::csv);
}

#[test]
fn check_data_corpus() {
    replay("check_data", harness::check_data);
}

#[test]
fn idx_corpus() {
    replay("idx", harness::idx);
}

#[test]
fn safetensors_corpus() {
    replay("safetensors", harness::safetensors);
}

#[test]
fn jit_vs_interp_corpus() {
    replay("jit_vs_interp", |bytes| {
        assert!(harness::jit_vs_interp(bytes) > 0, "no value was compared");
    });
}

/// The `jit_vs_interp` seeds that start with the graph byte stand for graph models:
/// together they use every merge (in both of Keras's spellings) and concatenate on
/// every axis of an image, counted from either end.
#[test]
fn jit_vs_interp_seeds_cover_graph_models() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus/jit_vs_interp");
    let mut models = String::new();
    for entry in std::fs::read_dir(&dir).expect("the corpus") {
        let bytes = std::fs::read(entry.expect("corpus entry").path()).expect("corpus file");
        if bytes.first() == Some(&0xff) {
            models += &harness::jit_vs_interp_model(&bytes);
        }
    }
    let merges = [
        "add",
        "subtract",
        "multiply",
        "average",
        "maximum",
        "minimum",
        "concatenate",
    ];
    let axes = ["1", "2", "3", "-1", "-2", "-3"];
    let wanted = merges
        .iter()
        .map(|m| format!("= {m}("))
        .chain(axes.iter().map(|a| format!("axis = {a})")))
        .chain(["= add([", "(x)", "layer_norm", "conv2d("].map(String::from));
    for needle in wanted {
        assert!(
            models.contains(&needle),
            "no graph seed has `{needle}`:\n{models}"
        );
    }
}
