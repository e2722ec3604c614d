//! `imgate load --mode soak`: hours of a day's traffic in minutes, every outcome checked.
//!
//! What it owns: a population of `--users` users, each with two slots under the `dual` policy (one
//! native device of android/iphone/ipad/windows/mac/linux, one web tab: contract §8 with the default
//! caps of 1), filled up to `--sessions` sockets at `--concurrency`, then churned for `--secs` at
//! about `--rate` operations per second by `--workers` tasks: logins into free slots, logins that
//! take an occupied slot (the old socket must read `kicked_offline` `multi_device` or `replaced` and
//! close 4501), logins with short tickets (`--short-min`..`--short-max` s: `user_sig_expired` no later
//! than 1.5 s after `expire_at`, then status 3 on the open socket), client closes (echo 1000), dropped
//! sockets (a reset, no close frame; the session must leave `/v1/online`), logouts, `send` between
//! users and `/v1/push` (`delivered` = the recipient's sockets, each of which must read the message),
//! admin kicks of one device and of a whole user (4502; the user's older UserSigs then answer 70052).
//! Then every client leaves, and the run checks that `/v1/online` lists nobody and the `/metrics`
//! gauges are back to 0.
//!
//! Every outcome is counted as expected (by kind) or unexpected (by what was seen instead); the run
//! fails on any unexpected one. One user is worked on by one operation at a time (a lock per user,
//! taken with `try_lock`), so that what the gateway must answer is known exactly: the model of who
//! holds which slot is the user's, and no two operations race on it.
//!
//! What it does not own: the gateway's memory, which `scripts/soak.sh` samples from outside.
//!
//! The parts: `outcome` classifies and tallies what the sockets see, `client` is the task and
//! handle of one client socket (and the inbox of messages in flight), `admin` the HTTP client of
//! the admin listener, `churn` the operations and their pacing, `run` the run itself (fill,
//! churn, leave, the final checks and the report). This file holds the state the tasks share and
//! the login of a fresh socket.

mod admin;
mod churn;
mod client;
mod outcome;
mod run;

pub(crate) use run::run_soak;

/// The options of `imgate load --mode soak` (flattened into [`LoadArgs`]: the flags keep their
/// names).
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Seconds of churn after the fill
    #[arg(long, default_value_t = 600)]
    pub secs: u64,
    /// Churn operations per second, in all
    #[arg(long, default_value_t = 300)]
    pub rate: u64,
    /// Tasks running churn operations at once
    #[arg(long, default_value_t = 32)]
    pub workers: usize,
    /// Seed of the choices (users, operations, platforms, instance ids)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The admin listener (`http://HOST:PORT`), for kicks, pushes and the final checks
    #[arg(long)]
    pub admin_url: Option<String>,
    /// The admin token
    #[arg(long)]
    pub admin_token: Option<String>,
    /// Another endpoint of the same gateway, another node of a cluster (repeatable): sockets open
    /// round-robin over `--url` and these
    #[arg(long = "also-url", value_name = "URL")]
    pub also_urls: Vec<String>,
    /// The admin listener of another node (repeatable): its `/metrics` gauges must be back to 0
    /// at the end too (kicks, pushes and `/v1/online` go to `--admin-url`)
    #[arg(long = "also-admin-url", value_name = "URL")]
    pub also_admin_urls: Vec<String>,
    /// Shortest lifetime of a short ticket, in seconds
    #[arg(long, default_value_t = 20)]
    pub short_min: u64,
    /// Longest lifetime of a short ticket, in seconds
    #[arg(long, default_value_t = 60)]
    pub short_max: u64,
    /// How late past the contract's 1.5 s a `user_sig_expired` may be read (the
    /// client's own scheduling on a loaded machine), in milliseconds
    #[arg(long, default_value_t = 500)]
    pub expiry_slack_ms: u64,
    /// A progress line on stderr this often (0: none)
    #[arg(long, default_value_t = 10)]
    pub progress_secs: u64,
}

