//! What the command tests share: nnc run in-process, exactly as the binary runs it.

use clap::Parser;
use nnc::cli::{Cli, Io};

// Each test binary includes this module and reads only some of the fields.
#[allow(dead_code)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `nnc ARGS` through `nnc::cli::run` and returns its exit code and output.
pub fn nnc(args: &[&str]) -> Output {
    let mut argv = vec!["nnc"];
    argv.extend(args);
    let cli = Cli::try_parse_from(&argv).expect("valid flags");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = nnc::cli::run(
        cli,
        &mut Io {
            stdout: &mut out,
            stderr: &mut err,
            color: false,
        },
    );
    Output {
        code,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}
