//! One socket's session state machine (contract §7): requests in, responses and actions out.
//!
//! A [`Session`] is a plain struct owned by its socket task. It knows whether the socket is logged
//! in, as whom, and with which session id, expiry and push encoding. Requests go through
//! [`Session::handle`], which answers at once ([`Step::Done`]: ping, status, logout, every refusal)
//! or returns the one future the socket awaits ([`Step::Wait`]: login, refresh_sig, send, which ask
//! the presence store). Outbox events (kick, expiry, message, shutdown) go through
//! [`Session::on_event`], and the end of the socket through [`Session::on_close`]. Each request has
//! one implementation, whatever the presence store; the session never touches the socket itself.

use crate::apps::{App, Snapshot};
use crate::clock::{self, Budget};
use crate::expiry::WheelKey;
use crate::gateway::Gateway;
use crate::outbox::{Delivery, Event, Outbox};
use crate::presence::{BoxFuture, LoginRequest, Prior, Refused, SessionRef};
use crate::usersig::Decoded;
use crate::webhook::Change;
use imgate_proto::{
    close, valid_instance_id, valid_user_id, ClientMsg, Code, Encoding, KickReason, LoginStatus,
    Platform, ResponseData, ServerMsg,
};
use std::sync::Arc;

/// The logged-in state of a socket.
#[derive(Debug)]
struct Active {
    app: u64,
    user: Box<str>,
    platform: Platform,
    session: u64,
    expire_at: u64,
    wheel: WheelKey,
    encoding: Encoding,
}

impl Active {
    fn as_ref(&self) -> SessionRef<'_> {
        SessionRef {
            app: self.app,
            user: &self.user,
            platform: self.platform,
            session: self.session,
        }
    }
}

/// A `login` request's fields, as sent.
#[derive(Debug)]
struct LoginMsg {
    seq: u64,
    app: u64,
    user: String,
    user_sig: String,
    platform: String,
    instance_id: Option<String>,
}

/// What the socket shares with its session: the gateway, the configuration the socket opened
/// under, and its own outbox.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub gw: &'a Gateway,
    pub cfg: &'a crate::config::Config,
    pub outbox: &'a Arc<Outbox>,
}

/// The answer to a request.
#[derive(Debug)]
pub struct Reply {
    /// `None`: no response, because the socket's session was evicted while the request was being
    /// handled; the kick already queued for it closes the socket (4501).
    pub msg: Option<ServerMsg>,
    /// The socket returned to logged out: the login deadline restarts.
    pub logged_out: bool,
}

impl Reply {
    fn with(msg: ServerMsg) -> Reply {
        Reply {
            msg: Some(msg),
            logged_out: false,
        }
    }
}

/// How a request is answered.
pub enum Step<'a> {
    /// At once.
    Done(Reply),
    /// After the presence store answered: the socket awaits this (one box per such request).
    Wait(BoxFuture<'a, Reply>),
}

/// What the socket must do for an outbox event.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Nothing (a stale event).
    None,
    /// Write a push in the session's push encoding.
    Push {
        msg: ServerMsg,
        encoding: Encoding,
        /// The socket is now logged out: the login deadline restarts.
        logged_out: bool,
    },
    /// Write the push if any, then close with the code.
    Close(Option<(ServerMsg, Encoding)>, u16),
}

/// Why a socket ended, for the state-change webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Closed by the client, by an error, or by the gateway (`Disconnect`/`LinkClose`).
    LinkClose,
    /// Idle timeout (`Disconnect`/`TimeOut`).
    TimeOut,
}

/// What a login takes over on its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takeover {
    None,
    Relogin,
    Switch,
}

/// One socket's session.
#[derive(Debug)]
pub struct Session {
    active: Option<Active>,
    /// `login`, `logout`, `refresh_sig` and `send` per second (§16: 7008 beyond).
    requests: Budget,
}

impl Session {
    /// A logged-out session allowed `max_requests_per_sec` (0: unlimited).
    pub fn new(max_requests_per_sec: u32) -> Session {
        Session {
            active: None,
            requests: Budget::full(max_requests_per_sec),
        }
    }

    pub fn is_logged_in(&self) -> bool {
        self.active.is_some()
    }

