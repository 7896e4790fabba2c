//! Data-parallel training under `mpirun` (`runtime/distributed.rs`).
//!
//! Built with `--features mpi` (what `.ci/run` does, after installing Open MPI),
//! these start `mpirun` with 2, 3 and 4 processes on a slice of MNIST and compare
//! the result with one process: the same weights within 1e-5 relative for a smooth
//! network trained with SGD, bit-identical weights from run to run, the same test
//! accuracy within 0.3 points for ReLU networks with Adam, callbacks acting as in
//! one process, a resumed run ending with the bits of an uninterrupted one, and a
//! killed process ending the job promptly without touching the weights file or the
//! last checkpoint. Without `mpirun` they
//! fail in CI (`CI` set) and are skipped with a message elsewhere. Built without the
//! feature, they check that a launcher cannot start nnc N times.

use std::path::Path;
use std::process::Command;

const NNC: &str = env!("CARGO_BIN_EXE_nnc");

#[cfg(not(feature = "mpi"))]
#[test]
fn without_mpi_support_a_launcher_is_refused_and_version_says_so() {
    let version = Command::new(NNC).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.contains("MPI support: no"), "{version}");

    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed.nn");
    // As if a launcher had started it as process 0 of 2.
    let out = Command::new(NNC)
        .args(["run", model.to_str().unwrap(), "--epochs", "1"])
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .env("OMPI_COMM_WORLD_RANK", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("built without MPI support"), "{stderr}");
    assert!(stderr.contains("started 2 processes"), "{stderr}");
    assert!(out.stdout.is_empty(), "it trained: {:?}", out.stdout);
    // Process 1 of the same job says nothing more.
    let other = Command::new(NNC)
        .args(["run", model.to_str().unwrap()])
        .env("PMI_SIZE", "2")
        .env("PMI_RANK", "1")
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(2));
    assert!(other.stderr.is_empty() && other.stdout.is_empty());
}

#[cfg(feature = "mpi")]
mod with_mpi {
    use super::*;
    use std::io::Read;
    use std::path::PathBuf;
    use std::process::Output;
    use std::time::{Duration, Instant};

