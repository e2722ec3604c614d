//! The command line (contract §9): `imgate serve`, `imgate sig gen`, `imgate sig verify`; and
//! `imgate load`, the load generator of the benchmarks (the `imgate-load` crate).
//!
//! Parsing is clap's; each subcommand calls into the library. Output meant for scripts (the UserSig of
//! `sig gen`, the fields of `sig verify`) goes to stdout; the exit code of `sig verify` is 0 when the
//! UserSig is valid and 1 when it is not.

use crate::usersig::{self, SigError, SigKey, DEFAULT_EXPIRE_SECS};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "imgate",
    version,
    about = "A self-hosted WebSocket login gateway for IM apps"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (without --config: a development gateway with a printed key)
    Serve(ServeArgs),
    /// Mint and check UserSigs (Tencent TLSSigAPIv2)
    #[command(subcommand)]
    Sig(SigCommand),
    /// Generate load: open, log in and hold sessions (or time kicks); see BENCHMARKS.md
    Load(Box<imgate_load::LoadArgs>),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Overrides `listen` (use 127.0.0.1:0 for a free port)
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Overrides `admin_listen` (use 127.0.0.1:0 for a free port)
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum SigCommand {
    /// Print a UserSig
    Gen {
        #[arg(long)]
        sdk_app_id: u64,
        #[arg(long)]
        key: String,
        #[arg(long)]
        user: String,
        /// Lifetime in seconds (default 180 days)
        #[arg(long, default_value_t = DEFAULT_EXPIRE_SECS)]
        expire: u64,
    },
    /// Decode and check a UserSig; exit 0 when valid, 1 when not
    Verify {
        #[arg(long)]
        sdk_app_id: u64,
        #[arg(long)]
        key: String,
        #[arg(long)]
        user: String,
        /// The UserSig to check
        sig: String,
    },
}

/// Runs `sig gen`: the UserSig on one line.
pub fn sig_gen(sdk_app_id: u64, key: &str, user: &str, expire: u64) -> String {
    usersig::generate(
        &SigKey::new(key),
        sdk_app_id,
        user,
        expire,
        crate::clock::now_secs(),
        None,
    )
}

/// Runs `sig verify`: the report to print and whether the UserSig is valid.
pub fn sig_verify(sdk_app_id: u64, key: &str, user: &str, sig: &str) -> (String, bool) {
    let mut out = String::new();
    let decoded = match usersig::decode(sig) {
        Ok(d) => d,
        Err(e) => {
            out.push_str(&invalid(&e));
            return (out, false);
        }
    };
    out.push_str(&format!("TLS.ver:        {}\n", decoded.ver));
    out.push_str(&format!("TLS.identifier: {}\n", decoded.identifier));
    out.push_str(&format!("TLS.sdkappid:   {}\n", decoded.sdkappid));
    out.push_str(&format!("TLS.time:       {}\n", decoded.time));
    out.push_str(&format!("TLS.expire:     {}\n", decoded.expire));
    out.push_str(&format!("expire_at:      {}\n", decoded.expire_at()));
    if let Some(ub) = &decoded.userbuf {
        out.push_str(&format!("TLS.userbuf:    {ub}\n"));
    }
    out.push_str(&format!("TLS.sig:        {}\n", decoded.sig));
    match decoded.verify(
        Some(&[SigKey::new(key)]),
        sdk_app_id,
        user,
        crate::clock::now_ms(),
    ) {
        Ok(()) => {
            out.push_str("valid\n");
            (out, true)
        }
        Err(e) => {
            out.push_str(&invalid(&e));
            (out, false)
        }
    }
}

fn invalid(e: &SigError) -> String {
    format!("invalid: code {}: {e}\n", e.code().as_u32())
}