use super::*;
use admin::Admin;
use churn::Rng;
use client::{client_task, read_response, Client, Cmd, Expect, Inbox};
use imgate_proto::{KickReason, Platform, ResponseData};
use outcome::{classify_response, Outcome, Tally};
use std::sync::atomic::AtomicU64;
use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex, OwnedMutexGuard};

/// The platforms of the `dual` policy's native group (slot 0); slot 1 is web.
const NATIVE: [Platform; 6] = [
    Platform::Android,
    Platform::Iphone,
    Platform::Ipad,
    Platform::Windows,
    Platform::Mac,
    Platform::Linux,
];
/// How long a kick, a close echo or a message push may take to arrive before it counts as missing.
const EVENT_WAIT: Duration = Duration::from_secs(10);
/// How long a dropped socket's session may stay in `/v1/online` (it should leave at once).
const DROP_WAIT: Duration = Duration::from_secs(5);
/// Instance ids per user and slot: small, so that a takeover sometimes has the same id (`replaced`).
const INSTANCES: u64 = 3;
/// Users tried for a free slot when the open sockets are short of the target.
const FREE_SLOT_TRIES: usize = 8;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One user's slots: 0 native, 1 web.
#[derive(Default)]
struct UserState {
    slots: [Option<Client>; 2],
    /// The second of the last whole-user admin kick: UserSigs minted up to it answer 70052.
    revoked_at: u64,
}

/// Everything the soak's tasks share.
struct Soak {
    /// The endpoints (one a node), used round-robin.
    targets: Vec<Arc<Target>>,
    admin: Option<Admin>,
    /// The other nodes' admin listeners: only for the final gauges.
    other_admins: Vec<Admin>,
    app: u64,
    key: SigKey,
    users: Vec<Arc<AsyncMutex<UserState>>>,
    tally: Tally,
    inbox: Inbox,
    /// Open client sockets (logged in or not).
    open: AtomicUsize,
    /// Sockets opened so far (spreads them over the source addresses).
    opened: AtomicUsize,
    /// Short-ticket lifecycles running.
    shorts: AtomicUsize,
    max_sockets: usize,
    max_shorts: usize,
    short_secs: (u64, u64),
    slack_ms: u64,
    long_expire: u64,
    prefix: String,
    /// Requests' `seq`.
    seq: AtomicU64,
    /// How long after `expire_at` each `user_sig_expired` was read.
    expiry_after: Samples,
}

impl Soak {
    fn user_id(&self, u: usize) -> String {
        format!("{}{u}", self.prefix)
    }