    /// Handles one request that arrived in encoding `enc`.
    pub fn handle<'a>(&'a mut self, ctx: Ctx<'a>, msg: ClientMsg, enc: Encoding) -> Step<'a> {
        let now_ms = clock::now_ms();
        let seq = msg.seq();
        let done = |msg| Step::Done(Reply::with(msg));
        let budgeted = matches!(
            msg,
            ClientMsg::Login { .. }
                | ClientMsg::Logout { .. }
                | ClientMsg::RefreshSig { .. }
                | ClientMsg::Send { .. }
        );
        if budgeted
            && !self
                .requests
                .take(ctx.cfg.max_requests_per_sec, clock::mono_ms())
        {
            // Answered 7008 and nothing else happens (contract §16).
            ctx.gw.metrics.count_rate_limited("requests");
            return done(ServerMsg::error(seq, Code::RateLimited));
        }
        match msg {
            ClientMsg::Login {
                sdk_app_id,
                user_id,
                user_sig,
                platform,
                instance_id,
                ..
            } => {
                let m = LoginMsg {
                    seq,
                    app: sdk_app_id,
                    user: user_id,
                    user_sig,
                    platform,
                    instance_id,
                };
                Step::Wait(Box::pin(self.login(ctx, m, enc, now_ms)))
            }
            ClientMsg::GetLoginUser { .. } => done(ServerMsg::ok(
                seq,
                ResponseData::LoginUser {
                    user_id: self
                        .active
                        .as_ref()
                        .map(|a| a.user.to_string())
                        .unwrap_or_default(),
                },
            )),
            ClientMsg::GetLoginStatus { .. } => {
                let status = if self.active.is_some() {
                    LoginStatus::LoggedIn
                } else {
                    LoginStatus::LoggedOut
                };
                done(ServerMsg::ok(
                    seq,
                    ResponseData::LoginStatus {
                        status: status as u8,
                    },
                ))
            }
            ClientMsg::Ping { .. } => done(ServerMsg::ok(
                seq,
                ResponseData::Ping {
                    server_time_ms: now_ms,
                },
            )),
            _ if self.active.is_none() => done(ServerMsg::error(seq, Code::NotLoggedIn)),
            ClientMsg::Logout { .. } => {
                self.end(ctx, Change::Logout);
                Step::Done(Reply {
                    msg: Some(ServerMsg::ok(seq, ResponseData::Empty)),
                    logged_out: true,
                })
            }
            ClientMsg::RefreshSig { user_sig, .. } => {
                let a = self.active.as_ref().expect("checked above");
                let snap = ctx.gw.apps.snapshot();
                let ip = ctx.outbox.ip();
                match ctx.gw.verify(&snap, a.app, &a.user, &user_sig, ip, now_ms) {
                    Err((code, desc)) => done(ServerMsg::error_with(seq, code, desc)),
                    Ok(ticket) => {
                        Step::Wait(Box::pin(self.refresh(ctx, seq, ticket, snap, now_ms)))
                    }
                }
            }
            ClientMsg::Send { to, payload, .. } => match self.delivery(ctx, seq, &to, payload) {
                Err(resp) => done(resp),
                Ok(d) => Step::Wait(Box::pin(self.send(ctx, seq, to, d))),
            },
        }
    }

    /// Validates a login's parameters and verifies its UserSig (contract §2 order, the revocation
    /// excepted: the store checks it); `Err` is the failure response, already counted.
    fn check_login(
        ctx: Ctx<'_>,
        m: &LoginMsg,
        now_ms: u64,
    ) -> Result<(Platform, Decoded, Arc<Snapshot>, Arc<App>), ServerMsg> {
        let gw = ctx.gw;
        let fail = |code: Code, desc: String| {
            gw.metrics.count_login(m.app, code);
            ServerMsg::error_with(m.seq, code, desc)
        };
        if !valid_user_id(&m.user) {
            return Err(fail(
                Code::InvalidUserId,
                "user_id must be 1 to 32 characters of A-Z a-z 0-9 _ -".into(),
            ));
        }
        let Some(platform) = Platform::parse(&m.platform) else {
            return Err(fail(
                Code::InvalidParameters,
                format!(
                    "platform {:?} is not one of android, iphone, ipad, windows, mac, linux, web",
                    m.platform
                ),
            ));
        };
        if m.instance_id
            .as_deref()
            .is_some_and(|i| !valid_instance_id(i))
        {
            return Err(fail(
                Code::InvalidParameters,
                "instance_id must be 1 to 64 printable ASCII characters without space".into(),
            ));
        }
        // One snapshot for the whole login: the app's keys and policy and the throttle's settings
        // come from the same configuration.
        let snap = gw.apps.snapshot();
        let ip = ctx.outbox.ip();
        let ticket = gw
            .verify(&snap, m.app, &m.user, &m.user_sig, ip, now_ms)
            .map_err(|(code, desc)| fail(code, desc))?;
        let app = snap
            .app(m.app)
            .cloned()
            .ok_or_else(|| fail(Code::AppNotConfigured, Code::AppNotConfigured.desc().into()))?;
        Ok((platform, ticket, snap, app))
    }

