//! One socket's session state machine (contract §7): requests in, responses and actions out.
//!
//! A [`Session`] is a plain struct owned by its socket task. It knows whether the socket is logged
//! in, as whom, and with which session id, expiry and push encoding. Requests go through
//! [`Session::handle`], outbox events (kick, expiry, message, shutdown) through [`Session::on_event`],
//! and the end of the socket through [`Session::on_close`]. It calls into the shared [`Gateway`]
//! synchronously (no awaits: the registry and the wheel are lock-and-return), and returns what the
//! socket must write or do; it never touches the socket itself.

use crate::cluster::{Cluster, LoginFailure};
use crate::gateway::Gateway;
use crate::outbox::Delivery;
use crate::outbox::{Event, Outbox};
use crate::presence::{Login, PresenceError};
use crate::usersig::Decoded;
use crate::webhook::Change;
use crate::{clock, expiry::WheelKey};
use imgate_proto::{
    close, ClientMsg, Code, Encoding, KickReason, LoginStatus, Platform, ResponseData, ServerMsg,
};
use std::net::IpAddr;
use std::sync::Arc;

/// Whether `s` is a valid `user_id` (1..=32 bytes of `[A-Za-z0-9_-]`).
pub fn valid_user_id(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `s` is a valid `instance_id` (1..=64 bytes of 0x21..=0x7e).
pub fn valid_instance_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

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

/// A `login` request's fields, as sent.
#[derive(Debug, Clone, Copy)]
struct LoginFields<'a> {
    seq: u64,
    app: u64,
    user: &'a str,
    user_sig: &'a str,
    platform: &'a str,
    instance_id: Option<&'a str>,
}

/// A login admitted by presence, about to become the socket's session.
struct Admitted<'a> {
    app: u64,
    user: &'a str,
    platform: Platform,
    instance_id: Option<&'a str>,
    expire_at: u64,
    session: u64,
    kicked: Vec<Platform>,
    same_user: bool,
}

/// What the socket shares with its session: the gateway, its own outbox, the client's IP.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub gw: &'a Gateway,
    pub outbox: &'a Arc<Outbox>,
    pub ip: IpAddr,
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

/// What the socket must do for an outbox event.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Nothing (a stale event).
    None,
    /// Write a push in the session's push encoding; with `true` the socket is now logged out (the
    /// login deadline restarts).
    Push(ServerMsg, Encoding, bool),
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

/// One socket's session.
#[derive(Debug, Default)]
pub struct Session {
    active: Option<Active>,
}

impl Session {
    pub fn new() -> Session {
        Session::default()
    }

    pub fn is_logged_in(&self) -> bool {
        self.active.is_some()
    }

