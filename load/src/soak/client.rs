//! One client socket: the handle the model holds ([`Client`]: requests, a close, a drop, what to
//! expect), the task that owns the WebSocket and classifies every push and close it reads, and the
//! inbox of messages in flight that the tasks check their `message` pushes against.

use super::*;
use outcome::{
    classify_close_echo, classify_expiry, classify_kick_close, classify_kick_push,
    classify_surprise_close, KickWant,
};
use std::collections::HashMap;

/// What a client socket is told to expect by the operation that is about to cause it.
#[derive(Default)]
pub(super) struct Expect {
    pub(super) kick: Option<(KickWant, oneshot::Sender<Outcome>)>,
    /// A short ticket's `expire_at`, and where to report its `user_sig_expired`.
    pub(super) expiry: Option<(u64, oneshot::Sender<Outcome>)>,
}

pub(super) enum Cmd {
    /// Send a request; the next response goes back.
    Request(ClientMsg, oneshot::Sender<Result<ServerMsg, Fail>>),
    /// Close with 1000 and report the echo.
    Close(oneshot::Sender<Outcome>),
    /// Drop the socket without a close frame (zero linger: a reset).
    Drop,
}

/// One open socket, as the model holds it; its task owns the WebSocket.
pub(super) struct Client {
    pub(super) platform: Platform,
    pub(super) instance: String,
    pub(super) cmd: mpsc::Sender<Cmd>,
    pub(super) expect: Arc<Mutex<Expect>>,
}

impl Client {
    pub(super) async fn request(&self, msg: ClientMsg) -> Result<ServerMsg, Fail> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Request(msg, tx))
            .await
            .map_err(|_| Fail::from("socket gone"))?;
        match timeout(EVENT_WAIT, rx).await {
            Err(_) => Err("no response within 10 s".into()),
            Ok(Err(_)) => Err("socket gone before the response".into()),
            Ok(Ok(r)) => r,
        }
    }

    pub(super) async fn close(self) -> Outcome {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Close(tx)).await.is_err() {
            return Outcome::Unexpected("socket gone before the client closed it".into());
        }
        match timeout(EVENT_WAIT, rx).await {
            Err(_) => Outcome::Unexpected("no close echo within 10 s".into()),
            Ok(Err(_)) => Outcome::Unexpected("socket gone before the close echo".into()),
            Ok(Ok(o)) => o,
        }
    }

    pub(super) fn expect_kick(&self, want: KickWant) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        lock(&self.expect).kick = Some((want, tx));
        rx
    }
}

pub(super) async fn wait_outcome(rx: oneshot::Receiver<Outcome>, what: &str) -> Outcome {
    match timeout(EVENT_WAIT, rx).await {
        Err(_) => Outcome::Unexpected(format!("{what}: nothing within 10 s")),
        Ok(Err(_)) => Outcome::Unexpected(format!("{what}: the socket ended first")),
        Ok(Ok(o)) => o,
    }
}

/// Messages in flight: a token per `send`/`/v1/push`, how many sockets must still read it, and who
/// it is from.
#[derive(Default)]
pub(super) struct Inbox {
    pending: Mutex<HashMap<u64, (u32, String)>>,
    next: AtomicU64,
}