    async fn login(&mut self, ctx: Ctx<'_>, m: LoginMsg, enc: Encoding, now_ms: u64) -> Reply {
        let gw = ctx.gw;
        let (platform, ticket, snap, app) = match Self::check_login(ctx, &m, now_ms) {
            Ok(ok) => ok,
            Err(resp) => return Reply::with(resp),
        };
        // Same user on this socket: updated in place. Another user: the old session logs out.
        let (takeover, prior) = match &self.active {
            None => (Takeover::None, Prior::None),
            Some(a) if a.app == m.app && *a.user == *m.user => {
                (Takeover::Relogin, Prior::Relogin(a.as_ref()))
            }
            Some(a) => (Takeover::Switch, Prior::Switch(a.as_ref())),
        };
        let expire_at = ticket.expire_at();
        let outcome = gw
            .presence
            .login(LoginRequest {
                app: m.app,
                user: &m.user,
                platform,
                instance_id: m.instance_id.as_deref(),
                conn: ctx.outbox,
                expire_at,
                tls_time: ticket.time,
                now_ms,
                policy: &app.policy,
                prior,
            })
            .await;
        let admitted = match outcome {
            Ok(a) => a,
            Err(refused) => {
                let Some(code) = refused.code() else {
                    // Superseded: the eviction stands; its queued kick closes the socket.
                    return Reply {
                        msg: None,
                        logged_out: false,
                    };
                };
                if refused == Refused::Revoked {
                    let ip = ctx.outbox.ip();
                    gw.throttle
                        .record_failure(&snap.throttle, m.app, &m.user, ip, now_ms);
                }
                gw.metrics.count_login(m.app, code);
                return Reply::with(ServerMsg::error(m.seq, code));
            }
        };
        // The socket's previous session ended in the same step as the login.
        if let Some(old) = self.active.take() {
            gw.cancel_expiry(old.wheel);
            if takeover == Takeover::Switch {
                gw.webhooks.state_change(
                    old.app,
                    &old.user,
                    old.platform,
                    ctx.outbox.ip(),
                    Change::Logout,
                    Vec::new(),
                );
            }
        }
        let wheel = gw.schedule_expiry(expire_at, ctx.outbox, admitted.session);
        self.active = Some(Active {
            app: m.app,
            user: m.user.as_str().into(),
            platform,
            session: admitted.session,
            expire_at,
            wheel,
            encoding: enc,
        });
        gw.metrics.count_login(m.app, Code::Ok);
        // A re-login in place is no state change, unless it kicked other devices.
        if takeover != Takeover::Relogin || !admitted.kicked.is_empty() {
            gw.webhooks.state_change(
                m.app,
                &m.user,
                platform,
                ctx.outbox.ip(),
                Change::Login,
                admitted.kicked,
            );
        }
        Reply::with(ServerMsg::ok(
            m.seq,
            ResponseData::Login {
                user_id: m.user,
                platform,
                instance_id: m.instance_id,
                expire_at,
            },
        ))
    }

    async fn refresh(
        &mut self,
        ctx: Ctx<'_>,
        seq: u64,
        ticket: Decoded,
        snap: Arc<Snapshot>,
        now_ms: u64,
    ) -> Reply {
        let gw = ctx.gw;
        let expire_at = ticket.expire_at();
        let a = self.active.as_mut().expect("checked by handle");
        if let Err(refused) = gw
            .presence
            .refresh(a.as_ref(), expire_at, ticket.time)
            .await
        {
            if refused == Refused::Revoked {
                let ip = ctx.outbox.ip();
                gw.throttle
                    .record_failure(&snap.throttle, a.app, &a.user, ip, now_ms);
            }
            let code = refused.code().unwrap_or(Code::PresenceUnavailable);
            return Reply::with(ServerMsg::error(seq, code));
        }
        gw.cancel_expiry(a.wheel);
        a.wheel = gw.schedule_expiry(expire_at, ctx.outbox, a.session);
        a.expire_at = expire_at;
        Reply::with(ServerMsg::ok(seq, ResponseData::RefreshSig { expire_at }))
    }

    /// Checks a `send` and builds its delivery.
    fn delivery(
        &self,
        ctx: Ctx<'_>,
        seq: u64,
        to: &str,
        payload: String,
    ) -> Result<Arc<Delivery>, ServerMsg> {
        let a = self.active.as_ref().expect("checked by handle");
        if !valid_user_id(to) {
            return Err(ServerMsg::error_with(
                seq,
                Code::InvalidUserId,
                "to must be a valid user_id".into(),
            ));
        }
        let max = ctx.cfg.max_payload_bytes;
        if payload.len() > max {
            return Err(ServerMsg::error_with(
                seq,
                Code::InvalidParameters,
                format!("payload exceeds max_payload_bytes ({max})"),
            ));
        }
        Ok(Arc::new(Delivery {
            from: a.user.to_string(),
            from_platform: Some(a.platform),
            payload,
        }))
    }

