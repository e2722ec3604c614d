//! `imgate load --mode login`: open, log in and hold `--sessions` sessions at `--concurrency`;
//! logins/s, latency percentiles and errors by kind.

use super::*;

pub(crate) fn user_name(args: &LoadArgs, prefix: &str, i: usize) -> String {
    let n = if args.users == 0 { i } else { i % args.users };
    format!("{}{prefix}{n}", args.user_prefix)
}

pub(crate) async fn run_login(args: &LoadArgs, target: Arc<Target>) -> Report {
    let n = args.sessions;
    let key = SigKey::new(&args.key);
    let now = now_secs();
    // Minted up front so that the connect phase measures the server, not the generator's zlib.
    let frames: Arc<Vec<String>> = Arc::new(
        (0..n)
            .map(|i| login_frame(args, &key, &user_name(args, "", i), now))
            .collect(),
    );
    let errors = Arc::new(Errors::default());
    let setup = Arc::new(Samples::default());
    let login = Arc::new(Samples::default());
    let held = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(Errors::default());
    let next = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = watch::channel(false);

    let before = args.server_pid.and_then(proc_sample);
    let mark = CpuMark::now();
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.min(n.max(1)) {
        let (target, frames, errors, setup, login, held, dropped, next, release) = (
            Arc::clone(&target),
            Arc::clone(&frames),
            Arc::clone(&errors),
            Arc::clone(&setup),
            Arc::clone(&login),
            Arc::clone(&held),
            Arc::clone(&dropped),
            Arc::clone(&next),
            release_rx.clone(),
        );
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= frames.len() {
                    break;
                }
                let t0 = Instant::now();
                let attempt = async {
                    let mut ws = target.open(i).await?;
                    let t1 = Instant::now();
                    target.login(&mut ws, &frames[i]).await?;
                    Ok::<_, Fail>((ws, t1.elapsed()))
                };
                match timeout(target.deadline, attempt).await {
                    Err(_) => errors.add("timeout"),
                    Ok(Err(kind)) => errors.add(kind),
                    Ok(Ok((ws, login_time))) => {
                        setup.add(t0.elapsed());
                        login.add(login_time);
                        held.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(hold(
                            ws,
                            Arc::clone(&held),
                            Arc::clone(&dropped),
                            release.clone(),
                        ));
                    }
                }
            }
            Instant::now()
        });
    }
    let mut end = start;
    while let Some(r) = workers.join_next().await {
        if let Ok(t) = r {
            end = end.max(t);
        }
    }
    let connect_secs = end.duration_since(start).as_secs_f64();
    let connected = args.server_pid.and_then(proc_sample);
    let mark_end = CpuMark::now();
    let established = setup.summary().count;
    if args.hold > 0 {
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
    }
    let at_hold_end = args.server_pid.and_then(proc_sample);
    let held_now = held.load(Ordering::Relaxed);
    let _ = release_tx.send(true);

    let setup_p = setup.summary();
    let login_p = login.summary();
    let errors = errors.snapshot();
    let dropped = dropped.snapshot();
    let rate = if connect_secs > 0.0 {
        established as f64 / connect_secs
    } else {
        0.0
    };
    let server = server_json(before, connected, at_hold_end, established, held_now);
    let cpu = cpu_json(mark, mark_end, before, connected, established);
    let json = json!({
        "mode": "login",
        "target": if args.baseline { "baseline" } else { "gateway" },
        "url": args.url,
        "sessions": n,
        "concurrency": args.concurrency,
        "established": established,
        "held": held_now,
        "connect_secs": round3(connect_secs),
        "logins_per_sec": rate.round(),
        "setup_us": setup_p.json(),
        "login_us": login_p.json(),
        "errors": errors,
        "dropped_during_hold": dropped,
        "server": server,
        "cpu": cpu,
    });
    let mut text = format!(
        "target {} ({}), {} sessions at concurrency {}\n\
         established {established}, held {held_now} after {} s\n\
         {rate:.0} logins/s ({established} in {connect_secs:.2} s)\n\
         connect+upgrade+login: {}\n\
         login round trip:      {}\n",
        if args.baseline { "baseline" } else { "gateway" },
        args.url,
        n,
        args.concurrency,
        args.hold,
        setup_p.text(),
        login_p.text(),
    );
    push_errors(&mut text, "errors", &errors);
    push_errors(&mut text, "dropped during hold", &dropped);
    if let Some(s) = json.get("server").filter(|s| !s.is_null()) {
        text.push_str(&format!("server: {s}\n"));
    }
    text.push_str(&format!("cpu over the connect phase: {cpu}\n"));
    Report {
        ok: errors.is_empty() && held_now == n,
        json,
        text,
    }
}

/// Holds an established session: reads (so pings are answered and closes seen) until released.
async fn hold(
    mut ws: Ws,
    held: Arc<AtomicUsize>,
    dropped: Arc<Errors>,
    mut release: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = release.wait_for(|r| *r) => return,
            m = ws.next() => match m {
                Some(Ok(Message::Close(f))) => {
                    dropped.add(format!("closed {}", f.map_or(0, |f| u16::from(f.code))));
                    break;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    dropped.add(format!("read: {}", short(&e.to_string())));
                    break;
                }
                None => {
                    dropped.add("eof");
                    break;
                }
            },
        }
    }
    held.fetch_sub(1, Ordering::Relaxed);
}
