//! imgate: a self-hosted WebSocket login gateway with Tencent Cloud IM login rules.
//!
//! The map of the crate, in dependency order (each module uses only those above it):
//!
//! - [`clock`]: wall-clock time in protocol units.
//! - [`usersig`]: TLSSigAPIv2 UserSig generation and verification.
//! - [`policy`]: the multi-device policy and the pure eviction decision.
//! - [`config`]: the configuration file, its defaults and validation.
//! - [`cli`]: the command line.
//!
//! The wire format lives in the `imgate-proto` crate.

pub mod cli;
pub mod clock;
pub mod config;
pub mod policy;
pub mod usersig;

/// Installs the tracing subscriber (`RUST_LOG` filters; default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs `imgate serve`.
pub fn serve_main(_args: cli::ServeArgs) -> Result<(), String> {
    Err("serve is being built".into())
}
