//! `nnc emit --clif` through the command line, against the code `nnc run` compiles.

use nnc::codegen::clif_text;
use nnc::ir::layout::Layout;
use nnc::ir::train_step;

/// `nnc emit --clif` prints the function `nnc run` compiles: the train step of the
/// file's batch size over the planned layout (small and large enough for the
/// optimizer).
#[test]
fn emit_clif_prints_the_function_run_compiles() {
    use clap::Parser;
    for example in ["seed.nn", "mnist_mlp.nn"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(example);
        let args = [
            "nnc".as_ref(),
            "emit".as_ref(),
            "--clif".as_ref(),
            path.as_os_str(),
        ];
        let cli = nnc::cli::Cli::try_parse_from(args).expect("arguments");
        let (mut out, mut err) = (vec![], vec![]);
        let mut io = nnc::cli::Io {
            stdout: &mut out,
            stderr: &mut err,
            color: false,
        };
        let code = nnc::cli::run(cli, &mut io);
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        let outcome = nnc::check_file(&path, &nnc::CheckOptions::default()).expect("reads");
        let model = outcome.model.expect("checks");
        let batch = model.train.as_ref().expect("a train block").batch_size;
        let graph = train_step(&model, batch).expect("graph");
        let planned = clif_text(&graph, &Layout::planned(&graph)).expect("clif");
        assert_eq!(String::from_utf8(out).expect("utf-8"), planned, "{example}");
        // The layouts place tensors differently, so the text tells them apart.
        let unplanned = clif_text(&graph, &Layout::new(&graph)).expect("clif");
        assert_ne!(planned, unplanned, "{example}");
    }
}
