//! `nnc run --checkpoint` and `--resume`: a run of N epochs and a run of K epochs
//! resumed to N end with the same bits (weights, logs, saved best weights), with
//! dropout, Adam, a learning-rate schedule or reduce_lr_on_plateau, validation and
//! early stopping active, also across a Ctrl-C; and a
//! checkpoint that does not belong to the run is a clear error.

mod common;

use std::path::{Path, PathBuf};

use common::nnc;

/// Iris with everything that carries state from epoch to epoch: dropout masks and
/// Adam's moments (functions of the step), shuffling (of the epoch), the validation
/// split, and callbacks that remember the best epoch and its weights.
fn source(data: &Path, epochs: usize, callbacks: &str) -> String {
    scheduled(data, epochs, "0.01", callbacks)
}

/// `source` with `rate` as Adam's learning rate (a number or a schedule).
fn scheduled(data: &Path, epochs: usize, rate: &str, callbacks: &str) -> String {
    format!(
        r#"model iris {{
    input x: [4]
    dense(16, activation = relu)
    dropout(0.3)
    dense(3, activation = softmax)
}}

train {{
    data             = csv("{}", target = "species", standardize = true)
    test             = split(0.2)
    validation_split = 0.2
    loss             = sparse_categorical_crossentropy
    optimizer        = adam(learning_rate = {rate})
    metrics          = [accuracy]
    epochs           = {epochs}
    batch_size       = 16
    seed             = 3
    callbacks        = [{callbacks}]
}}
"#,
        data.display()
    )
}

fn iris() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/iris.csv")
}

const CALLBACKS: &str = r#"early_stopping(patience = 4, restore_best_weights = true),
                        csv_logger("log.csv"),
                        model_checkpoint("best.safetensors", save_best_only = true)"#;

/// Runs `args` with the model file `dir/model.nn` (written first); returns stdout.
/// Arguments that start with `@` are file names in `dir`.
fn run_in(dir: &Path, text: &str, args: &[&str]) -> String {
    let nn = dir.join("model.nn");
    std::fs::write(&nn, text).unwrap();
    let args: Vec<String> = args
        .iter()
        .map(|a| match a.strip_prefix('@') {
            Some(name) => dir.join(name).display().to_string(),
            None => a.to_string(),
        })
        .collect();
    let mut argv = vec!["run", nn.to_str().unwrap(), "--json", "--threads", "1"];
    argv.extend(args.iter().map(String::as_str));
    let out = nnc(&argv);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    out.stdout
}

/// The `epoch` and `callback` events, without their timings, with the folder
/// `dir` (where the files they name are) written `DIR`.
fn events(stdout: &str, dir: &Path) -> Vec<serde_json::Value> {
    stdout
        .replace(&dir.display().to_string(), "DIR")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "epoch" || e["event"] == "callback")
        .map(|mut e| {
            if let Some(o) = e.as_object_mut() {
                o.remove("seconds");
                o.remove("samples_per_second");
            }
            e
        })
        .collect()
}

