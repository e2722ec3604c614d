//! `imgate load --mode kick`: the time from a new login of a user to its old socket reading
//! `kicked_offline` (with `--kick-url`, across nodes).

use super::*;

/// Kick mode: old sockets on `target`, newcomers on `newcomer` (the same target unless `--kick-url`).
pub(crate) async fn run_kick(
    args: &LoadArgs,
    target: Arc<Target>,
    newcomer: Arc<Target>,
) -> Report {
    let m = args.kick_users;
    let key = SigKey::new(&args.key);
    let now = now_secs();
    let frames: Arc<Vec<(String, String)>> = Arc::new(
        (0..m)
            .map(|i| {
                let user = user_name(args, "k", i);
                (
                    login_frame(args, &key, &user, now),
                    login_frame(args, &key, &user, now),
                )
            })
            .collect(),
    );
    let errors = Arc::new(Errors::default());
    let kick = Arc::new(Samples::default());
    let relogin = Arc::new(Samples::default());
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.min(m.max(1)) {
        let (target, newcomer, frames, errors, kick, relogin, next) = (
            Arc::clone(&target),
            Arc::clone(&newcomer),
            Arc::clone(&frames),
            Arc::clone(&errors),
            Arc::clone(&kick),
            Arc::clone(&relogin),
            Arc::clone(&next),
        );
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= frames.len() {
                    break;
                }
                let (first, second) = &frames[i];
                match timeout(
                    target.deadline,
                    kick_one(&target, &newcomer, i, first, second),
                )
                .await
                {
                    Err(_) => errors.add("timeout"),
                    Ok(Err(kind)) => errors.add(kind),
                    Ok(Ok((k, r))) => {
                        kick.add(k);
                        relogin.add(r);
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let secs = start.elapsed().as_secs_f64();
    let kick_p = kick.summary();
    let relogin_p = relogin.summary();
    let errors = errors.snapshot();
    let json = json!({
        "mode": "kick",
        "url": args.url,
        "kick_url": newcomer.url,
        "users": m,
        "concurrency": args.concurrency,
        "platform": args.platform,
        "kicked": kick_p.count,
        "secs": round3(secs),
        "kick_us": kick_p.json(),
        "relogin_us": relogin_p.json(),
        "errors": errors,
    });
    let mut text = format!(
        "kick: {m} users on {} at concurrency {}, {} kicked in {secs:.2} s\n\
         old sockets on {}, newcomers on {}\n\
         new login → old socket reads kicked_offline: {}\n\
         new login → its own response:                {}\n",
        args.platform,
        args.concurrency,
        kick_p.count,
        target.url,
        newcomer.url,
        kick_p.text(),
        relogin_p.text(),
    );
    push_errors(&mut text, "errors", &errors);
    Report {
        ok: errors.is_empty() && kick_p.count == m,
        json,
        text,
    }
}

/// One takeover: the old socket logs in on `target`, a new socket of the same user and platform logs
/// in on `newcomer`; returns (new login sent → old socket read `kicked_offline`, new login sent → its
/// response).
async fn kick_one(
    target: &Target,
    newcomer: &Target,
    i: usize,
    first: &str,
    second: &str,
) -> Result<(Duration, Duration), Fail> {
    let mut old = target.open(2 * i).await?;
    target.login(&mut old, first).await?;
    let mut new = newcomer.open(2 * i + 1).await?;
    let t0 = Instant::now();
    let kicked = async {
        loop {
            match old.next().await {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(ServerMsg::KickedOffline { .. }) =
                        decode_server(Encoding::Json, t.as_bytes(), MAX_FRAME)
                    {
                        return Ok(t0.elapsed());
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    return Err(format!(
                        "old closed {} before kicked_offline",
                        f.map_or(0, |f| u16::from(f.code))
                    ))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("old read: {}", short(&e.to_string()))),
                None => return Err("old eof before kicked_offline".into()),
            }
        }
    };
    let answered = async {
        newcomer.login(&mut new, second).await?;
        Ok::<_, Fail>(t0.elapsed())
    };
    let (k, r) = tokio::join!(kicked, answered);
    let (k, r) = (k?, r?);
    // The kick then closes the old socket with 4501.
    loop {
        match old.next().await {
            Some(Ok(Message::Close(Some(f)))) if u16::from(f.code) == 4501 => break,
            Some(Ok(Message::Close(f))) => {
                return Err(format!(
                    "old closed {} instead of 4501",
                    f.map_or(0, |f| u16::from(f.code))
                ))
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err("old closed without a close frame".into()),
        }
    }
    Ok((k, r))
}
