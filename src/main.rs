//! The `opsflow` binary: parse the command line, run, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = opsflow::cli::Cli::parse();
    match opsflow::run(cli) {
        Ok(code) => code.into(),
        Err(error) => {
            eprintln!("opsflow: error: {error:#}");
            opsflow::Exit::Invalid.into()
        }
    }
}