fn bytes(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn resumed_runs_end_with_the_same_bits() {
    // A learning-rate schedule (a function of the step count).
    let rate = "exponential_decay(0.02, decay_steps = 30, decay_rate = 0.8)";
    resumes_exactly(
        &scheduled(&iris(), 100, rate, CALLBACKS),
        &["w.safetensors", "log.csv", "best.safetensors"],
    );
}

#[test]
fn a_rate_lowered_by_reduce_lr_on_plateau_resumes() {
    let callbacks = "reduce_lr_on_plateau(factor = 0.5, patience = 1, cooldown = 1), \
                     early_stopping(patience = 6, restore_best_weights = true), \
                     csv_logger(\"log.csv\")";
    let text = source(&iris(), 100, callbacks);
    let events = resumes_exactly(&text, &["w.safetensors", "log.csv"]);
    let lowered = events
        .iter()
        .filter(|e| e["callback"] == "reduce_lr_on_plateau")
        .count();
    assert!(lowered >= 2, "the rate was lowered {lowered} times");
}

/// Runs `text` whole, then stopped after 5 epochs and resumed, then stopped after
/// the epoch early stopping stops at and resumed: the epochs, the callbacks' acts
/// and the files `compared` must be the same.
/// Returns the whole run's events.
fn resumes_exactly(text: &str, compared: &[&str]) -> Vec<serde_json::Value> {
    let whole = tempfile::tempdir().unwrap();
    let full = run_in(whole.path(), text, &["--save", "@w.safetensors"]);
    let full_events = events(&full, whole.path());
    let stopped = full_events
        .iter()
        .find(|e| e["callback"] == "early_stopping")
        .expect("early stopping acts in this run")["epoch"]
        .as_u64()
        .unwrap() as usize;
    assert!(stopped > 8, "stopped after {stopped} epochs");

    // Stopped after K epochs (K before the stop, and K the stopping epoch itself).
    for k in [5, stopped] {
        let parts = tempfile::tempdir().unwrap();
        let epochs = k.to_string();
        let first = run_in(
            parts.path(),
            text,
            &["--epochs", &epochs, "--checkpoint", "@ck"],
        );
        let second = run_in(
            parts.path(),
            text,
            &["--resume", "@ck", "--save", "@w.safetensors"],
        );
        assert!(second.contains(r#""event":"resumed""#), "{second}");
        // The first part's epochs, then the second's, are the whole run's; so are
        // the callbacks' acts after epoch K.
        let (first, second) = (events(&first, parts.path()), events(&second, parts.path()));
        let epochs = |events: &[serde_json::Value]| -> Vec<serde_json::Value> {
            events
                .iter()
                .filter(|e| e["event"] == "epoch")
                .cloned()
                .collect()
        };
        let acts_after = |events: &[serde_json::Value]| -> Vec<serde_json::Value> {
            events
                .iter()
                .filter(|e| e["event"] == "callback" && e["epoch"].as_u64() > Some(k as u64))
                .cloned()
                .collect()
        };
        let mut joined = epochs(&first);
        joined.extend(epochs(&second));
        assert_eq!(joined, epochs(&full_events), "resumed after epoch {k}");
        assert_eq!(acts_after(&second), acts_after(&full_events));
        for file in compared {
            assert!(
                bytes(parts.path().join(file)) == bytes(whole.path().join(file)),
                "{file} differs after resuming from epoch {k}"
            );
        }
    }
    full_events
}

#[cfg(unix)]
#[test]
fn a_run_interrupted_by_ctrl_c_resumes_to_the_same_bits() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    // Enough epochs that Ctrl-C, sent after the first, lands long before the end
    // (each epoch syncs its checkpoint and log to the disk).
    let text = source(&iris(), 300, "csv_logger(\"log.csv\")");
    let whole = tempfile::tempdir().unwrap();
    run_in(whole.path(), &text, &["--save", "@w.safetensors"]);

    let dir = tempfile::tempdir().unwrap();
    let nn = dir.path().join("model.nn");
    std::fs::write(&nn, &text).unwrap();
    let ck = dir.path().join("ck");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .arg("run")
        .arg(&nn)
        .args(["--json", "--threads", "1", "--checkpoint"])
        .arg(&ck)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = Instant::now();
    while !lines
        .next()
        .expect("an epoch")
        .unwrap()
        .contains("\"epoch\"")
    {
        assert!(started.elapsed() < Duration::from_secs(120));
    }
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child, not yet waited for.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let out = child.wait_with_output().unwrap();
    let rest = rest.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let done = rest
        .iter()
        .filter(|l| l.contains("\"event\":\"epoch\""))
        .count()
        + 1;
    assert!(done < 300, "Ctrl-C came after the last epoch");
    assert!(
        stderr.contains(&format!(
            "`--resume {}` continues after epoch {done}",
            ck.display()
        )),
        "{stderr}"
    );

    run_in(
        dir.path(),
        &text,
        &["--resume", "@ck", "--save", "@w.safetensors"],
    );
    for file in ["w.safetensors", "log.csv"] {
        assert!(
            bytes(dir.path().join(file)) == bytes(whole.path().join(file)),
            "{file} differs after Ctrl-C in epoch {} and resuming",
            done + 1
        );
    }
}

#[test]
fn a_checkpoint_of_another_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = source(&iris(), 2, "");
    run_in(
        dir.path(),
        &text,
        &["--checkpoint", "@ck", "--save", "@w.safetensors"],
    );
    let nn = dir.path().join("model.nn");
    let ck = dir.path().join("ck");
    let refused = |args: &[&str], wanted: &str| {
        let mut argv = vec!["run", nn.to_str().unwrap()];
        argv.extend(args);
        let out = nnc(&argv);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr.contains(wanted),
            "{}\nwanted: {wanted}",
            out.stderr
        );
    };
    // Another seed would shuffle and drop out differently.
    refused(
        &["--resume", ck.to_str().unwrap(), "--seed", "4"],
        "the run was checkpointed with --seed 3; resume it with the same value",
    );
    // Weights from --save are not a checkpoint.
    let w = dir.path().join("w.safetensors");
    refused(
        &["--resume", w.to_str().unwrap()],
        "not a resume checkpoint of nnc",
    );
    // Another nnc version: the same checkpoint with the version changed.
    let version = env!("CARGO_PKG_VERSION");
    let other = format!(
        "{}{}",
        (b'0' + (version.as_bytes()[0] - b'0' + 1) % 10) as char,
        &version[1..]
    );
    let mut file = bytes(ck.clone());
    let at = file
        .windows(version.len() + 2)
        .position(|w| w == format!("\"{version}\"").as_bytes())
        .unwrap();
    file[at + 1..at + 1 + version.len()].copy_from_slice(other.as_bytes());
    let old = dir.path().join("old");
    std::fs::write(&old, file).unwrap();
    refused(
        &["--resume", old.to_str().unwrap()],
        &format!("written by nnc {other}, and this is nnc {version}"),
    );
    // Another .nn source: one more epoch is another run.
    std::fs::write(&nn, source(&iris(), 3, "")).unwrap();
    refused(
        &["--resume", ck.to_str().unwrap()],
        "written for another version of this .nn file",
    );
}
