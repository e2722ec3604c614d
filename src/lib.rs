//! imgate: a self-hosted WebSocket login gateway with Tencent Cloud IM login rules.
//!
//! The map of the crate, in dependency order (each module uses only those above it):
//!
//! - [`clock`]: wall-clock time in protocol units.
//! - [`usersig`]: TLSSigAPIv2 UserSig generation and verification (the `imgate-usersig` crate).
//! - [`policy`]: the multi-device policy and the pure eviction decision.
//! - [`config`]: the configuration file, its defaults and validation.
//! - [`apps`]: the configured apps (keys, policies) as one swappable snapshot.
//! - [`outbox`]: the bounded mailbox through which shared state talks to one socket; [`conns`]:
//!   every open socket by connection id.
//! - [`presence`]: where logged-in sessions live, one [`presence::Presence`] interface with two
//!   stores: [`presence::embedded`] (the sharded in-process registry) and [`presence::redis`]
//!   (shared by several nodes through Redis: scripts, pub/sub, leases, reconciliation).
//! - [`expiry`]: the one-second timer wheel for UserSig expiry, and its driver task.
//! - [`throttle`]: the failed-verification throttle (70050).
//! - [`metrics`], [`webhook`]: Prometheus metrics and State.StateChange callbacks.
//! - [`gateway`]: the state all sockets share (the store chosen once, at start-up); [`heap`]: gives
//!   the memory of a mass disconnect back to the OS (glibc's `malloc_trim`, the `imgate-trim` crate).
//! - [`session`]: one socket's session state machine (contract §7).
//! - [`origin`]: `allowed_origins` patterns.
//! - [`edge`]: before the WebSocket: PROXY header, TLS, the upgrade, Origin, client address,
//!   per-address caps.
//! - [`conn`]: the socket I/O loop: frames, deadlines, closes.
//! - [`admin`]: the admin HTTP API, and the browser console served beside it.
//! - [`reload`]: live reload of the config file (SIGHUP, `POST /v1/reload`).
//! - [`server`]: listeners, accept loop, shutdown and drain.
//! - [`cli`]: the command line.
//!
//! The wire format lives in the `imgate-proto` crate, the load generator (`imgate load`) in
//! `imgate-load`.

pub use imgate_usersig as usersig;

pub mod admin;
pub mod apps;
pub mod cli;
pub mod clock;
pub mod config;
pub mod conn;
pub mod conns;
pub mod edge;
pub mod expiry;
pub mod gateway;
pub mod heap;
pub mod metrics;
pub mod origin;
pub mod outbox;
pub mod policy;
pub mod presence;
pub mod reload;
pub mod server;
pub mod session;
pub mod throttle;
pub mod webhook;

use std::io::Write;

/// Why `imgate serve` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot bind: {0}")]
    Bind(std::io::Error),
    #[error("cannot join the cluster: {0}")]
    Cluster(presence::redis::ClusterError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Installs the tracing subscriber (`RUST_LOG` filters; default `info`), writing to stderr.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The sdk_app_id of the development gateway.
pub const DEV_SDK_APP_ID: u64 = imgate_load::DEV_SDK_APP_ID;

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Raises the soft open-files limit to the hard one (contract §16) and, when `max_connections` +
/// `admin_max_connections` do not fit, says so and lowers `max_connections` to what fits.
fn fit_open_files(config: &mut config::Config) {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    if let Some((was, fits)) = config.fit_open_files(limit) {
        eprintln!(
            "imgate: the open-files limit is {limit}: max_connections {was} + admin_max_connections {} do not fit; max_connections lowered to {fits}",
            config.admin_max_connections
        );
        tracing::warn!(
            limit,
            fits,
            "max_connections lowered to fit the open-files limit"
        );
    }
}

/// Runs `imgate serve`: loads the config (or makes a development one), binds, prints the announce
/// lines on stdout, serves until ctrl-c or SIGTERM and drains.
pub fn serve_main(args: cli::ServeArgs) -> Result<(), ServeError> {
    let mut banner = Vec::new();
    let mut config = match &args.config {
        Some(path) => config::Config::load(path)?,
        None => {
            let key = random_hex(32);
            let token = random_hex(24);
            banner.push(format!(
                "development gateway: sdk_app_id {DEV_SDK_APP_ID}, key {key}"
            ));
            banner.push(format!(
                "mint a UserSig: imgate sig gen --sdk-app-id {DEV_SDK_APP_ID} --key {key} --user alice"
            ));
            banner.push(format!("admin token: {token}"));
            config::Config::development(DEV_SDK_APP_ID, key, token)
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(admin) = args.admin_listen {
        config.admin_listen = admin;
    }
    fit_open_files(&mut config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
        let server = server::Server::bind(config).await?;
        let ws = server.ws_url().map_err(ServeError::Bind)?;
        let admin = server.admin_addr().map_err(ServeError::Bind)?;
        // Before the announce lines: whoever reads them may send SIGTERM or SIGHUP at once.
        let shutdown = server::shutdown_signal();
        let server = server.reload_on(server::reload_signal());
        let mut out = std::io::stdout().lock();
        for line in &banner {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "listening on {ws}");
        let _ = writeln!(out, "admin listening on http://{admin}");
        let _ = writeln!(out, "console: http://{admin}/console");
        let _ = out.flush();
        drop(out);
        server.run(shutdown).await;
        Ok(())
    })
}
