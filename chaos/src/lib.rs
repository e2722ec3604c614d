//! `imgate-chaos`: the cluster chaos run (issue 13, item 5).
//!
//! One run: a `redis-server`, N `imgate serve` nodes in cluster mode, each talking to Redis through
//! its own TCP fault proxy ([`proxy`]), and many clients logging the same few users in on random
//! nodes ([`client`]). For `--secs` the seeded [`schedule`] SIGSTOPs and SIGCONTs nodes, SIGKILLs and
//! restarts them (a new process, so a new node id), and has the proxies delay, stall and cut the
//! Redis connections. Then the calm phase: faults off, every node up, clients stop acting and hold
//! what they have; the driver waits (bounded) for presence to converge, and the [`check`]er
//! confirms the invariants of contract §7, §8 and §12: the policy holds, every evicted socket got
//! `kicked_offline` then 4501 once and every kick is explained by a login, and presence equals the
//! open logged-in sockets. The summary ends with the seed and the command that replays the run.
//!
//! Map: [`cluster`] (processes, configs, admin calls), [`proxy`], [`schedule`], [`client`],
//! [`check`], [`policy`] (the policy the nodes run, as the checker needs it).
//!
//! What a SIGSTOPped node's sockets go through, by design (lease.rs, reconcile.rs): frozen longer
//! than `lease_ms`, the node is presumed dead; its sessions leave presence and other nodes' logins
//! no longer count them (a sweeper removes them). When it wakes, its heartbeat finds the lease
//! lapsed and it reconciles: each session still open is restored with its original login order,
//! and one that a newer login has since outranked loses and gets `kicked_offline` then 4501, like
//! any evicted socket. So the checker holds them to the same rules as every other socket. Half the
//! stops also hold the frozen node's sweep lock (as a survivor whose sweep failed midway leaves it
//! for 30 s): the node then wakes before anyone swept it, with its lapsed entries still in Redis,
//! some moved aside by same-instance logins elsewhere, and must still come back exactly once.
//! Sockets of a SIGKILLed process end without a close frame and are counted apart.

pub mod check;
pub mod client;
pub mod cluster;
pub mod policy;
pub mod proxy;
pub mod schedule;

use check::Presence;
use client::{Ctx, SocketLog};
use cluster::{Node, Redis, APP, KEY};
use schedule::{Action, Schedule};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "imgate-chaos", about = "The imgate cluster chaos run")]
pub struct Opts {
    /// The imgate binary the nodes run.
    #[arg(long, default_value = "target/release/imgate")]
    pub imgate: PathBuf,
    /// The redis-server binary.
    #[arg(long, default_value = "redis-server")]
    pub redis_server: String,
    /// Seconds of chaos (clients act, faults happen); the calm phase follows.
    #[arg(long, default_value_t = 180)]
    pub secs: u64,
    /// The seed of the whole schedule (default: from the clock; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 60)]
    pub clients: usize,
    /// Distinct users the clients share.
    #[arg(long, default_value_t = 20)]
    pub users: usize,
    /// At most this long for presence to converge after the chaos.
    #[arg(long, default_value_t = 60)]
    pub converge_secs: u64,
    /// Keep the run's directory (configs, node and Redis logs) even when it passes.
    #[arg(long)]
    pub keep: bool,
    /// Print the seed's schedule (every event, with its time) and exit without running.
    #[arg(long)]
    pub print_schedule: bool,
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub seed: u64,
    pub fingerprint: String,
    pub violations: Vec<String>,
    pub summary: String,
}

/// The chaos events carried out, by kind.
#[derive(Debug, Default)]
struct Done {
    stops: u64,
    kills: u64,
    stalls: u64,
    drops: u64,
    delays: u64,
    sweeps_held: u64,
}

