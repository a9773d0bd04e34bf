//! The `edge` binary; see `edge --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match edge_userspace::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` keeps the whole context chain on one line, without the
            // backtrace an anyhow Debug print would add.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
