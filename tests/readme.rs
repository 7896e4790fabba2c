//! The README's train -> evaluate -> predict -> export walk-through, run verbatim:
//! every command of its `sh` block with the `nnc` binary, in a scratch folder that
//! sees the repository's `examples`, then the two outputs the README shows.

use std::path::Path;
use std::process::Command;

/// The README's section on using a trained model: its code blocks in order.
fn walkthrough_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let section = readme
        .split("## Train, evaluate, predict, export")
        .nth(1)
        .expect("the README has the walk-through section")
        .split("\n## ")
        .next()
        .unwrap();
    section
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|block| {
            // Drop the language tag line (`sh`) or the empty one after the fence.
            block
                .split_once('\n')
                .map_or("", |(_, body)| body)
                .to_string()
        })
        .collect()
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let blocks = walkthrough_blocks();
    assert!(blocks.len() >= 3, "{blocks:?}");
    let dir = tempfile::tempdir().unwrap();
    let examples = std::fs::canonicalize("examples").unwrap();
    std::os::unix::fs::symlink(&examples, dir.path().join("examples")).unwrap();

    let mut evaluated = String::new();
    let commands: Vec<&str> = blocks[0].lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(commands.len(), 4, "{commands:?}");
    for line in commands {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[0], "nnc", "{line}");
        let out = Command::new(env!("CARGO_BIN_EXE_nnc"))
            .args(&words[1..])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "`{line}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if words[1] == "evaluate" {
            evaluated = String::from_utf8(out.stdout).unwrap();
        }
    }
    assert_eq!(evaluated, blocks[1], "nnc evaluate printed otherwise");
    let predictions = std::fs::read_to_string(dir.path().join("predictions.csv")).unwrap();
    assert!(
        predictions.starts_with(&blocks[2]),
        "predictions.csv starts otherwise:\n{}",
        &predictions[..predictions.len().min(300)]
    );
    assert_eq!(predictions.lines().count(), 151);
    assert!(Path::new(&dir.path().join("iris.onnx")).is_file());
}