    /// Handles one request that arrived in encoding `enc`.
    pub fn handle(&mut self, ctx: Ctx<'_>, msg: ClientMsg, enc: Encoding) -> Reply {
        let now_ms = clock::now_ms();
        let seq = msg.seq();
        let keep = |msg| Reply {
            msg: Some(msg),
            logged_out: false,
        };
        match msg {
            ClientMsg::Login {
                sdk_app_id,
                user_id,
                user_sig,
                platform,
                instance_id,
                ..
            } => Reply {
                msg: self.login(
                    ctx,
                    LoginFields {
                        seq,
                        app: sdk_app_id,
                        user: &user_id,
                        user_sig: &user_sig,
                        platform: &platform,
                        instance_id: instance_id.as_deref(),
                    },
                    enc,
                    now_ms,
                ),
                logged_out: false,
            },
            ClientMsg::GetLoginUser { .. } => keep(ServerMsg::ok(
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
                keep(ServerMsg::ok(
                    seq,
                    ResponseData::LoginStatus {
                        status: status as u8,
                    },
                ))
            }
            ClientMsg::Ping { .. } => keep(ServerMsg::ok(
                seq,
                ResponseData::Ping {
                    server_time_ms: now_ms,
                },
            )),
            _ if self.active.is_none() => keep(ServerMsg::error(seq, Code::NotLoggedIn)),
            ClientMsg::Logout { .. } => {
                self.end(ctx, Change::Logout);
                Reply {
                    msg: Some(ServerMsg::ok(seq, ResponseData::Empty)),
                    logged_out: true,
                }
            }
            ClientMsg::RefreshSig { user_sig, .. } => {
                keep(self.refresh(ctx, seq, &user_sig, now_ms))
            }
            ClientMsg::Send { to, payload, .. } => keep(self.send(ctx, seq, &to, payload)),
        }
    }

    /// Validates a login's parameters and verifies its UserSig (contract §2 order); `Err` is the
    /// failure response, already counted.
    fn check_login(
        ctx: Ctx<'_>,
        f: LoginFields<'_>,
        now_ms: u64,
    ) -> Result<(Platform, Decoded), ServerMsg> {
        let LoginFields {
            seq,
            app,
            user,
            user_sig,
            platform,
            instance_id,
        } = f;
        let gw = ctx.gw;
        let fail = |code: Code, desc: String| {
            gw.count_login(app, code);
            ServerMsg::error_with(seq, code, desc)
        };
        if !valid_user_id(user) {
            return Err(fail(
                Code::InvalidUserId,
                "user_id must be 1 to 32 characters of A-Z a-z 0-9 _ -".into(),
            ));
        }
        let Some(platform) = Platform::parse(platform) else {
            return Err(fail(
                Code::InvalidParameters,
                format!("platform {platform:?} is not one of android, iphone, ipad, windows, mac, linux, web"),
            ));
        };
        if instance_id.is_some_and(|i| !valid_instance_id(i)) {
            return Err(fail(
                Code::InvalidParameters,
                "instance_id must be 1 to 64 printable ASCII characters without space".into(),
            ));
        }
        match gw.verify(app, user, user_sig, ctx.ip, now_ms) {
            Ok(t) if gw.apps.contains_key(&app) => Ok((platform, t)),
            Ok(_) => Err(fail(
                Code::AppNotConfigured,
                Code::AppNotConfigured.desc().into(),
            )),
            Err((code, desc)) => Err(fail(code, desc)),
        }
    }

    fn same_user(&self, app: u64, user: &str) -> bool {
        self.active
            .as_ref()
            .is_some_and(|a| a.app == app && &*a.user == user)
    }

    fn login(
        &mut self,
        ctx: Ctx<'_>,
        f: LoginFields<'_>,
        enc: Encoding,
        now_ms: u64,
    ) -> Option<ServerMsg> {
        let gw = ctx.gw;
        let (platform, ticket) = match Self::check_login(ctx, f, now_ms) {
            Ok(ok) => ok,
            Err(resp) => return Some(resp),
        };
        let LoginFields {
            seq,
            app,
            user,
            instance_id,
            ..
        } = f;
        let policy = &gw.apps[&app].policy;
        let expire_at = ticket.expire_at();
        // Same user on this socket: updated in place. Another user: the old session logs out.
        let same_user = self.same_user(app, user);
        let replaces = self
            .active
            .as_ref()
            .filter(|_| same_user)
            .map(|a| (a.session, a.platform));
        if !same_user && self.active.is_some() && !self.switch_out(ctx) {
            return None; // evicted meanwhile: its queued kick closes the socket
        }
        let outcome = match gw.registry.login(
            policy,
            Login {
                app,
                user,
                outbox: ctx.outbox,
                platform,
                instance_id,
                expire_at,
                login_at_ms: now_ms,
                replaces: replaces.map(|(s, _)| s),
            },
        ) {
            Ok(o) => o,
            Err(PresenceError::Superseded) => return None,
            Err(e) => {
                gw.count_login(app, Code::AppNotConfigured);
                return Some(ServerMsg::error_with(
                    seq,
                    Code::AppNotConfigured,
                    e.to_string(),
                ));
            }
        };
        if let Some(old) = self.active.take().filter(|_| same_user) {
            gw.cancel_expiry(old.wheel);
        }
        if let Some((_, old_platform)) = replaces.filter(|_| outcome.replaced) {
            gw.sessions_gauge(app, old_platform, -1);
        }
        gw.sessions_gauge(app, platform, 1);
        gw.notify_kicked(app, &outcome.victims, Some(platform));
        let kicked = outcome
            .victims
            .iter()
            .map(|v| v.instance.platform)
            .collect();
        let admitted = Admitted {
            app,
            user,
            platform,
            instance_id,
            expire_at,
            session: outcome.session,
            kicked,
            same_user,
        };
        Some(self.admitted(ctx, seq, admitted, enc, now_ms))
    }

    /// The session of an admitted login starts: expiry scheduled, counted, webhook, response.
    fn admitted(
        &mut self,
        ctx: Ctx<'_>,
        seq: u64,
        a: Admitted<'_>,
        enc: Encoding,
        now_ms: u64,
    ) -> ServerMsg {
        let gw = ctx.gw;
        let wheel = gw.schedule_expiry(a.expire_at, ctx.outbox, a.session);
        self.active = Some(Active {
            app: a.app,
            user: a.user.into(),
            platform: a.platform,
            session: a.session,
            expire_at: a.expire_at,
            wheel,
            encoding: enc,
        });
        gw.metrics.saw_user(a.app, a.user, now_ms);
        gw.count_login(a.app, Code::Ok);
        if !a.same_user {
            gw.state_change(a.app, a.user, a.platform, ctx.ip, Change::Login, a.kicked);
        }
        ServerMsg::ok(
            seq,
            ResponseData::Login {
                user_id: a.user.to_owned(),
                platform: a.platform,
                instance_id: a.instance_id.map(str::to_owned),
                expire_at: a.expire_at,
            },
        )
    }

    /// Cluster mode: the requests that need Redis (login, refresh_sig, send) are handled here;
    /// everything else as in [`Session::handle`].
    pub async fn handle_cluster(
        &mut self,
        ctx: Ctx<'_>,
        cluster: &Cluster,
        msg: ClientMsg,
        enc: Encoding,
    ) -> Reply {
        let now_ms = clock::now_ms();
        let seq = msg.seq();
        let keep = |msg| Reply {
            msg: Some(msg),
            logged_out: false,
        };
        let gw = ctx.gw;
        match msg {
            ClientMsg::Login {
                sdk_app_id: app,
                user_id,
                user_sig,
                platform,
                instance_id,
                ..
            } => {
                let fields = LoginFields {
                    seq,
                    app,
                    user: &user_id,
                    user_sig: &user_sig,
                    platform: &platform,
                    instance_id: instance_id.as_deref(),
                };
                let (platform, ticket) = match Self::check_login(ctx, fields, now_ms) {
                    Ok(ok) => ok,
                    Err(resp) => return keep(resp),
                };
                let same_user = self.same_user(app, &user_id);
                let replaces = self
                    .active
                    .as_ref()
                    .filter(|_| same_user)
                    .map(|a| a.session);
                let policy = &gw.apps[&app].policy;
                let admission = cluster
                    .login(
                        gw,
                        policy,
                        crate::cluster::LoginRequest {
                            app,
                            user: &user_id,
                            outbox: ctx.outbox,
                            platform,
                            instance_id: instance_id.as_deref(),
                            expire_at: ticket.expire_at(),
                            tls_time: ticket.time,
                            ip: ctx.ip,
                            now_ms,
                            replaces,
                        },
                    )
                    .await;
                let adm = match admission {
                    Ok(a) => a,
                    Err(LoginFailure::Superseded) => {
                        return Reply {
                            msg: None,
                            logged_out: false,
                        }
                    }
                    Err(LoginFailure::Code(code)) => {
                        if code == Code::SigRevoked {
                            gw.throttle.record_failure(app, &user_id, ctx.ip, now_ms);
                        }
                        gw.count_login(app, code);
                        return keep(ServerMsg::error(seq, code));
                    }
                };
                // Only now, with the new session admitted, does the old one give way.
                if same_user {
                    if let Some(old) = self.active.take() {
                        gw.cancel_expiry(old.wheel);
                    }
                } else if self.active.is_some() && !self.switch_out(ctx) {
                    // The old session was evicted meanwhile: that kick stands, the new one goes.
                    gw.presence_logout(app, &user_id, adm.sid, platform);
                    return Reply {
                        msg: None,
                        logged_out: false,
                    };
                }
                let admitted = Admitted {
                    app,
                    user: &user_id,
                    platform,
                    instance_id: instance_id.as_deref(),
                    expire_at: ticket.expire_at(),
                    session: adm.sid,
                    kicked: adm.kicked,
                    same_user,
                };
                keep(self.admitted(ctx, seq, admitted, enc, now_ms))
            }
            ClientMsg::RefreshSig { user_sig, .. } if self.active.is_some() => {
                let a = self.active.as_ref().expect("checked by the guard");
                let ticket = match gw.verify(a.app, &a.user, &user_sig, ctx.ip, now_ms) {
                    Ok(t) => t,
                    Err((code, desc)) => return keep(ServerMsg::error_with(seq, code, desc)),
                };
                if let Err(code) = cluster
                    .refresh(a.session, ticket.expire_at(), ticket.time)
                    .await
                {
                    if code == Code::SigRevoked {
                        gw.throttle.record_failure(a.app, &a.user, ctx.ip, now_ms);
                    }
                    return keep(ServerMsg::error(seq, code));
                }
                keep(self.refreshed(ctx, seq, ticket.expire_at()))
            }
            ClientMsg::Send { to, payload, .. } if self.active.is_some() => {
                let a = self.active.as_ref().expect("checked by the guard");
                let delivery = match self.delivery(ctx, seq, &to, payload) {
                    Ok(d) => d,
                    Err(resp) => return keep(resp),
                };
                let skip = Some(ctx.outbox.id());
                let delivered = match cluster
                    .deliver(gw, a.app, &to, skip, delivery.clone())
                    .await
                {
                    Ok(n) => n,
                    // Redis unreachable: this node's sockets still get it.
                    Err(_) => gw.deliver(a.app, &to, skip, delivery),
                };
                keep(ServerMsg::ok(seq, ResponseData::Send { delivered }))
            }
            other => self.handle(ctx, other, enc),
        }
    }

    fn refresh(&mut self, ctx: Ctx<'_>, seq: u64, user_sig: &str, now_ms: u64) -> ServerMsg {
        let a = self.active.as_ref().expect("checked by the caller");
        match ctx.gw.verify(a.app, &a.user, user_sig, ctx.ip, now_ms) {
            Err((code, desc)) => ServerMsg::error_with(seq, code, desc),
            Ok(ticket) => self.refreshed(ctx, seq, ticket.expire_at()),
        }
    }

    /// The session's UserSig now expires at `expire_at`.
    fn refreshed(&mut self, ctx: Ctx<'_>, seq: u64, expire_at: u64) -> ServerMsg {
        let gw = ctx.gw;
        let a = self.active.as_mut().expect("checked by the caller");
        gw.cancel_expiry(a.wheel);
        a.wheel = gw.schedule_expiry(expire_at, ctx.outbox, a.session);
        a.expire_at = expire_at;
        gw.registry
            .set_expire_at(a.app, &a.user, a.session, expire_at);
        ServerMsg::ok(seq, ResponseData::RefreshSig { expire_at })
    }

    /// Checks a `send` and builds its delivery.
    fn delivery(
        &self,
        ctx: Ctx<'_>,
        seq: u64,
        to: &str,
        payload: String,
    ) -> Result<Delivery, ServerMsg> {
        let a = self.active.as_ref().expect("checked by the caller");
        if !valid_user_id(to) {
            return Err(ServerMsg::error_with(
                seq,
                Code::InvalidUserId,
                "to must be a valid user_id".into(),
            ));
        }
        if payload.len() > ctx.gw.config.max_payload_bytes {
            return Err(ServerMsg::error_with(
                seq,
                Code::InvalidParameters,
                format!(
                    "payload exceeds max_payload_bytes ({})",
                    ctx.gw.config.max_payload_bytes
                ),
            ));
        }
        Ok(Delivery {
            from: a.user.to_string(),
            from_platform: Some(a.platform),
            payload,
        })
    }

    fn send(&mut self, ctx: Ctx<'_>, seq: u64, to: &str, payload: String) -> ServerMsg {
        let a = self.active.as_ref().expect("checked by the caller");
        match self.delivery(ctx, seq, to, payload) {
            Ok(d) => {
                let delivered = ctx.gw.deliver(a.app, to, Some(ctx.outbox.id()), d);
                ServerMsg::ok(seq, ResponseData::Send { delivered })
            }
            Err(resp) => resp,
        }
    }

    /// Account switch: the current session logs out (not a kick). False, with the session left as
    /// it is, when it was evicted meanwhile: its queued kick then closes the socket.
    fn switch_out(&mut self, ctx: Ctx<'_>) -> bool {
        let Some(a) = self.active.as_ref() else {
            return true;
        };
        let gw = ctx.gw;
        if !gw.presence_logout(a.app, &a.user, a.session, a.platform) {
            return false;
        }
        let a = self.active.take().expect("checked above");
        gw.cancel_expiry(a.wheel);
        gw.state_change(
            a.app,
            &a.user,
            a.platform,
            ctx.ip,
            Change::Logout,
            Vec::new(),
        );
        true
    }

    /// Ends the logged-in session (logout, account switch, expiry, close): removes it from presence
    /// and the wheel and emits the state change. A session already removed by a kick emits nothing.
    fn end(&mut self, ctx: Ctx<'_>, change: Change) {
        let Some(a) = self.active.take() else { return };
        let gw = ctx.gw;
        gw.cancel_expiry(a.wheel);
        if gw.presence_logout(a.app, &a.user, a.session, a.platform) {
            gw.state_change(a.app, &a.user, a.platform, ctx.ip, change, Vec::new());
        }
    }

    /// Acts on an outbox event.
    pub fn on_event(&mut self, ctx: Ctx<'_>, event: Event) -> Action {
        match event {
            Event::Shutdown => Action::Close(None, close::GOING_AWAY),
            Event::Kick {
                session,
                reason,
                by_platform,
            } => {
                let Some(a) = self.active.take_if(|a| a.session == session) else {
                    return Action::None;
                };
                ctx.gw.cancel_expiry(a.wheel);
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
                if a.session != session || u128::from(now_ms) <= u128::from(a.expire_at) * 1000 {
                    return Action::None; // stale, or refreshed since
                }
                let gw = ctx.gw;
                if !gw.presence_logout(a.app, &a.user, a.session, a.platform) {
                    return Action::None; // kicked meanwhile: its Kick event follows
                }
                let a = self.active.take().expect("checked above");
                gw.metrics
                    .expiries
                    .get_or_create(&crate::metrics::AppLabel { sdk_app_id: a.app })
                    .inc();
                gw.state_change(
                    a.app,
                    &a.user,
                    a.platform,
                    ctx.ip,
                    Change::Logout,
                    Vec::new(),
                );
                Action::Push(ServerMsg::UserSigExpired, a.encoding, true)
            }
            Event::Message { session, delivery } => match &self.active {
                Some(a) if a.session == session => Action::Push(
                    ServerMsg::Message {
                        from: delivery.from.clone(),
                        from_platform: delivery.from_platform,
                        payload: delivery.payload.clone(),
                    },
                    a.encoding,
                    false,
                ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_rules() {
        for ok in ["a", "alice", "A-b_9", &"x".repeat(32)] {
            assert!(valid_user_id(ok), "{ok}");
        }
        for bad in ["", &"x".repeat(33), "a b", "a.b", "é", "a@b", "a/b"] {
            assert!(!valid_user_id(bad), "{bad}");
        }
    }

    #[test]
    fn instance_id_rules() {
        for ok in ["t", "tab-1", "!~", &"x".repeat(64)] {
            assert!(valid_instance_id(ok), "{ok}");
        }
        for bad in ["", " ", "a b", &"x".repeat(65), "é", "\t"] {
            assert!(!valid_instance_id(bad), "{bad}");
        }
    }
}
