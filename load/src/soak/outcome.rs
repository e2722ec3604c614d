//! The outcomes of the soak: what each kick, close, expiry and response must be (the contract's
//! answer for the model's operation), classified as expected (by kind) or unexpected (described),
//! and the tally of both.

use super::*;

/// One outcome, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// What the contract says must happen, by kind (`login`, `kick multi_device`, `expiry`, ...).
    Expected(&'static str),
    /// Anything else, described.
    Unexpected(String),
}

/// What a socket about to be kicked must see: the push, then the close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KickWant {
    pub(super) reason: KickReason,
    pub(super) by_platform: Option<Platform>,
    pub(super) code: u16,
}

impl KickWant {
    /// The expected outcome's kind.
    pub(super) fn kind(self) -> &'static str {
        match self.reason {
            KickReason::MultiDevice => "kick multi_device (4501)",
            KickReason::Replaced => "kick replaced (4501)",
            KickReason::Admin => "admin kick (4502)",
        }
    }
}

/// The kick a login on `platform` with `instance` makes the slot's holder (`held_*`) see (§8 with
/// the `dual` policy and caps of 1: the slot holds one instance, the newcomer always wins).
pub(super) fn takeover_want(
    held_platform: Platform,
    held_instance: &str,
    platform: Platform,
    instance: &str,
) -> KickWant {
    let reason = if held_platform == platform && held_instance == instance {
        KickReason::Replaced
    } else {
        KickReason::MultiDevice
    };
    KickWant {
        reason,
        by_platform: Some(platform),
        code: imgate_proto::close::KICKED,
    }
}

/// The `kicked_offline` push a socket read, against what it was told to expect (`None`: nothing).
pub(super) fn classify_kick_push(
    want: Option<KickWant>,
    reason: KickReason,
    by_platform: Option<Platform>,
) -> Result<(), String> {
    match want {
        None => Err(format!("kicked_offline {} nobody caused", reason.as_str())),
        Some(w) if w.reason != reason || w.by_platform != by_platform => Err(format!(
            "kicked_offline {} by {:?} instead of {} by {:?}",
            reason.as_str(),
            by_platform.map(Platform::as_str),
            w.reason.as_str(),
            w.by_platform.map(Platform::as_str)
        )),
        Some(_) => Ok(()),
    }
}

/// The close a kicked socket read (`code`; `pushed`: whether `kicked_offline` came first).
pub(super) fn classify_kick_close(want: KickWant, pushed: bool, code: Option<u16>) -> Outcome {
    match code {
        _ if !pushed => Outcome::Unexpected(format!(
            "closed {} without kicked_offline",
            code.map_or("(no frame)".into(), |c| c.to_string())
        )),
        Some(c) if c == want.code => Outcome::Expected(want.kind()),
        Some(c) => Outcome::Unexpected(format!(
            "{} closed {c} instead of {}",
            want.reason.as_str(),
            want.code
        )),
        None => Outcome::Unexpected(format!(
            "{} closed without a close frame",
            want.reason.as_str()
        )),
    }
}

/// A close nobody asked for (the socket was not being kicked or closed by the client).
pub(super) fn classify_surprise_close(code: Option<u16>) -> Outcome {
    Outcome::Unexpected(match code {
        Some(c) => format!("closed {c} by the gateway"),
        None => "closed without a close frame".into(),
    })
}

/// The answer to a client close (code 1000): the gateway echoes it.
pub(super) fn classify_close_echo(code: Option<u16>) -> Outcome {
    match code {
        Some(1000) => Outcome::Expected("client close (1000 echoed)"),
        Some(c) => Outcome::Unexpected(format!("client close answered {c}")),
        None => Outcome::Unexpected("client close answered without a close frame".into()),
    }
}

/// A `user_sig_expired` read at `at_ms` (unix ms) for a ticket with `expire_at` (unix s): §2 says
/// expired when now > expire_at, §7 says pushed no later than 1.5 s after; `slack_ms` allows for the
/// client's own scheduling on a loaded machine.
pub(super) fn classify_expiry(expire_at: u64, at_ms: u64, slack_ms: u64) -> Outcome {
    let due = expire_at * 1000;
    if at_ms < due {
        Outcome::Unexpected(format!("user_sig_expired {} ms early", due - at_ms))
    } else if at_ms > due + 1500 + slack_ms {
        Outcome::Unexpected(format!(
            "user_sig_expired late (> 1.5 s + {slack_ms} ms after expire_at)"
        ))
    } else {
        Outcome::Expected("user_sig_expired")
    }
}

/// A response, against the code wanted (and for a success, the data's kind).
pub(super) fn classify_response(
    what: &'static str,
    want_code: u32,
    got: &Result<ServerMsg, Fail>,
) -> Outcome {
    match got {
        Err(f) => Outcome::Unexpected(format!("{what}: {f}")),
        Ok(ServerMsg::Response { code, .. }) if *code == want_code => Outcome::Expected(what),
        Ok(ServerMsg::Response { code, .. }) => {
            Outcome::Unexpected(format!("{what}: code {code} instead of {want_code}"))
        }
        Ok(other) => Outcome::Unexpected(format!("{what}: {other:?} instead of a response")),
    }
}

/// Expected and unexpected outcomes, by kind.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) expected: Errors,
    pub(super) unexpected: Errors,
}

