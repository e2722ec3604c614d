//! The run: fill the slots, churn, let everyone leave, check that the gateway is empty, and report
//! (JSON and text); a progress line on stderr meanwhile.

use super::*;
use admin::{still_online, wait_gauges_zero};
use churn::Pace;

pub(crate) async fn run_soak(args: &LoadArgs, targets: Vec<Arc<Target>>) -> Report {
    let sessions = args.sessions;
    let users = if args.users == 0 {
        sessions * 3 / 5 + 1
    } else {
        args.users
    };
    let (admin, other_admins) = match (&args.soak.admin_url, &args.soak.admin_token) {
        (Some(url), Some(token)) => {
            let mut others = Vec::new();
            for u in &args.soak.also_admin_urls {
                match Admin::resolve(u, token).await {
                    Some(a) => others.push(a),
                    None => {
                        let error = format!("--also-admin-url {u}: no IPv4 address");
                        return Report {
                            ok: false,
                            json: json!({ "mode": "soak", "error": error }),
                            text: format!("soak: {error}\n"),
                        };
                    }
                }
            }
            (Admin::resolve(url, token).await, others)
        }
        _ => (None, Vec::new()),
    };
    let have_admin = admin.is_some();
    let soak = Arc::new(Soak {
        targets,
        admin,
        other_admins,
        app: args.sdk_app_id,
        key: SigKey::new(&args.key),
        users: (0..users).map(|_| Arc::default()).collect(),
        tally: Tally::default(),
        inbox: Inbox::default(),
        open: AtomicUsize::new(0),
        opened: AtomicUsize::new(0),
        shorts: AtomicUsize::new(0),
        max_sockets: sessions,
        max_shorts: (sessions / 20).max(1),
        short_secs: (
            args.soak.short_min,
            args.soak.short_max.max(args.soak.short_min),
        ),
        slack_ms: args.soak.expiry_slack_ms,
        long_expire: args.expire,
        prefix: args.user_prefix.clone(),
        seq: AtomicU64::new(1),
        expiry_after: Samples::default(),
    });
    let t0 = Instant::now();
    let mut progress = Progress::new(args.soak.progress_secs, t0);

    // Fill: `sessions` logins into the users' slots, at `--concurrency`, with UserSigs minted
    // before the clock starts (so that logins/s and CPU per login measure the gateway).
    let now = now_secs();
    let fill_sigs: Arc<Vec<String>> = Arc::new(
        (0..sessions)
            .map(|k| {
                let user = soak.user_id(k % users);
                usersig::generate(&soak.key, soak.app, &user, soak.long_expire, now, None)
            })
            .collect(),
    );
    let before = args.server_pid.and_then(proc_sample);
    let fill_start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut fill = tokio::task::JoinSet::new();
    for w in 0..args.concurrency.min(sessions.max(1)) {
        let (soak, next, sigs) = (Arc::clone(&soak), Arc::clone(&next), Arc::clone(&fill_sigs));
        let mut rng = Rng::new(args.soak.seed ^ (0xF111 + w as u64));
        fill.spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= sessions {
                    break;
                }
                let (u, slot) = (k % soak.users.len(), (k / soak.users.len()).min(1));
                let mut g = Arc::clone(&soak.users[u]).lock_owned().await;
                if g.slots[slot].is_some() {
                    continue;
                }
                let user = soak.user_id(u);
                let (p, i) = (
                    soak.platform_for(&mut rng, slot),
                    Soak::instance_for(&mut rng, slot),
                );
                let sig = (sigs[k].clone(), now);
                match soak
                    .open_login(&user, p, &i, sig, soak.long_expire, 0)
                    .await
                {
                    Ok(c) => g.slots[slot] = Some(c),
                    Err(o) => {
                        soak.tally.add(o);
                    }
                }
            }
        });
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = fill.join_next() => if r.is_none() { break },
            _ = tick.tick() => progress.tick(&soak, "fill"),
        }
    }
    let fill_secs = fill_start.elapsed().as_secs_f64();
    let filled = soak.open.load(Ordering::Relaxed);
    let after_fill = args.server_pid.and_then(proc_sample);
    drop(fill_sigs);
    let fill_json = match (before, after_fill) {
        (Some(b), Some(a)) => json!({
            "logins_per_sec": (filled as f64 / fill_secs.max(0.001)).round(),
            "server_cpu_per_login_us": a.cpu_ms.saturating_sub(b.cpu_ms) * 1000 / filled.max(1) as u64,
            "rss_before_kb": b.rss_kb,
            "rss_filled_kb": a.rss_kb,
            "rss_per_session_bytes": a.rss_kb.saturating_sub(b.rss_kb) * 1024 / filled.max(1) as u64,
        }),
        _ => json!({ "logins_per_sec": (filled as f64 / fill_secs.max(0.001)).round() }),
    };
    eprintln!(
        "soak: filled {filled} sockets in {fill_secs:.1} s; churning for {} s",
        args.soak.secs
    );

    // Churn.
    let churn_start = Instant::now();
    let end = churn_start + Duration::from_secs(args.soak.secs);
    // Short tickets launched after this could not expire before the churn ends.
    let last_short = end.checked_sub(Duration::from_secs(args.soak.short_max + 3));
    let pace = Arc::new(Pace {
        start: churn_start,
        interval_ns: 1_000_000_000 / args.soak.rate.max(1),
        next: AtomicU64::new(0),
    });
    let ops = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..args.soak.workers.max(1) {
        let (soak, pace, ops) = (Arc::clone(&soak), Arc::clone(&pace), Arc::clone(&ops));
        let mut rng = Rng::new(args.soak.seed.wrapping_mul(0x100_0001) ^ w as u64);
        workers.spawn(async move {
            let mut shorts = tokio::task::JoinSet::new();
            while Instant::now() < end {
                pace.wait().await;
                if Instant::now() >= end {
                    break;
                }
                let allow_short = last_short.is_some_and(|t| Instant::now() < t);
                let Some((u, g)) = soak.choose_user(&mut rng) else {
                    continue;
                };
                soak.run_op(&mut rng, u, g, &mut shorts, allow_short).await;
                ops.fetch_add(1, Ordering::Relaxed);
                while shorts.try_join_next().is_some() {}
            }
            while shorts.join_next().await.is_some() {}
        });
    }
    loop {
        tokio::select! {
            r = workers.join_next() => if r.is_none() { break },
            _ = tick.tick() => progress.tick(&soak, "churn"),
        }
    }
    let churn_secs = churn_start.elapsed().as_secs_f64();
    let peak_open = soak.open.load(Ordering::Relaxed);

    // Everyone leaves: three in four close, one in four drops the connection.
    let leave_start = Instant::now();
    let mut leave = tokio::task::JoinSet::new();
    for (u, m) in soak.users.iter().enumerate() {
        let (soak, m) = (Arc::clone(&soak), Arc::clone(m));
        leave.spawn(async move {
            let mut g = m.lock_owned().await;
            for (s, c) in g.slots.iter_mut().enumerate() {
                let Some(c) = c.take() else { continue };
                if (u + s) % 4 == 3 {
                    let _ = c.cmd.send(Cmd::Drop).await;
                    soak.tally.ok("client dropped (no close frame)");
                } else {
                    soak.tally.add(c.close().await);
                }
            }
        });
        if leave.len() >= args.concurrency.max(1) {
            leave.join_next().await;
        }
    }
    while leave.join_next().await.is_some() {}
    // The client tasks end once their sockets are closed.
    let drained = Instant::now() + EVENT_WAIT;
    while soak.open.load(Ordering::Relaxed) > 0 && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leave_secs = leave_start.elapsed().as_secs_f64();
    let client_open = soak.open.load(Ordering::Relaxed);
    if client_open > 0 {
        soak.tally.bad(format!(
            "{client_open} client sockets still open after leaving"
        ));
    }

    // The gateway must be empty: /v1/online lists nobody, the gauges read 0.
    let (online, gauges_end) = match &soak.admin {
        None => (None, None),
        Some(admin) => {
            let online = still_online(admin, soak.app, &soak.prefix, users).await;
            match &online {
                Ok(0) => {}
                Ok(n) => soak
                    .tally
                    .bad(format!("{n} users still online after everyone left")),
                Err(f) => soak.tally.bad(f.clone()),
            }
            // Every node's gauges, summed (one node: its own).
            let mut sum: Option<BTreeMap<&'static str, i64>> = Some(BTreeMap::new());
            for (i, a) in std::iter::once(admin).chain(&soak.other_admins).enumerate() {
                match wait_gauges_zero(a).await {
                    Ok(g) => {
                        if !g.values().all(|&v| v == 0) {
                            soak.tally.bad(format!(
                                "gauges of node {} not back to 0 after 10 s: {g:?}",
                                i + 1
                            ));
                        }
                        if let Some(sum) = &mut sum {
                            for (k, v) in g {
                                *sum.entry(k).or_default() += v;
                            }
                        }
                    }
                    Err(f) => {
                        soak.tally.bad(f);
                        sum = None;
                    }
                }
            }
            (online.ok(), sum)
        }
    };

    let expected = soak.tally.expected.snapshot();
    let unexpected = soak.tally.unexpected.snapshot();
    let ops = ops.load(Ordering::Relaxed);
    let json = json!({
        "mode": "soak",
        "url": args.url,
        "also_urls": args.soak.also_urls,
        "sessions": sessions,
        "users": users,
        "seed": args.soak.seed,
        "filled": filled,
        "fill_secs": round3(fill_secs),
        "fill": fill_json,
        "expiry_after_expire_at_us": soak.expiry_after.summary().json(),
        "churn_secs": round3(churn_secs),
        "churn_ops": ops,
        "ops_per_sec": (ops as f64 / churn_secs.max(0.001)).round(),
        "open_at_churn_end": peak_open,
        "leave_secs": round3(leave_secs),
        "sockets_opened": soak.opened.load(Ordering::Relaxed),
        "expected": expected,
        "unexpected": unexpected,
        "unexpected_total": unexpected.values().sum::<u64>(),
        "users_online_at_end": online,
        "gauges_at_end": gauges_end,
        "admin_checks": have_admin,
    });
    let mut text = format!(
        "soak: {sessions} sockets over {users} users (seed {}), filled {filled} in {fill_secs:.1} s, \
         churned {churn_secs:.0} s ({ops} operations, {:.0}/s), {} sockets opened in all\n",
        args.soak.seed,
        ops as f64 / churn_secs.max(0.001),
        soak.opened.load(Ordering::Relaxed),
    );
    text.push_str("expected outcomes:\n");
    for (k, v) in &expected {
        text.push_str(&format!("  {v:>9}  {k}\n"));
    }
    text.push_str(&format!(
        "user_sig_expired read after expire_at: {}\n",
        soak.expiry_after.summary().text()
    ));
    push_errors(&mut text, "unexpected outcomes", &unexpected);
    text.push_str(&format!(
        "after everyone left: users online {}, gauges {}\n",
        online.map_or("(no admin API)".into(), |n| n.to_string()),
        gauges_end.map_or("(no admin API)".into(), |g| format!("{g:?}")),
    ));
    Report {
        ok: unexpected.is_empty() && have_admin,
        json,
        text,
    }
}

/// A line on stderr every `--progress-secs` (0: none).
struct Progress {
    every: Option<Duration>,
    start: Instant,
    last: Instant,
}

impl Progress {
    fn new(secs: u64, start: Instant) -> Progress {
        Progress {
            every: (secs > 0).then(|| Duration::from_secs(secs)),
            start,
            last: start,
        }
    }
    fn tick(&mut self, soak: &Soak, phase: &str) {
        let Some(every) = self.every else { return };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let unexpected: u64 = soak.tally.unexpected.snapshot().values().sum();
        eprintln!(
            "soak: {:>5.0} s {phase}: {} open, {} opened, {} short tickets running, {unexpected} unexpected",
            self.start.elapsed().as_secs_f64(),
            soak.open.load(Ordering::Relaxed),
            soak.opened.load(Ordering::Relaxed),
            soak.shorts.load(Ordering::Relaxed),
        );
    }
}