    async fn send(&self, ctx: Ctx<'_>, seq: u64, to: String, d: Arc<Delivery>) -> Reply {
        let a = self.active.as_ref().expect("checked by handle");
        let store = &ctx.gw.presence;
        let skip = Some(ctx.outbox.id());
        let delivered = match store.deliver(a.app, &to, skip, Arc::clone(&d)).await {
            Ok(n) => n,
            // The shared store is unreachable: this node's sockets still get it.
            Err(_) => store.deliver_here(a.app, &to, skip, &d),
        };
        Reply::with(ServerMsg::ok(seq, ResponseData::Send { delivered }))
    }

    /// Ends the logged-in session (logout, close): removes it from presence and the wheel and
    /// emits the state change. A session already removed by a kick emits nothing.
    fn end(&mut self, ctx: Ctx<'_>, change: Change) {
        let Some(a) = self.active.take() else { return };
        let gw = ctx.gw;
        gw.cancel_expiry(a.wheel);
        if gw.presence.logout(a.as_ref()) {
            gw.webhooks.state_change(
                a.app,
                &a.user,
                a.platform,
                ctx.outbox.ip(),
                change,
                Vec::new(),
            );
        }
    }

    /// Acts on an outbox event.
    pub fn on_event(&mut self, ctx: Ctx<'_>, event: Event) -> Action {
        let gw = ctx.gw;
        match event {
            Event::Shutdown => Action::Close(None, close::GOING_AWAY),
            Event::Overloaded => Action::Close(None, close::SLOW_CONSUMER),
            Event::AppRemoved { app } => {
                let Some(a) = self.active.take_if(|a| a.app == app) else {
                    return Action::None;
                };
                // Closed as an admin kick: the session leaves presence, with no event of its own.
                gw.cancel_expiry(a.wheel);
                if gw.presence.logout(a.as_ref()) {
                    gw.metrics.count_kick(app, KickReason::Admin);
                }
                let push = ServerMsg::KickedOffline {
                    reason: KickReason::Admin,
                    by_platform: None,
                };
                Action::Close(Some((push, a.encoding)), close::ADMIN_KICKED)
            }
            Event::Kick {
                session,
                reason,
                by_platform,
            } => {
                let Some(a) = self.active.take_if(|a| a.session == session) else {
                    return Action::None;
                };
                gw.cancel_expiry(a.wheel);
                gw.presence.evicted(a.as_ref());
                let code = if reason == KickReason::Admin {
                    close::ADMIN_KICKED
                } else {
                    close::KICKED
                };
                let push = ServerMsg::KickedOffline {
                    reason,
                    by_platform,
                };
                Action::Close(Some((push, a.encoding)), code)
            }
            Event::Expired { session } => {
                let now_ms = clock::now_ms();
                let Some(a) = self.active.as_ref() else {
                    return Action::None;
                };
                if a.session != session || !crate::usersig::expired(a.expire_at, now_ms) {
                    return Action::None; // stale, or refreshed since
                }
                if !gw.presence.logout(a.as_ref()) {
                    return Action::None; // kicked meanwhile: its Kick event follows
                }
                let a = self.active.take().expect("checked above");
                gw.metrics.count_expiry(a.app);
                gw.webhooks.state_change(
                    a.app,
                    &a.user,
                    a.platform,
                    ctx.outbox.ip(),
                    Change::Logout,
                    Vec::new(),
                );
                Action::Push {
                    msg: ServerMsg::UserSigExpired,
                    encoding: a.encoding,
                    logged_out: true,
                }
            }
            Event::Message { session, delivery } => match &self.active {
                Some(a) if a.session == session => Action::Push {
                    msg: ServerMsg::Message {
                        from: delivery.from.clone(),
                        from_platform: delivery.from_platform,
                        payload: delivery.payload.clone(),
                    },
                    encoding: a.encoding,
                    logged_out: false,
                },
                _ => Action::None,
            },
        }
    }

    /// The socket is gone: a logged-in session leaves presence at once.
    pub fn on_close(&mut self, ctx: Ctx<'_>, ended: Ended) {
        let change = match ended {
            Ended::LinkClose => Change::LinkClose,
            Ended::TimeOut => Change::TimeOut,
        };
        self.end(ctx, change);
    }
}
