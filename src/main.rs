//! The `opsflow` binary: parse the command line, run, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    opsflow::exit_quietly_on_broken_pipe();
    let cli = opsflow::cli::Cli::parse();
    match opsflow::run(cli) {
        Ok(code) => code.into(),
        Err(error) if opsflow::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("opsflow: error: {}", opsflow::exit::report(&error));
            opsflow::Exit::of(&error).into()
        }
    }
}