    /// `mpirun`'s path; `None` (after saying why) when it is missing outside CI.
    fn mpirun() -> Option<PathBuf> {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("mpirun"))
                .find(|p| p.is_file())
        });
        if found.is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "mpirun is missing: .ci/run installs openmpi-bin"
            );
            eprintln!("skipped: mpirun is not installed (Debian: openmpi-bin)");
        }
        found
    }

    /// `mpirun -np N nnc ARGS`, allowed to run as root and more processes than cores.
    fn mpirun_command(mpirun: &Path, processes: usize, args: &[&str]) -> Command {
        let mut c = Command::new(mpirun);
        c.args(["--oversubscribe", "-np", &processes.to_string(), NNC])
            .args(args)
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
        c
    }

    fn check(out: Output, what: &str) -> String {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{what}: {:?}\n{stderr}", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The first `rows` MNIST training images and labels, and the 10,000 test ones,
    /// as IDX files in `dir`.
    fn mnist_slice(dir: &Path, rows: usize) {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/mnist");
        let copy = |from: &str, to: &str, header: usize, row: usize, rows: Option<usize>| {
            let file = std::fs::File::open(data.join(from)).unwrap();
            let mut bytes = vec![];
            flate2::read::GzDecoder::new(file)
                .read_to_end(&mut bytes)
                .unwrap();
            if let Some(rows) = rows {
                bytes.truncate(header + rows * row);
                bytes[4..8].copy_from_slice(&(rows as u32).to_be_bytes());
            }
            std::fs::write(dir.join(to), bytes).unwrap();
        };
        copy(
            "train-images-idx3-ubyte.gz",
            "train-images",
            16,
            784,
            Some(rows),
        );
        copy(
            "train-labels-idx1-ubyte.gz",
            "train-labels",
            8,
            1,
            Some(rows),
        );
        copy("t10k-images-idx3-ubyte.gz", "test-images", 16, 784, None);
        copy("t10k-labels-idx1-ubyte.gz", "test-labels", 8, 1, None);
    }

    /// A `.nn` file in `dir` training `layers` on the MNIST slice.
    fn model(dir: &Path, name: &str, input: &str, layers: &str, optimizer: &str) -> PathBuf {
        let text = format!(
            "model {name} {{\n    input image: {input}\n{layers}}}\n\n\
             train {{\n    \
             data       = idx(images = \"train-images\", labels = \"train-labels\")\n    \
             test       = idx(images = \"test-images\", labels = \"test-labels\")\n    \
             loss       = sparse_categorical_crossentropy\n    \
             optimizer  = {optimizer}\n    \
             metrics    = [accuracy]\n    \
             epochs     = 1\n    \
             batch_size = 128\n    \
             seed       = 11\n}}\n"
        );
        let path = dir.join(format!("{name}.nn"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Every tensor of a safetensors file, by name.
    fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
        let bytes = std::fs::read(path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: Vec<(String, Vec<f32>)> = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let values = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                (name, values)
            })
            .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        tensors
    }

    /// The largest difference between two sets of weights, over the largest weight,
    /// tensor by tensor.
    fn relative_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f64 {
        assert_eq!(a.len(), b.len());
        let mut worst = 0f64;
        for ((na, va), (nb, vb)) in a.iter().zip(b) {
            assert_eq!((na, va.len()), (nb, vb.len()));
            let scale = va.iter().map(|v| f64::from(v.abs())).fold(0.0, f64::max);
            let diff = va
                .iter()
                .zip(vb)
                .map(|(x, y)| f64::from((x - y).abs()))
                .fold(0.0, f64::max);
            worst = worst.max(diff / scale.max(f64::MIN_POSITIVE));
        }
        worst
    }

    /// `nnc run MODEL --save OUT` alone (`processes` 1) or under mpirun.
    fn train(mpirun: &Path, processes: usize, model: &Path, out: &Path) -> String {
        let args = [
            "run",
            model.to_str().unwrap(),
            "--threads",
            "1",
            "--json",
            "--save",
            out.to_str().unwrap(),
        ];
        let output = if processes == 1 {
            Command::new(NNC).args(args).output().unwrap()
        } else {
            mpirun_command(mpirun, processes, &args).output().unwrap()
        };
        check(output, &format!("{processes} processes"))
    }

    /// The test accuracy of a `--json` run's output.
    fn test_accuracy(json_lines: &str) -> f64 {
        let test = json_lines
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["event"] == "test")
            .expect("a test event");
        test["metrics"]["accuracy"].as_f64().unwrap()
    }

    #[test]
    fn smooth_sgd_mlp_matches_one_process_and_repeats_bit_for_bit() {
        let Some(mpirun) = mpirun() else { return };
        let dir = tempfile::tempdir().unwrap();
        // 3,000 rows in batches of 128: a last batch of 56, and batches that 3 and
        // 4 processes split unevenly (43 + 43 + 42; 19 + 19 + 18).
        mnist_slice(dir.path(), 3000);
        let layers = "    dense(64, activation = tanh)\n    dense(10, activation = softmax)\n";
        let model = model(
            dir.path(),
            "smooth",
            "[784]",
            layers,
            "sgd(learning_rate = 0.1)",
        );
        let out = |name: &str| dir.path().join(name);
        let single_log = train(&mpirun, 1, &model, &out("one.safetensors"));
        let single = weights(&out("one.safetensors"));
        for processes in [2, 3, 4] {
            let name = format!("{processes}.safetensors");
            let log = train(&mpirun, processes, &model, &out(&name));
            let parallel = weights(&out(&name));
            let diff = relative_difference(&single, &parallel);
            eprintln!("{processes} processes: largest relative difference {diff:e}");
            assert!(diff <= 1e-5, "{processes} processes: {diff:e}");
            // Only rank 0 reports: one epoch line, one test line.
            assert_eq!(log.matches("\"event\":\"epoch\"").count(), 1, "{log}");
            assert_eq!(log.matches("\"event\":\"test\"").count(), 1, "{log}");
            let accuracy = (test_accuracy(&log) - test_accuracy(&single_log)).abs();
            assert!(
                accuracy < 0.003,
                "{processes} processes: accuracy {accuracy}"
            );
        }
        // Three processes again: the same bits.
        train(&mpirun, 3, &model, &out("3-again.safetensors"));
        assert_eq!(
            weights(&out("3.safetensors")),
            weights(&out("3-again.safetensors"))
        );
    }

    /// Batch normalization normalizes by the whole batch's statistics on every
    /// process (synchronized), in the forward pass and in the backward pass, and the
    /// moving statistics follow the whole batch's: with smooth activations and SGD, 2
    /// and 3 processes end an epoch within 1e-5 of one process's weights, moving
    /// statistics included. (Each shard's own statistics would differ by far more:
    /// a batch of 128 rows normalized as 2 or 3 shards.)
    #[test]
    fn batchnorm_trains_on_the_whole_batch_statistics() {
        let Some(mpirun) = mpirun() else { return };
        let dir = tempfile::tempdir().unwrap();
        // 1,000 rows: a last batch of 104, and shards of 43 + 43 + 42 and 35 + 35 + 34.
        mnist_slice(dir.path(), 1000);
        let sgd = "sgd(learning_rate = 0.1)";
        let mlp = model(
            dir.path(),
            "bn",
            "[784]",
            "    dense(32, use_bias = false)\n    batchnorm(momentum = 0.9)\n    tanh\n    \
             dense(10, activation = softmax)\n",
            sgd,
        );
        // Statistics over the rows and the pixels of every image in the shard. (No
        // biases before batchnorm, as in Keras's examples: their gradient is zero but
        // for rounding, and so are they.) Small images: a float32 sum over 128 x 26 x
        // 26 values rounds differently in one piece and in shards, by more than 1e-5
        // after an epoch (docs/DISTRIBUTED.md).
        let cnn = model(
            dir.path(),
            "bn_cnn",
            "[28, 28, 1]",
            "    maxpool2d(pool_size = 4)\n    conv2d(8, kernel_size = 3, use_bias = false)\n    \
             batchnorm\n    tanh\n    avgpool2d(pool_size = 2)\n    flatten\n    \
             dense(10, activation = softmax)\n",
            sgd,
        );
        let out = |name: &str| dir.path().join(name);
        for model in [&mlp, &cnn] {
            train(&mpirun, 1, model, &out("one.safetensors"));
            let single = weights(&out("one.safetensors"));
            assert!(single
                .iter()
                .any(|(name, _)| name.contains(".moving_variance")));
            for processes in [2, 3] {
                let name = format!("{processes}.safetensors");
                train(&mpirun, processes, model, &out(&name));
                let diff = relative_difference(&single, &weights(&out(&name)));
                eprintln!(
                    "{}, {processes} processes: largest relative difference {diff:e}",
                    model.display()
                );
                assert!(diff <= 1e-5, "{processes} processes: {diff:e}");
            }
        }
    }

    #[test]
    fn relu_adam_networks_reach_one_process_test_accuracy() {
        let Some(mpirun) = mpirun() else { return };
        let dir = tempfile::tempdir().unwrap();
        mnist_slice(dir.path(), 6000);
        let mlp = model(
            dir.path(),
            "mlp",
            "[784]",
            "    dense(128, activation = relu)\n    dense(10, activation = softmax)\n",
            "adam",
        );
        // The Keras convnet without its dropout layer: each process draws its own
        // dropout masks, which would make this another training than one process's.
        let cnn = model(
            dir.path(),
            "cnn",
            "[28, 28, 1]",
            "    conv2d(32, kernel_size = 3, activation = relu)\n    maxpool2d(pool_size = 2)\n    \
             conv2d(64, kernel_size = 3, activation = relu)\n    maxpool2d(pool_size = 2)\n    \
             flatten\n    dense(10, activation = softmax)\n",
            "adam",
        );
        for (model, processes) in [(&mlp, 2), (&mlp, 3), (&cnn, 2)] {
            let out = dir.path().join("out.safetensors");
            let one = test_accuracy(&train(&mpirun, 1, model, &out));
            let many = test_accuracy(&train(&mpirun, processes, model, &out));
            eprintln!("{}: {one} alone, {many} on {processes}", model.display());
            assert!(
                (one - many).abs() <= 0.003,
                "{}: one process {one}, {processes} processes {many}",
                model.display()
            );
        }
    }

    /// The processes of the job started by mpirun `parent`, by rank.
    fn ranks_of(parent: u32) -> Vec<(usize, u32)> {
        let mut found = vec![];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // The parent pid is the 2nd field after the command's closing parenthesis.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid != Some(parent) {
                continue;
            }
            let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            let rank = env
                .split(|&b| b == 0)
                .filter_map(|kv| std::str::from_utf8(kv).ok())
                .find_map(|kv| kv.strip_prefix("OMPI_COMM_WORLD_RANK="))
                .and_then(|r| r.parse().ok());
            if let Some(rank) = rank {
                found.push((rank, pid));
            }
        }
        found.sort();
        found
    }

    /// The arguments of a long run of `model` in batches of 16 (`start_long_job`).
    fn long_run<'a>(model: &'a Path, save: &'a Path, epochs: &'a str) -> Vec<&'a str> {
        vec![
            "run",
            model.to_str().unwrap(),
            "--threads",
            "1",
            "--epochs",
            epochs,
            "--batch-size",
            "16",
            "--save",
            save.to_str().unwrap(),
        ]
    }

    /// Starts `mpirun -np 3 nnc run MODEL ... --save SAVE EXTRA` for many epochs;
    /// returns it once rank 0 has printed `until`, with the ranks' process ids.
    fn start_long_job(
        mpirun: &Path,
        model: &Path,
        save: &Path,
        extra: &[&str],
        until: &str,
    ) -> (std::process::Child, Vec<(usize, u32)>) {
        let mut args = long_run(model, save, "1000");
        args.extend(extra);
        let mut job = mpirun_command(mpirun, 3, &args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = job.stdout.take().unwrap();
        let mut seen = vec![0u8; 4096];
        let mut text = String::new();
        while !text.contains(until) {
            let n = stdout.read(&mut seen).unwrap();
            assert!(n > 0, "the job ended early: {text}");
            text.push_str(&String::from_utf8_lossy(&seen[..n]));
        }
        // Keep reading, so that rank 0 never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let ranks = ranks_of(job.id());
        assert_eq!(ranks.len(), 3, "{ranks:?}");
        (job, ranks)
    }

    /// Waits at most `limit` for `job` to end; returns its status, its stderr and how
    /// long it took.
    fn wait_for(
        mut job: std::process::Child,
        limit: Duration,
    ) -> (std::process::ExitStatus, String, Duration) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = job.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < limit,
                "the job still runs after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let waited = started.elapsed();
        let mut stderr = String::new();
        job.stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr, waited)
    }

    #[test]
    fn ctrl_c_in_one_process_stops_all_after_the_same_batch_and_rank_0_saves() {
        let Some(mpirun) = mpirun() else { return };
        let dir = tempfile::tempdir().unwrap();
        mnist_slice(dir.path(), 3000);
        let layers = "    dense(64, activation = relu)\n    dense(10, activation = softmax)\n";
        let model = model(dir.path(), "mlp", "[784]", layers, "adam");
        let saved = dir.path().join("weights.safetensors");
        let (job, ranks) = start_long_job(&mpirun, &model, &saved, &[], "Epoch 1/");
        // SAFETY: kill(2) on a process of ours; no memory is involved.
        unsafe { libc::kill(ranks[2].1 as i32, libc::SIGINT) };
        let (status, stderr, _) = wait_for(job, Duration::from_secs(60));
        assert_eq!(status.code(), Some(130), "{stderr}");
        assert!(
            stderr.contains("nnc: interrupted (Ctrl-C) in epoch"),
            "{stderr}"
        );
        assert!(stderr.contains("(the last complete one) to"), "{stderr}");
        // Said once, by rank 0, which saved weights that evaluate.
        assert_eq!(stderr.matches("interrupted").count(), 1, "{stderr}");
        let args = ["evaluate", model.to_str().unwrap(), "--weights"];
        let out = Command::new(NNC).args(args).arg(&saved).output().unwrap();
        check(out, "evaluate");
    }

    #[test]
    fn a_killed_process_ends_the_job_within_seconds_and_the_weights_file_stays() {
        let Some(mpirun) = mpirun() else { return };
        let dir = tempfile::tempdir().unwrap();
        mnist_slice(dir.path(), 3000);
        let layers = "    dense(64, activation = relu)\n    dense(10, activation = softmax)\n";
        let model = model(dir.path(), "mlp", "[784]", layers, "adam");
        let saved = dir.path().join("weights.safetensors");
        // The weights of a complete run, which the killed one must not touch.
        train(&mpirun, 2, &model, &saved);
        let before = std::fs::read(&saved).unwrap();

        let (job, ranks) = start_long_job(&mpirun, &model, &saved, &[], "Epoch 1/");
        // SAFETY: kill(2) on a process of ours; no memory is involved.
        unsafe { libc::kill(ranks[1].1 as i32, libc::SIGKILL) };
        let (status, stderr, waited) = wait_for(job, Duration::from_secs(30));
        assert!(!status.success());
        assert!(waited < Duration::from_secs(10), "took {waited:?}");
        assert!(stderr.contains("rank 1"), "{stderr}");
        assert!(stderr.contains("signal 9"), "{stderr}");
        // Rank 0, which the user watches, says why it stopped.
        assert!(
            stderr.contains("nnc: stopped by the MPI launcher"),
            "{stderr}"
        );
        for (_, pid) in ranks {
            // Gone, or a zombie nobody reaped (a container's first process may not).
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, s)| s.split_whitespace().next());
            assert!(matches!(state, None | Some("Z")), "{pid} survived: {stat}");
        }
        assert_eq!(std::fs::read(&saved).unwrap(), before);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    /// `mpirun` with one process running `nnc ARGS_0` and one `nnc ARGS_1`.
    fn mpirun_two(mpirun: &Path, rank0: &[&str], rank1: &[&str]) -> Output {
        mpirun_command(mpirun, 1, rank0)
            .arg(":")
            .args(["-np", "1", NNC])
            .args(rank1)
            .output()
            .unwrap()
    }

    #[test]
    fn a_process_that_cannot_start_says_why_and_none_trains() {
        let Some(mpirun) = mpirun() else { return };
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed.nn");
        let model = model.to_str().unwrap();
        let run = ["run", model, "--epochs", "2"];
        let missing = [
            "run",
            model,
            "--epochs",
            "2",
            "--init",
            "/nonexistent.safetensors",
        ];
        let out = mpirun_two(&mpirun, &run, &missing);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("error: process 1 of 2 could not start training:"),
            "{stderr}"
        );
        assert!(stderr.contains("/nonexistent.safetensors"), "{stderr}");
        assert!(
            stderr.contains("another process failed before training"),
            "{stderr}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("Epoch"));

        // Started, but not on the same training: the steps would not pair up.
        let longer = ["run", model, "--epochs", "3"];
        let out = mpirun_two(&mpirun, &run, &longer);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("do not agree on the data"), "{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("Epoch"));
    }

    #[test]
    fn version_says_mpi_and_a_batch_too_small_to_split_is_refused() {
        let version = Command::new(NNC).arg("--version").output().unwrap();
        assert!(String::from_utf8_lossy(&version.stdout).contains("MPI support: yes"));
        let Some(mpirun) = mpirun() else { return };
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed.nn");
        let args = ["run", model.to_str().unwrap(), "--batch-size", "2"];
        let out = mpirun_command(&mpirun, 3, &args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("a batch of 2 rows cannot be split over 3 processes"),
            "{stderr}"
        );
        // Said once, by rank 0, and nothing trained.
        assert_eq!(stderr.matches("cannot be split").count(), 1, "{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("Epoch"));
    }

    /// `cb.nn` in `dir`: the smooth MLP of `smooth_sgd_mlp_matches_one_process...`
    /// with `layers` after its first layer, a validation split, and callbacks that
    /// lower the rate, stop early (restoring the best weights) and write files, in
    /// about 15 epochs.
    fn callbacks_model(dir: &Path, layers: &str) -> PathBuf {
        let layers = format!(
            "    dense(64, activation = tanh)\n{layers}    dense(10, activation = softmax)\n"
        );
        let path = model(dir, "cb", "[784]", &layers, "sgd(learning_rate = 0.1)");
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "    epochs     = 1\n",
            "    epochs     = 40\n    validation_split = 0.2\n    callbacks  = [\
             reduce_lr_on_plateau(factor = 0.5, patience = 1, min_delta = 0.01), \
             early_stopping(patience = 2, min_delta = 0.005, restore_best_weights = true), \
             csv_logger(\"log.csv\"), \
             model_checkpoint(\"best.safetensors\", save_best_only = true)]\n",
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The `event` events of a `--json` run, without their timings.
    fn events_of(json_lines: &str, event: &str) -> Vec<serde_json::Value> {
        json_lines
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event"] == event)
            .map(|mut e| {
                if let Some(o) = e.as_object_mut() {
                    o.remove("seconds");
                    o.remove("samples_per_second");
                }
                e
            })
            .collect()
    }

    /// What the callbacks did, without the monitored values (whose last digits
    /// depend on the order of the sums): which one, after which epoch, and the
    /// epochs and rates they chose.
    fn acts(json_lines: &str) -> Vec<String> {
        events_of(json_lines, "callback")
            .iter()
            .map(|e| {
                format!(
                    "{} {} {} {}",
                    e["callback"], e["epoch"], e["restored_epoch"], e["learning_rate"]
                )
            })
            .collect()
    }

    /// Rank 0 evaluates and runs the callbacks; the others follow its decisions. With
    /// a smooth network and SGD, 2 processes lower the rate and stop at the epochs
    /// one process does, and end with its weights.
    #[test]
    fn callbacks_act_on_every_process_as_in_one_process() {
        let Some(mpirun) = mpirun() else { return };
        let dir = tempfile::tempdir().unwrap();
        mnist_slice(dir.path(), 3000);
        let model = callbacks_model(dir.path(), "");
        let out = |name: &str| dir.path().join(name);
        let single = train(&mpirun, 1, &model, &out("one.safetensors"));
        std::fs::rename(out("log.csv"), out("one.csv")).unwrap();
        std::fs::rename(out("best.safetensors"), out("one-best.safetensors")).unwrap();
        let parallel = train(&mpirun, 2, &model, &out("two.safetensors"));

        let acts_one = acts(&single);
        assert!(
            acts_one
                .iter()
                .any(|a| a.starts_with("\"reduce_lr_on_plateau\""))
                && acts_one.iter().any(|a| a.starts_with("\"early_stopping\"")),
            "{acts_one:?}"
        );
        let stopped = events_of(&single, "epoch").len();
        assert!((3..40).contains(&stopped), "stopped after {stopped} epochs");
        // Said once, by rank 0.
        assert_eq!(acts(&parallel), acts_one);
        assert_eq!(events_of(&parallel, "epoch").len(), stopped);
        for (one, two) in [
            ("one.safetensors", "two.safetensors"),
            ("one-best.safetensors", "best.safetensors"),
        ] {
            let diff = relative_difference(&weights(&out(one)), &weights(&out(two)));
            eprintln!("{two}: largest relative difference {diff:e}");
            assert!(diff <= 1e-5, "{two}: {diff:e}");
        }
        let rows = |file: &str| std::fs::read_to_string(out(file)).unwrap().lines().count();
        assert_eq!(rows("log.csv"), rows("one.csv"));
        assert_eq!(rows("log.csv"), stopped + 1);
    }

    /// The bytes of `file` in `dir`.
    fn bytes(dir: &Path, file: &str) -> Vec<u8> {
        std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    /// A 2-process run checkpointed after 5 epochs and resumed on 2 processes ends
    /// with the bits of an uninterrupted 2-process run (dropout included: each rank
    /// draws its masks from the step counter the checkpoint keeps). Another number of
    /// processes is refused.
    #[test]
    fn a_run_resumed_on_two_processes_ends_with_the_same_bits() {
        let Some(mpirun) = mpirun() else { return };
        let whole = tempfile::tempdir().unwrap();
        let parts = tempfile::tempdir().unwrap();
        for dir in [whole.path(), parts.path()] {
            mnist_slice(dir, 3000);
            callbacks_model(dir, "    dropout(0.2)\n");
        }
        let run = |dir: &Path, processes: usize, args: &[&str]| {
            let model = dir.join("cb.nn");
            let mut all = vec!["run", model.to_str().unwrap(), "--threads", "1", "--json"];
            all.extend(args);
            let output = match processes {
                1 => Command::new(NNC).args(&all).output().unwrap(),
                n => mpirun_command(&mpirun, n, &all).output().unwrap(),
            };
            (output.status.code(), output)
        };
        let save = |dir: &Path| dir.join("w.safetensors").display().to_string();
        let (code, full) = run(whole.path(), 2, &["--save", &save(whole.path())]);
        let full = check_code(code, full, "the whole run");
        let stopped = events_of(&full, "epoch").len();
        assert!(stopped > 6, "stopped after {stopped} epochs");

        let ck = parts.path().join("ck");
        let ck = ck.to_str().unwrap();
        let (code, first) = run(parts.path(), 2, &["--epochs", "5", "--checkpoint", ck]);
        let first = check_code(code, first, "the first part");
        let (code, second) = run(
            parts.path(),
            2,
            &["--resume", ck, "--save", &save(parts.path())],
        );
        let second = check_code(code, second, "the resumed part");
        assert_eq!(events_of(&second, "resumed").len(), 1, "{second}");
        let mut joined = events_of(&first, "epoch");
        joined.extend(events_of(&second, "epoch"));
        assert_eq!(joined, events_of(&full, "epoch"));
        assert_eq!(acts(&first).len() + acts(&second).len(), acts(&full).len());
        for file in ["w.safetensors", "log.csv", "best.safetensors"] {
            // The weights files hold the seed and the source's hash, not the paths.
            assert!(
                bytes(parts.path(), file) == bytes(whole.path(), file),
                "{file} differs"
            );
        }

        // The checkpoint (now of the whole run) on 1 and 3 processes.
        for processes in [1, 3] {
            let (code, out) = run(parts.path(), processes, &["--resume", ck]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(code, Some(1), "{processes} processes: {stderr}");
            assert_eq!(
                stderr
                    .matches(&format!(
                        "the run was checkpointed by 2 processes, and this one has {processes}"
                    ))
                    .count(),
                1,
                "{stderr}"
            );
            assert!(stderr.contains("with `mpirun -np 2`"), "{stderr}");
            assert!(stderr.contains("nnc explain E0055"), "{stderr}");
            assert!(!String::from_utf8_lossy(&out.stdout).contains("\"epoch\""));
        }
        // And one process's checkpoint on 2.
        let (code, out) = run(parts.path(), 1, &["--epochs", "1", "--checkpoint", ck]);
        check_code(code, out, "one process");
        let (code, out) = run(parts.path(), 2, &["--resume", ck]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains(
                "checkpointed by 1 process, and this one has 2: resume it without mpirun"
            ),
            "{stderr}"
        );
    }

    fn check_code(code: Option<i32>, out: Output, what: &str) -> String {
        assert_eq!(
            code,
            Some(0),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A process killed during an epoch ends the job; rank 0 wrote the checkpoints
    /// atomically, so the last complete one loads and the run resumes from it.
    #[test]
    fn a_killed_process_leaves_the_last_checkpoint_whole_and_resumable() {
        let Some(mpirun) = mpirun() else { return };
        let dir = tempfile::tempdir().unwrap();
        mnist_slice(dir.path(), 3000);
        let layers = "    dense(64, activation = relu)\n    dense(10, activation = softmax)\n";
        let model = model(dir.path(), "mlp", "[784]", layers, "adam");
        let saved = dir.path().join("weights.safetensors");
        let ck = dir.path().join("run.checkpoint");
        let extra = ["--checkpoint", ck.to_str().unwrap()];
        // Epoch 3's line: epoch 2's checkpoint is on disk, and epoch 3's may be
        // being written.
        let (job, ranks) = start_long_job(&mpirun, &model, &saved, &extra, "Epoch 3/");
        // SAFETY: kill(2) on a process of ours; no memory is involved.
        unsafe { libc::kill(ranks[1].1 as i32, libc::SIGKILL) };
        let (status, stderr, _) = wait_for(job, Duration::from_secs(30));
        assert!(!status.success(), "{stderr}");
        assert!(stderr.contains("signal 9"), "{stderr}");

        let bytes = std::fs::read(&ck).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().clone().unwrap();
        let epoch: usize = meta["epoch"].parse().unwrap();
        assert!(epoch >= 2, "{meta:?}");
        assert_eq!(meta["processes"], "3");
        // Resumed on 3 processes for one more epoch.
        let epochs = (epoch + 1).to_string();
        let mut args = long_run(&model, &saved, &epochs);
        args.extend(["--resume", ck.to_str().unwrap()]);
        let out = mpirun_command(&mpirun, 3, &args).output().unwrap();
        let stdout = check(out, "resumed");
        assert!(
            stdout.contains(&format!("after epoch {epoch}")) && stdout.contains("resumed from"),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("Epoch {epochs}/{epochs}")),
            "{stdout}"
        );
        let args = ["evaluate", model.to_str().unwrap(), "--weights"];
        let out = Command::new(NNC).args(args).arg(&saved).output().unwrap();
        check(out, "evaluate");
    }

    #[test]
    fn a_diverging_run_stops_on_every_process_and_says_where_once() {
        let Some(mpirun) = mpirun() else { return };
        let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let model = golden.join("nan_sgd_momentum_regression.nn");
        let out = mpirun_command(&mpirun, 2, &["run", model.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let said = "the loss became NaN or infinite in epoch 1, batch";
        assert_eq!(stderr.matches(said).count(), 1, "{stderr}");
        assert!(stderr.contains("without mpirun to trace"), "{stderr}");
    }
}
