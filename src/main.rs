//! `nnc`: parse the command line, run the command from the library, exit with its code.

use std::io::IsTerminal;

use clap::Parser;

fn main() {
    let cli = nnc::cli::Cli::parse();
    // The language server's own threads read stdin and write stdout: no locks held.
    if let nnc::cli::Command::Lsp = cli.command {
        std::process::exit(nnc::cli::lsp());
    }
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let code = nnc::cli::run(
        cli,
        &mut nnc::cli::Io {
            stdout: &mut out,
            stderr: &mut err,
            color,
        },
    );
    drop((out, err));
    std::process::exit(code);
}