    fn seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A UserSig minted now (after the user's last revocation second: waits for the next second).
    async fn mint(&self, user: &str, revoked_at: u64, expire: u64) -> (String, u64) {
        loop {
            let now = now_secs();
            if now > revoked_at {
                let sig = usersig::generate(&self.key, self.app, user, expire, now, None);
                return (sig, now);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn login_msg(&self, user: &str, sig: String, p: Platform, instance: &str) -> ClientMsg {
        ClientMsg::Login {
            seq: self.seq(),
            sdk_app_id: self.app,
            user_id: user.to_owned(),
            user_sig: sig,
            platform: p.as_str().to_owned(),
            instance_id: Some(instance.to_owned()),
        }
    }

    /// Checks a login's answer: code 0 with the data of this login.
    fn check_login(
        &self,
        got: &Result<ServerMsg, Fail>,
        user: &str,
        p: Platform,
        expire_at: u64,
    ) -> Outcome {
        match got {
            Ok(ServerMsg::Response {
                code: 0,
                data:
                    Some(ResponseData::Login {
                        user_id,
                        platform,
                        expire_at: e,
                        ..
                    }),
                ..
            }) if user_id == user && *platform == p && *e == expire_at => {
                Outcome::Expected("login")
            }
            Ok(ServerMsg::Response { code: 0, data, .. }) => {
                Outcome::Unexpected(format!("login: code 0 with wrong data {data:?}"))
            }
            other => classify_response("login", 0, other),
        }
    }

    /// Opens a socket and logs it in; on success the client (its task reads from then on).
    async fn open_login(
        self: &Arc<Self>,
        user: &str,
        p: Platform,
        instance: &str,
        sig: (String, u64),
        expire: u64,
        want_code: u32,
    ) -> Result<Client, Outcome> {
        let n = self.opened.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        let attempt = async {
            let mut ws = self.targets[n % self.targets.len()].open(n).await?;
            let msg = self.login_msg(user, sig.0, p, instance);
            ws.send(Message::text(
                String::from_utf8(encode_client(Encoding::Json, &msg)).expect("JSON is UTF-8"),
            ))
            .await
            .map_err(|e| format!("send: {}", short(&e.to_string())))?;
            let r = read_response(&mut ws).await;
            Ok::<_, Fail>((ws, r))
        };
        let (ws, got) = match timeout(EVENT_WAIT, attempt).await {
            Err(_) => {
                self.open.fetch_sub(1, Ordering::Relaxed);
                return Err(Outcome::Unexpected(
                    "connect+login: no answer within 10 s".into(),
                ));
            }
            Ok(Err(f)) => {
                self.open.fetch_sub(1, Ordering::Relaxed);
                return Err(Outcome::Unexpected(f));
            }
            Ok(Ok(x)) => x,
        };
        let outcome = if want_code == 0 {
            self.check_login(&got, user, p, sig.1 + expire)
        } else {
            classify_response("stale UserSig refused (70052)", want_code, &got)
        };
        let (cmd, rx) = mpsc::channel(4);
        let expect = Arc::new(Mutex::new(Expect::default()));
        tokio::spawn(client_task(ws, rx, Arc::clone(&expect), Arc::clone(self)));
        let client = Client {
            platform: p,
            instance: instance.to_owned(),
            cmd,
            expect,
        };
        match outcome {
            Outcome::Expected(k) if want_code == 0 => {
                self.tally.ok(k);
                Ok(client)
            }
            o => {
                let _ = client.cmd.send(Cmd::Drop).await;
                Err(o)
            }
        }
    }

    /// Drops every client of a user after an unexpected outcome, so that the model stays true.
    async fn forget(&self, st: &mut UserState) {
        for c in st.slots.iter_mut().filter_map(Option::take) {
            let _ = c.cmd.send(Cmd::Drop).await;
        }
    }

    fn platform_for(&self, rng: &mut Rng, slot: usize) -> Platform {
        if slot == 1 {
            Platform::Web
        } else {
            NATIVE[rng.below(NATIVE.len() as u64) as usize]
        }
    }

    fn instance_for(rng: &mut Rng, slot: usize) -> String {
        format!("s{slot}-i{}", rng.below(INSTANCES))
    }

    fn can_add(&self) -> bool {
        self.open.load(Ordering::Relaxed) < self.max_sockets
    }

    /// Whether the open sockets are more than 2% short of the target (logins weigh more then).
    fn short_of(&self) -> bool {
        self.open.load(Ordering::Relaxed) < self.max_sockets - self.max_sockets / 50
    }

    /// A random user whose lock is free. Short of the target, up to [`FREE_SLOT_TRIES`] users are
    /// tried for one with a free slot, so that logins keep up with the closes and kicks.
    fn choose_user(&self, rng: &mut Rng) -> Option<(usize, OwnedMutexGuard<UserState>)> {
        let tries = if self.short_of() { FREE_SLOT_TRIES } else { 1 };
        let mut found = None;
        for _ in 0..tries {
            let u = rng.below(self.users.len() as u64) as usize;
            let Ok(g) = Arc::clone(&self.users[u]).try_lock_owned() else {
                continue;
            };
            if g.slots.iter().any(Option::is_none) || tries == 1 {
                return Some((u, g));
            }
            found.get_or_insert((u, g));
        }
        found
    }
}