/// Runs the whole thing; Err only when the harness itself could not run.
pub async fn run(opts: &Opts) -> Result<Outcome, String> {
    let seed = opts.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_000)
    });
    let schedule = Schedule::new(seed, Duration::from_secs(opts.secs), opts.nodes);
    let fingerprint = schedule.fingerprint();
    let [c_stop, c_kill, c_stall, c_drop, c_delay] = schedule.counts();
    println!(
        "chaos: seed {seed}, schedule {fingerprint}: {c_stop} stops, {c_kill} kills, {c_stall} stalls, {c_drop} drops, {c_delay} delay windows over {} s",
        opts.secs
    );
    if opts.print_schedule {
        let mut s = String::new();
        for (at, a) in &schedule.events {
            s.push_str(&format!("{:>8.3} s  {a:?}\n", at.as_secs_f64()));
        }
        return Ok(Outcome {
            seed,
            fingerprint,
            violations: Vec::new(),
            summary: s,
        });
    }
    let imgate = std::fs::canonicalize(&opts.imgate)
        .map_err(|e| format!("{}: {e}", opts.imgate.display()))?;
    let dir = std::env::temp_dir().join(format!("imgate-chaos-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    let mut redis = Redis::start(&opts.redis_server, &dir).await?;
    let mut nodes = Vec::new();
    for i in 0..opts.nodes {
        let proxy = proxy::FaultProxy::start(
            redis.addr(),
            schedule::sub_seed(seed, schedule::proxy_stream(i)),
        )
        .await
        .map_err(|e| format!("proxy {i}: {e}"))?;
        nodes.push(Node::start(i, &imgate, &dir, proxy).await?);
    }
    let nodes = Arc::new(nodes);
    println!(
        "chaos: redis-server on port {}, {} nodes, {} clients over {} users, logs in {}",
        redis.port,
        opts.nodes,
        opts.clients,
        opts.users,
        dir.display()
    );

    let users: Vec<String> = (0..opts.users).map(|i| format!("chaos-u{i:02}")).collect();
    let key = imgate_usersig::SigKey::new(KEY);
    let now_s = cluster::now_ms() / 1000;
    let sigs = users
        .iter()
        .map(|u| {
            let sig = imgate_usersig::generate(&key, APP, u, 2 * 86_400, now_s, None);
            (u.clone(), sig)
        })
        .collect();
    let start = Instant::now();
    let act_until = start + Duration::from_secs(opts.secs);
    let ctx = Arc::new(Ctx {
        seed,
        nodes: Arc::clone(&nodes),
        users,
        sigs,
        act_until,
        views: Default::default(),
        next_socket: Default::default(),
        holding: Default::default(),
        connect_failures: Default::default(),
        stored_at_end: Default::default(),
    });
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let clients: Vec<_> = (0..opts.clients)
        .map(|i| tokio::spawn(client::run(Arc::clone(&ctx), i, done_rx.clone())))
        .collect();

    // The chaos itself.
    let mut done = Done::default();
    let mut followups = Vec::new();
    let mut harness_errors = Vec::new();
    for (at, action) in &schedule.events {
        tokio::time::sleep_until(start + *at).await;
        match *action {
            Action::Stop {
                node,
                for_,
                sweep_held,
            } => {
                if sweep_held {
                    if let Some(id) = nodes[node].current_id() {
                        let ms = for_.as_millis() as u64 + 1_000;
                        if redis.hold_sweep_lock(&id, ms).await {
                            done.sweeps_held += 1;
                        }
                    }
                }
                if nodes[node].stop() {
                    done.stops += 1;
                    let nodes = Arc::clone(&nodes);
                    followups.push(tokio::spawn(async move {
                        tokio::time::sleep(for_).await;
                        nodes[node].cont();
                        Ok(())
                    }));
                }
            }
            Action::Kill { node, down } => {
                if nodes[node].kill().await {
                    done.kills += 1;
                    let nodes = Arc::clone(&nodes);
                    followups.push(tokio::spawn(async move {
                        tokio::time::sleep(down).await;
                        nodes[node].spawn().await
                    }));
                }
            }
            Action::Stall { node, for_ } => {
                nodes[node].proxy.stall(for_);
                done.stalls += 1;
            }
            Action::Drop { node } => {
                nodes[node].proxy.drop_connections();
                done.drops += 1;
            }
            Action::Delay { node, max, for_ } => {
                nodes[node].proxy.delay(max, for_);
                done.delays += 1;
            }
        }
    }
    tokio::time::sleep_until(act_until).await;

    // The calm phase.
    println!("chaos: {} s of chaos done; calm phase", opts.secs);
    for n in nodes.iter() {
        n.proxy.calm();
    }
    for f in followups {
        if let Ok(Err(e)) = f.await {
            harness_errors.push(e);
        }
    }
    let mut violations = Vec::new();
    for n in nodes.iter() {
        if n.endpoint().is_some() && !n.alive() {
            violations.push(format!(
                "node {} exited by itself (see its .err log)",
                n.index
            ));
        }
        if let Err(e) = n.ensure_up().await {
            harness_errors.push(e);
        }
    }
    let hold_deadline = Instant::now() + client::ANSWER_WAIT * 2;
    while ctx.holding.load(Ordering::SeqCst) < opts.clients && Instant::now() < hold_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calm_at = Instant::now();
    let (presence_violations, converged_after) = converge(
        &nodes,
        &redis,
        &ctx,
        Duration::from_secs(opts.converge_secs),
    )
    .await;
    violations.extend(presence_violations);
    for n in nodes.iter() {
        if !n.alive() {
            violations.push(format!(
                "node {} exited by itself (see its .err log)",
                n.index
            ));
        }
    }
    let final_sessions = ctx.views.lock().map(|v| v.len()).unwrap_or(0);
    let stored_at_end = ctx.stored_at_end.load(Ordering::Relaxed);

    let _ = done_tx.send(true);
    let mut logs: Vec<SocketLog> = Vec::new();
    for c in clients {
        match tokio::time::timeout(Duration::from_secs(30), c).await {
            Ok(Ok(l)) => logs.extend(l),
            _ => harness_errors.push("a client did not finish".into()),
        }
    }
    let killed_at: Vec<Vec<Option<u64>>> = nodes.iter().map(|n| n.history().killed_at).collect();
    let (log_violations, st) = check::check_logs(&logs, &killed_at);
    let stops: Vec<_> = nodes.iter().map(|n| n.history().stops).collect();
    let (frozen, kicked_on_waking) = check::frozen(&logs, &stops);
    let node_log = node_log_counts(&dir);
    violations.extend(log_violations);
    violations.extend(harness_errors.iter().map(|e| format!("harness: {e}")));

    for n in nodes.iter() {
        n.terminate().await;
    }
    redis.stop().await;

    let mut s = String::new();
    use std::fmt::Write;
    let _ = writeln!(
        s,
        "== imgate cluster chaos run: seed {seed}, schedule {fingerprint}"
    );
    let _ = writeln!(
        s,
        "setup:      {} nodes (lease {} ms, heartbeat {} ms, reconcile {} s, redis timeout {} ms), {} clients, {} users, policy triple + web/mac cap 2",
        opts.nodes,
        cluster::LEASE_MS,
        cluster::HEARTBEAT_MS,
        cluster::RECONCILE_SECS,
        cluster::REDIS_TIMEOUT_MS,
        opts.clients,
        opts.users
    );
    let _ = writeln!(
        s,
        "duration:   {} s of chaos, then calm; converged {}",
        opts.secs,
        match converged_after {
            Some(d) => format!("{:.1} s after the calm phase began", d.as_secs_f64()),
            None => format!("NOT within {} s", opts.converge_secs),
        }
    );
    let _ = writeln!(
        s,
        "chaos:      {} SIGSTOP/SIGCONT ({} with the node's sweep held off), {} SIGKILL+restart; proxies: {} stalls, {} drops, {} delay windows",
        done.stops, done.sweeps_held, done.kills, done.stalls, done.drops, done.delays
    );
    let (mut chunks, mut delayed, mut cut, mut conns) = (0, 0, 0, 0);
    for n in nodes.iter() {
        let p = n.proxy.stats();
        chunks += p.chunks;
        delayed += p.delayed_chunks;
        cut += p.connections_cut;
        conns += p.connections;
    }
    let _ = writeln!(
        s,
        "faults:     {delayed} of {chunks} chunks delayed, {cut} Redis connections cut (of {conns} opened through the proxies)"
    );
    let _ = writeln!(
        s,
        "nodes:      {} lease lapses noticed (every session decided again), {} dead nodes swept, {} reconciles triggered; {frozen} sockets frozen with their node, {kicked_on_waking} of them kicked on waking (outranked meanwhile)",
        node_log.lapsed, node_log.swept, node_log.reconciles
    );
    let ok = st.login_codes.get(&0).copied().unwrap_or(0);
    let failed: Vec<String> = st
        .login_codes
        .iter()
        .filter(|(c, _)| **c != 0)
        .map(|(c, n)| format!("{n} x {c}"))
        .collect();
    let _ = writeln!(
        s,
        "logins:     {} attempted ({} re-logins in place, {} account switches), {ok} ok, failed: {}, {} never answered (kicked first, or the node died)",
        st.logins,
        st.relogins,
        st.switches,
        if failed.is_empty() { "none".into() } else { failed.join(", ") },
        st.logins - st.login_codes.values().sum::<u64>()
    );
    let kicks: Vec<String> = st.kicks.iter().map(|(r, n)| format!("{n} {r}")).collect();
    let _ = writeln!(
        s,
        "kicks:      {} kicked_offline ({}), {} closes 4501",
        st.kicks.values().sum::<u64>(),
        if kicks.is_empty() {
            "none".into()
        } else {
            kicks.join(", ")
        },
        st.closes_4501
    );
    let _ = writeln!(
        s,
        "sockets:    {} opened, {} logouts, {} closed by the client, {} dropped by the client, {} died with a killed node, {} connect failures; {final_sessions} logged in at the end ({stored_at_end} entries in Redis)",
        st.sockets,
        st.logouts,
        st.client_closes,
        st.client_drops,
        st.died_with_node,
        ctx.connect_failures.load(Ordering::Relaxed)
    );
    let _ = writeln!(s, "violations: {}", violations.len());
    for v in violations.iter().take(40) {
        let _ = writeln!(s, "  - {v}");
    }
    if violations.len() > 40 {
        let _ = writeln!(s, "  ... and {} more", violations.len() - 40);
    }
    let _ =
        writeln!(
        s,
        "replay:     {} --imgate {} --secs {} --seed {seed} --nodes {} --clients {} --users {}{}",
        std::env::args().next().unwrap_or_else(|| "imgate-chaos".into()),
        opts.imgate.display(),
        opts.secs,
        opts.nodes,
        opts.clients,
        opts.users,
        match (opts.nodes, opts.clients, opts.users) {
            (3, 60, 20) => format!("   (or: scripts/chaos.sh {} {seed})", opts.secs),
            (3, 24, 8) => format!("   (or: CHAOS_SMOKE=1 scripts/chaos.sh {} {seed})", opts.secs),
            _ => String::new(),
        }
    );
    let _ = calm_at;
    if violations.is_empty() && !opts.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        let _ = writeln!(s, "logs kept:  {}", dir.display());
    }
    Ok(Outcome {
        seed,
        fingerprint,
        violations,
        summary: s,
    })
}

