//! The `otx-relay` command: parse, run, print the error, pick the exit
//! code. Everything else is in the library ([`otx_relay::cli`]).

use std::process::ExitCode;

use otx_relay::cli;

fn main() -> ExitCode {
    match cli::parse(std::env::args_os().skip(1)).and_then(cli::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message {
                eprintln!("otx-relay: {message}");
            }
            ExitCode::from(failure.code)
        }
    }
}
