//! The `imgate` binary: parse the command line, set up tracing, call the library.

use clap::Parser;
use imgate::cli::{Cli, Command, SigCommand};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sig(SigCommand::Gen {
            sdk_app_id,
            key,
            user,
            expire,
        }) => {
            println!("{}", imgate::cli::sig_gen(sdk_app_id, &key, &user, expire));
            ExitCode::SUCCESS
        }
        Command::Sig(SigCommand::Verify {
            sdk_app_id,
            key,
            user,
            sig,
        }) => {
            let (report, valid) = imgate::cli::sig_verify(sdk_app_id, &key, &user, &sig);
            print!("{report}");
            if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Load(args) => match imgate_load::main(*args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("imgate load: {e}");
                ExitCode::from(2)
            }
        },
        Command::Serve(args) => {
            imgate::init_tracing();
            match imgate::serve_main(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("imgate: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