/// What the nodes' own logs say happened (counted from their stderr, `RUST_LOG=info`).
#[derive(Debug, Default)]
struct NodeLog {
    lapsed: u64,
    swept: u64,
    reconciles: u64,
}

fn node_log_counts(dir: &std::path::Path) -> NodeLog {
    let mut c = NodeLog::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return c;
    };
    for e in entries.flatten() {
        if e.path().extension().is_some_and(|x| x == "err") {
            let text = strip_ansi(&std::fs::read_to_string(e.path()).unwrap_or_default());
            for line in text.lines() {
                if line.contains("reconciling") {
                    c.reconciles += 1;
                    if line.contains("lapsed=true") {
                        c.lapsed += 1;
                    }
                }
                if line.contains("swept a dead node") {
                    c.swept += 1;
                }
            }
        }
    }
    c
}

/// The text without ANSI colour sequences (`ESC [ ... letter`), which tracing adds to fields.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Polls every node's presence and the clients' view until they agree twice, one reconcile period
/// apart, or `within` ends; returns the violations of the last look and when it converged.
async fn converge(
    nodes: &[Node],
    redis: &Redis,
    ctx: &Ctx,
    within: Duration,
) -> (Vec<String>, Option<Duration>) {
    let users = ctx.users.len();
    let began = Instant::now();
    let deadline = began + within;
    let mut first_clean: Option<Instant> = None;
    let mut first_look = true;
    loop {
        let mut answers = Vec::new();
        for n in nodes {
            answers.push(online(n, users).await);
        }
        let views: Vec<client::View> = ctx
            .views
            .lock()
            .map(|v| v.values().cloned().collect())
            .unwrap_or_default();
        let mut v = check::check_presence(&answers, &views);
        let stored = redis.entries(&ctx.users).await;
        if let Ok(s) = &stored {
            ctx.stored_at_end.store(s.len(), Ordering::Relaxed);
        }
        v.extend(check::check_stored(&stored, &views, cluster::node_id));
        let now = Instant::now();
        if first_look && !v.is_empty() {
            // What the calm phase began with: how far from converged the chaos left the cluster.
            println!(
                "chaos: first look after the chaos: {} difference(s), e.g. {}",
                v.len(),
                v[0].chars().take(300).collect::<String>()
            );
        }
        first_look = false;
        if v.is_empty() {
            match first_clean {
                Some(t) if now - t >= Duration::from_secs(cluster::RECONCILE_SECS + 1) => {
                    return (v, Some(t - began));
                }
                Some(_) => {}
                None => first_clean = Some(now),
            }
        } else {
            first_clean = None;
        }
        if now >= deadline {
            return (v, None);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One node's `/v1/online` for every user.
async fn online(node: &Node, users: usize) -> Result<Presence, String> {
    let admin = node.admin_url().ok_or("node down")?;
    let mut path = format!("/v1/online?sdk_app_id={APP}");
    for i in 0..users {
        path.push_str(&format!("&user_id=chaos-u{i:02}"));
    }
    let (status, body) = cluster::admin_get(&admin, &path, Duration::from_secs(5)).await?;
    if status != 200 {
        return Err(format!("status {status}: {body}"));
    }
    let mut p: Presence = BTreeMap::new();
    for u in body["users"].as_array().ok_or("no users array")? {
        let user = u["user_id"].as_str().unwrap_or("").to_owned();
        let list = p.entry(user).or_default();
        for i in u["instances"].as_array().into_iter().flatten() {
            list.push((
                i["platform"].as_str().unwrap_or("?").to_owned(),
                i["instance_id"].as_str().map(str::to_owned),
            ));
        }
    }
    Ok(p)
}
