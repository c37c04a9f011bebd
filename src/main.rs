//! The `otx-relay` command: parse, run, print the error, pick the exit
//! code. Everything else is in the library ([`otx_relay::cli`], and
//! [`otx_relay::server::serve`] for serving).

use std::process::ExitCode;

use otx_relay::{cli, server};

fn main() -> ExitCode {
    let command = cli::parse(std::env::args_os().skip(1));
    match command.and_then(|command| cli::run(command, server::serve)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message {
                eprintln!("otx-relay: {message}");
            }
            ExitCode::from(failure.code)
        }
    }
}