impl Inbox {
    pub(super) fn expect(&self, n: u32, from: &str) -> u64 {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(token, (n, from.to_owned()));
        token
    }
    /// A socket read a message: true when some send was waiting for it.
    pub(super) fn deliver(&self, from: &str, payload: &str) -> bool {
        let Some(token) = payload
            .strip_prefix("soak:")
            .and_then(|t| t.parse::<u64>().ok())
        else {
            return false;
        };
        let mut m = lock(&self.pending);
        match m.get_mut(&token) {
            Some((n, f)) if *n > 0 && f == from => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
    /// Waits until every recipient read `token`; returns how many did not.
    pub(super) async fn settle(&self, token: u64) -> u32 {
        let deadline = Instant::now() + EVENT_WAIT;
        loop {
            let left = lock(&self.pending).get(&token).map_or(0, |e| e.0);
            if left == 0 || Instant::now() >= deadline {
                lock(&self.pending).remove(&token);
                return left;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Reads until the response to a request (a fresh socket: any push first is a failure).
pub(super) async fn read_response(ws: &mut Ws) -> Result<ServerMsg, Fail> {
    loop {
        match ws.next().await {
            None => return Err("closed before the response".into()),
            Some(Err(e)) => return Err(format!("read: {}", short(&e.to_string()))),
            Some(Ok(Message::Close(f))) => {
                return Err(format!(
                    "closed {} before the response",
                    f.map_or(0, |f| u16::from(f.code))
                ))
            }
            Some(Ok(Message::Text(t))) => {
                return match decode_server(Encoding::Json, t.as_bytes(), MAX_FRAME) {
                    Ok(m @ ServerMsg::Response { .. }) => Ok(m),
                    Ok(m) => Err(format!("{m:?} before the login response")),
                    Err(_) => Err("undecodable frame".into()),
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(_)) => return Err("unexpected frame".into()),
        }
    }
}

/// A client socket's task: reads every frame (so pings are answered), classifies pushes and closes
/// against what it was told to expect, and carries out the model's commands.
pub(super) async fn client_task(
    mut ws: Ws,
    mut cmd: mpsc::Receiver<Cmd>,
    expect: Arc<Mutex<Expect>>,
    soak: Arc<Soak>,
) {
    let mut reply: Option<oneshot::Sender<Result<ServerMsg, Fail>>> = None;
    let mut kick: Option<(KickWant, oneshot::Sender<Outcome>)> = None;
    loop {
        tokio::select! {
            c = cmd.recv() => match c {
                Some(Cmd::Request(msg, tx)) => {
                    let frame = String::from_utf8(encode_client(Encoding::Json, &msg))
                        .expect("JSON is UTF-8");
                    if let Err(e) = ws.send(Message::text(frame)).await {
                        let _ = tx.send(Err(format!("send: {}", short(&e.to_string()))));
                        break;
                    }
                    reply = Some(tx);
                }
                Some(Cmd::Close(tx)) => {
                    let o = match client_close(&mut ws).await {
                        Ok(code) => classify_close_echo(code),
                        Err(f) => Outcome::Unexpected(f),
                    };
                    let _ = tx.send(o);
                    break;
                }
                Some(Cmd::Drop) | None => break,
            },
            m = ws.next() => {
                let code = match m {
                    Some(Ok(Message::Text(t))) => {
                        match decode_server(Encoding::Json, t.as_bytes(), MAX_FRAME) {
                            Ok(r @ ServerMsg::Response { .. }) => match reply.take() {
                                Some(tx) => { let _ = tx.send(Ok(r)); }
                                None => soak.tally.bad("a response nobody asked for"),
                            },
                            Ok(ServerMsg::KickedOffline { reason, by_platform }) => {
                                let want = kick.take().or_else(|| lock(&expect).kick.take());
                                match classify_kick_push(want.as_ref().map(|w| w.0), reason, by_platform) {
                                    Ok(()) => kick = want,
                                    Err(e) => {
                                        match want {
                                            Some((_, tx)) => { let _ = tx.send(Outcome::Unexpected(e)); }
                                            None => soak.tally.bad(e),
                                        }
                                        break;
                                    }
                                }
                            }
                            Ok(ServerMsg::UserSigExpired) => {
                                let at = now_ms();
                                match lock(&expect).expiry.take() {
                                    Some((expire_at, tx)) => {
                                        let after = at.saturating_sub(expire_at * 1000);
                                        soak.expiry_after.add(Duration::from_millis(after));
                                        let _ = tx.send(classify_expiry(expire_at, at, soak.slack_ms));
                                    }
                                    None => soak.tally.bad("user_sig_expired on a long ticket"),
                                }
                            }
                            Ok(ServerMsg::Message { from, payload, .. }) => {
                                if !soak.inbox.deliver(&from, &payload) {
                                    soak.tally.bad("a message nobody sent to this socket");
                                }
                            }
                            Err(_) => {
                                soak.tally.bad("undecodable frame");
                                break;
                            }
                        }
                        continue;
                    }
                    Some(Ok(Message::Close(f))) => Some(f.map(|f| u16::from(f.code))),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => Some(None),
                };
                let code = code.flatten();
                let want = kick.take().map(|k| (k, true)).or_else(|| {
                    lock(&expect).kick.take().map(|k| (k, false))
                });
                match want {
                    Some(((w, tx), pushed)) => {
                        let _ = tx.send(classify_kick_close(w, pushed, code));
                    }
                    None => {
                        soak.tally.add(classify_surprise_close(code));
                    }
                }
                break;
            }
        }
    }
    soak.open.fetch_sub(1, Ordering::Relaxed);
}

/// Sends close 1000 and reads until the gateway's close frame; its code.
async fn client_close(ws: &mut Ws) -> Result<Option<u16>, Fail> {
    ws.send(Message::Close(Some(
        tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 1000.into(),
            reason: "".into(),
        },
    )))
    .await
    .map_err(|e| format!("close: {}", short(&e.to_string())))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(f))) => return Ok(f.map(|f| u16::from(f.code))),
            Some(Ok(Message::Text(_))) => return Err("a frame after the client's close".into()),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_counts_each_recipient_once_and_checks_the_sender() {
        let inbox = Inbox::default();
        let t = inbox.expect(2, "alice");
        let p = format!("soak:{t}");
        assert!(!inbox.deliver("bob", &p));
        assert!(inbox.deliver("alice", &p));
        assert!(inbox.deliver("alice", &p));
        assert!(!inbox.deliver("alice", &p), "a third copy nobody sent");
        assert!(!inbox.deliver("alice", "hello"));
        assert!(!inbox.deliver("alice", "soak:999"));
    }
}
