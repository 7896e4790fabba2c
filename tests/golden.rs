//! Golden files: every `tests/golden/X.nn` is checked in-process through the same
//! library function the `nnc` binary calls, and its stdout, stderr and exit code are
//! compared with `X.stdout`, `X.stderr` and `X.code`. An optional `X.args` holds the
//! whole argument list, with `{file}` standing for the case (default: `check {file}`).
//! `SNAPSHOTS=overwrite cargo test --test golden` re-blesses them.

use std::path::{Path, PathBuf};

use clap::Parser;
use libtest_mimic::{Arguments, Failed, Trial};
use snapbox::{Assert, Data};

const ROOT: &str = "tests/golden";

fn run_case(nn: &Path) -> Result<(), Failed> {
    let args_file = nn.with_extension("args");
    let template = std::fs::read_to_string(&args_file).unwrap_or_else(|_| "check {file}".into());
    // Relative to the package root (cargo's working directory for tests), so that
    // no absolute path reaches the output.
    let file = nn.to_string_lossy().replace('\\', "/");
    let mut argv = vec!["nnc".to_string()];
    argv.extend(
        template
            .split_whitespace()
            .map(|w| w.replace("{file}", &file)),
    );

    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = match nnc::cli::Cli::try_parse_from(&argv) {
        Ok(cli) => nnc::cli::run(
            cli,
            &mut nnc::cli::Io {
                stdout: &mut out,
                stderr: &mut err,
                color: false,
            },
        ),
        Err(e) => {
            err.extend(e.render().to_string().bytes());
            nnc::cli::EXIT_USAGE
        }
    };
    if template.starts_with("run") {
        out = without_timings(&String::from_utf8_lossy(&out)).into_bytes();
    }
    let assert = Assert::new().action_env("SNAPSHOTS");
    let mut failures = vec![];
    for (ext, actual) in [
        ("stdout", out),
        ("stderr", err),
        ("code", format!("{code}\n").into_bytes()),
    ] {
        let actual = String::from_utf8_lossy(&actual).into_owned();
        if actual.contains('\u{1b}') {
            failures.push(format!("{ext} contains colour codes"));
        }
        let expected = Data::read_from(&nn.with_extension(ext), None).raw();
        if let Err(e) = assert.try_eq(Some(&ext), Data::text(actual), expected) {
            failures.push(e.to_string());
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n").into())
    }
}

/// `nnc run`'s output with its times and speeds (which vary from run to run)
/// replaced by `[time]`: `compiled in [time]`, `Epoch 1/2  loss 0.5  [time]`.
fn without_timings(out: &str) -> String {
    out.lines()
        .map(|line| {
            if line.starts_with("compiled in ") {
                "compiled in [time]".to_string()
            } else if line.starts_with("Epoch ") && line.ends_with(" samples/s") {
                // The duration and the speed are the last two fields, two spaces apart.
                let mut fields: Vec<&str> = line.split("  ").collect();
                fields.truncate(fields.len().saturating_sub(2));
                fields.push("[time]");
                fields.join("  ")
            } else {
                line.to_string()
            }
        })
        .map(|line| line + "\n")
        .collect()
}

fn main() {
    let args = Arguments::from_args();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(ROOT)
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    cases.retain(|p| p.extension().is_some_and(|e| e == "nn"));
    cases.sort();
    assert!(
        cases.len() >= 40,
        "expected at least 40 golden cases in {ROOT}, found {}",
        cases.len()
    );
    let trials = cases
        .into_iter()
        .map(|p| {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Trial::test(name, move || run_case(&p))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
