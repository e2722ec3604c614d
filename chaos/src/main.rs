//! `imgate-chaos`: parses the command line and runs the cluster chaos run ([`imgate_chaos::run`]).
//! Exit status: 0 every invariant held, 1 a violation (the summary names it and the replay
//! command), 2 the harness could not run.

use clap::Parser;

fn main() {
    let opts = imgate_chaos::Opts::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("imgate-chaos: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    match rt.block_on(imgate_chaos::run(&opts)) {
        Ok(out) => {
            print!("{}", out.summary);
            std::process::exit(if out.violations.is_empty() { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("imgate-chaos: {e}");
            std::process::exit(2);
        }
    }
}