impl Tally {
    pub(super) fn add(&self, o: Outcome) -> bool {
        match o {
            Outcome::Expected(k) => {
                self.expected.add(k);
                true
            }
            Outcome::Unexpected(k) => {
                self.unexpected.add(k);
                false
            }
        }
    }
    pub(super) fn ok(&self, k: &'static str) {
        self.expected.add(k);
    }
    pub(super) fn bad(&self, k: impl Into<String>) {
        self.unexpected.add(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KICKED: u16 = imgate_proto::close::KICKED;

    #[test]
    fn takeover_is_replaced_only_for_the_same_platform_and_instance() {
        let w = takeover_want(Platform::Android, "s0-i1", Platform::Android, "s0-i1");
        assert_eq!(w.reason, KickReason::Replaced);
        assert_eq!((w.by_platform, w.code), (Some(Platform::Android), KICKED));
        let w = takeover_want(Platform::Android, "s0-i1", Platform::Android, "s0-i2");
        assert_eq!(w.reason, KickReason::MultiDevice);
        let w = takeover_want(Platform::Android, "s0-i1", Platform::Iphone, "s0-i1");
        assert_eq!(w.reason, KickReason::MultiDevice);
        assert_eq!(w.by_platform, Some(Platform::Iphone));
    }

    #[test]
    fn a_kick_must_be_expected_and_match() {
        let want = takeover_want(Platform::Web, "a", Platform::Web, "b");
        assert!(
            classify_kick_push(Some(want), KickReason::MultiDevice, Some(Platform::Web)).is_ok()
        );
        assert!(classify_kick_push(None, KickReason::MultiDevice, Some(Platform::Web)).is_err());
        assert!(classify_kick_push(Some(want), KickReason::Replaced, Some(Platform::Web)).is_err());
        assert!(classify_kick_push(Some(want), KickReason::MultiDevice, None).is_err());
    }

    #[test]
    fn kick_closes_are_classified() {
        let want = takeover_want(Platform::Web, "a", Platform::Web, "b");
        assert_eq!(
            classify_kick_close(want, true, Some(4501)),
            Outcome::Expected("kick multi_device (4501)")
        );
        assert!(matches!(
            classify_kick_close(want, true, Some(4502)),
            Outcome::Unexpected(_)
        ));
        assert!(matches!(
            classify_kick_close(want, false, Some(4501)),
            Outcome::Unexpected(_)
        ));
        assert!(matches!(
            classify_kick_close(want, true, None),
            Outcome::Unexpected(_)
        ));
        let admin = KickWant {
            reason: KickReason::Admin,
            by_platform: None,
            code: imgate_proto::close::ADMIN_KICKED,
        };
        assert_eq!(
            classify_kick_close(admin, true, Some(4502)),
            Outcome::Expected("admin kick (4502)")
        );
        assert!(matches!(
            classify_surprise_close(Some(4001)),
            Outcome::Unexpected(_)
        ));
        assert!(matches!(
            classify_surprise_close(None),
            Outcome::Unexpected(_)
        ));
        assert_eq!(
            classify_close_echo(Some(1000)),
            Outcome::Expected("client close (1000 echoed)")
        );
        assert!(matches!(
            classify_close_echo(Some(1001)),
            Outcome::Unexpected(_)
        ));
        assert!(matches!(classify_close_echo(None), Outcome::Unexpected(_)));
    }

    #[test]
    fn expiry_is_on_time_between_expire_at_and_its_bound() {
        let at = 1_700_000_000;
        assert!(matches!(
            classify_expiry(at, at * 1000 - 1, 0),
            Outcome::Unexpected(_)
        ));
        assert_eq!(
            classify_expiry(at, at * 1000, 0),
            Outcome::Expected("user_sig_expired")
        );
        assert_eq!(
            classify_expiry(at, at * 1000 + 1500, 0),
            Outcome::Expected("user_sig_expired")
        );
        assert!(matches!(
            classify_expiry(at, at * 1000 + 1501, 0),
            Outcome::Unexpected(_)
        ));
        assert_eq!(
            classify_expiry(at, at * 1000 + 1900, 500),
            Outcome::Expected("user_sig_expired")
        );
    }

    #[test]
    fn responses_are_classified_by_code() {
        let ok = Ok(ServerMsg::Response {
            seq: 1,
            code: 0,
            desc: "ok".into(),
            data: Some(ResponseData::Empty),
        });
        assert_eq!(
            classify_response("logout", 0, &ok),
            Outcome::Expected("logout")
        );
        assert!(matches!(
            classify_response("x", 70052, &ok),
            Outcome::Unexpected(_)
        ));
        let refused = Ok(ServerMsg::Response {
            seq: 1,
            code: 70052,
            desc: "revoked".into(),
            data: None,
        });
        assert!(matches!(
            classify_response("x", 70052, &refused),
            Outcome::Expected("x")
        ));
        assert!(matches!(
            classify_response("x", 0, &Err("eof".into())),
            Outcome::Unexpected(_)
        ));
        let push = Ok(ServerMsg::UserSigExpired);
        assert!(matches!(
            classify_response("x", 0, &push),
            Outcome::Unexpected(_)
        ));
    }

    #[test]
    fn tally_counts_by_kind() {
        let t = Tally::default();
        assert!(t.add(Outcome::Expected("login")));
        assert!(t.add(Outcome::Expected("login")));
        assert!(!t.add(Outcome::Unexpected("closed 1011 by the gateway".into())));
        assert_eq!(t.expected.snapshot()["login"], 2);
        assert_eq!(t.unexpected.snapshot().len(), 1);
    }
}
