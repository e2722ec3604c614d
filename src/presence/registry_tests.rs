//! Unit tests of the registry: the policy per login, fencing, the atomic account switch, the
//! revocation, admin kicks, and concurrent logins and switches.

use super::*;
use std::net::{IpAddr, Ipv4Addr};
use Platform::*;

const APP: u64 = 1;
const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn conn(id: u32) -> Arc<Outbox> {
    Arc::new(Outbox::new(id, IP, 8))
}

fn req<'a>(user: &'a str, c: &'a Arc<Outbox>, platform: Platform) -> Login<'a> {
    Login {
        app: APP,
        user,
        conn: c,
        platform,
        instance_id: None,
        expire_at: 100,
        tls_time: 10,
        now_us: 1,
        takeover: Takeover::None,
    }
}

fn dual() -> Policy {
    Policy::preset("dual").unwrap()
}

#[test]
fn login_kicks_the_oldest_over_the_cap_and_removal_is_fenced() {
    let r = Registry::new();
    let mut p = dual();
    p.set_max_instances(Web, 2);
    let (a, b, c) = (conn(1), conn(2), conn(3));
    let s1 = r.login(&p, req("u", &a, Web)).unwrap().session;
    let s2 = r.login(&p, req("u", &b, Web)).unwrap().session;
    let out = r.login(&p, req("u", &c, Web)).unwrap();
    assert_eq!(out.victims.len(), 1);
    assert_eq!(out.victims[0].instance.session, s1);
    assert_eq!(out.victims[0].reason, KickReason::MultiDevice);
    assert!(r.remove(APP, "u", s1).is_none(), "a kicked session is gone");
    assert!(r.remove(APP, "u", s2).is_some());
    assert!(r.remove(APP, "u", s2).is_none());
    let left = r.instances(APP, "u");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].session, out.session);
    assert!(r.remove(APP, "u", out.session).is_some());
    assert_eq!(r.user_count(), 0, "an empty user leaves the table");
    assert!(r.snapshot().is_empty());
}

#[test]
fn orders_increase_per_user_even_when_the_clock_does_not() {
    let r = Registry::new();
    let mut p = dual();
    p.set_max_instances(Web, 3);
    let (a, b) = (conn(1), conn(2));
    r.login(&p, req("u", &a, Web)).unwrap();
    r.login(&p, req("u", &b, Web)).unwrap(); // same now_us
    let orders: Vec<u64> = r.instances(APP, "u").iter().map(|i| i.order).collect();
    assert_eq!(orders, [1, 2]);
}

#[test]
fn relogin_in_place_is_not_a_kick_and_is_fenced() {
    let r = Registry::new();
    let p = dual();
    let (a, b) = (conn(1), conn(2));
    let s1 = r.login(&p, req("u", &a, Web)).unwrap().session;
    let mut again = req("u", &a, Mac);
    again.takeover = Takeover::Relogin(s1);
    let out = r.login(&p, again).unwrap();
    assert!(out.victims.is_empty());
    assert_eq!(out.ended.unwrap().session, s1);
    let left = r.instances(APP, "u");
    assert_eq!((left.len(), left[0].platform), (1, Mac));
    // evicted by another device meanwhile: the re-login changes nothing
    let s3 = r.login(&p, req("u", &b, Iphone)).unwrap().session; // evicts the mac session
    let mut stale = req("u", &a, Android);
    stale.takeover = Takeover::Relogin(out.session);
    assert_eq!(r.login(&p, stale).unwrap_err(), Refusal::Superseded);
    let left = r.instances(APP, "u");
    assert_eq!((left.len(), left[0].session), (1, s3));
}

/// Two users whose entries land in different shards, and two in the same shard.
fn user_pairs(r: &Registry) -> [(String, String); 2] {
    let shard = |u: &str| Registry::shard_of(r.hash(APP, u));
    let mut apart = None;
    let mut together = None;
    for i in 1..10_000 {
        let other = format!("x{i}");
        if shard(&other) == shard("alice") {
            together.get_or_insert(other);
        } else {
            apart.get_or_insert(other);
        }
        if apart.is_some() && together.is_some() {
            break;
        }
    }
    [
        ("alice".into(), apart.unwrap()),
        ("alice".into(), together.unwrap()),
    ]
}

#[test]
fn an_account_switch_is_all_or_nothing() {
    let r = Registry::new();
    let p = dual();
    for (old_user, new_user) in user_pairs(&r) {
        let (s_conn, b_conn, d_conn) = (conn(1), conn(2), conn(3));
        let old = r.login(&p, req(&old_user, &s_conn, Web)).unwrap().session;
        let bs = r
            .login(&p, req(&new_user, &b_conn, Android))
            .unwrap()
            .session;
        let switch = |session| Login {
            takeover: Takeover::Switch {
                app: APP,
                user: &old_user,
                session,
            },
            ..req(&new_user, &s_conn, Android)
        };
        // evicted first: nothing changes, nobody is kicked
        let d = r.login(&p, req(&old_user, &d_conn, Web)).unwrap();
        assert_eq!(d.victims[0].instance.session, old);
        assert_eq!(r.login(&p, switch(old)).unwrap_err(), Refusal::Superseded);
        assert_eq!(r.instances(APP, &new_user)[0].session, bs, "bob untouched");
        // a revoked UserSig: nothing changes either
        r.kick(APP, &new_user, KickFilter::default(), Some(10));
        let mut revoked = switch(d.session);
        revoked.conn = &d_conn;
        assert_eq!(r.login(&p, revoked).unwrap_err(), Refusal::Revoked);
        assert_eq!(r.instances(APP, &old_user).len(), 1, "alice still on d");
        // admitted: the old session goes, the new one joins, its victims are returned
        let bs = r
            .login(
                &p,
                Login {
                    tls_time: 11,
                    ..req(&new_user, &b_conn, Android)
                },
            )
            .unwrap();
        let mut ok = switch(d.session);
        ok.conn = &d_conn;
        ok.tls_time = 11;
        let out = r.login(&p, ok).unwrap();
        assert_eq!(out.ended.unwrap().session, d.session);
        assert_eq!(out.victims.len(), 1);
        assert_eq!(out.victims[0].instance.session, bs.session);
        assert!(r.instances(APP, &old_user).is_empty());
        assert_eq!(r.instances(APP, &new_user)[0].session, out.session);
        r.remove(APP, &new_user, out.session);
    }
}

#[test]
fn revocation_is_checked_with_the_login_and_the_refresh() {
    let r = Registry::new();
    let p = dual();
    let (a, b) = (conn(1), conn(2));
    let s = r.login(&p, req("u", &a, Web)).unwrap().session;
    let v = r.kick(APP, "u", KickFilter::default(), Some(10));
    assert_eq!((v.len(), v[0].reason), (1, KickReason::Admin));
    assert_eq!(
        r.login(&p, req("u", &b, Web)).unwrap_err(),
        Refusal::Revoked
    );
    let s2 = r
        .login(
            &p,
            Login {
                tls_time: 11,
                ..req("u", &b, Web)
            },
        )
        .unwrap()
        .session;
    assert_eq!(r.refresh(APP, "u", s2, 500, 10), Err(Refusal::Revoked));
    assert_eq!(r.refresh(APP, "u", s2, 500, 11), Ok(()));
    assert_eq!(r.get(APP, "u", s2).unwrap().expire_at, 500);
    assert!(r.get(APP, "u", s).is_none());
    r.remove(APP, "u", s2);
    assert_eq!(r.user_count(), 0);
    // the revocation outlives the user's sessions
    assert_eq!(
        r.login(&p, req("u", &a, Web)).unwrap_err(),
        Refusal::Revoked
    );
}

#[test]
fn admin_kick_filters() {
    let r = Registry::new();
    let mut p = Policy::preset("multi").unwrap();
    p.set_max_instances(Web, 5);
    let cs: Vec<_> = (1..=3).map(conn).collect();
    let with_iid = |c, i| Login {
        instance_id: Some(i),
        ..req("u", c, Web)
    };
    r.login(&p, with_iid(&cs[0], "t1")).unwrap();
    r.login(&p, with_iid(&cs[1], "t2")).unwrap();
    r.login(&p, req("u", &cs[2], Mac)).unwrap();
    let f = KickFilter {
        platform: Some(Web),
        instance_id: Some("t2"),
    };
    let v = r.kick(APP, "u", f, None);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].instance.instance_id.as_deref(), Some("t2"));
    assert_eq!(r.kick(APP, "nobody", KickFilter::default(), None).len(), 0);
    assert_eq!(r.kick(APP, "u", KickFilter::default(), None).len(), 2);
    assert_eq!(r.user_count(), 0);
}

#[test]
fn concurrent_logins_and_switches_leave_the_policy_satisfied() {
    let r = Arc::new(Registry::new());
    let mut p = dual();
    p.set_max_instances(Web, 3);
    let p = Arc::new(p);
    let users = ["u", "v"];
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let (r, p) = (Arc::clone(&r), Arc::clone(&p));
            std::thread::spawn(move || {
                let plats = [Web, Android, Iphone, Mac];
                let c = conn(t + 1);
                let mut mine: Option<(&str, u64)> = None;
                for i in 0..2000usize {
                    let user = users[(i + t as usize) % 2];
                    let takeover = match mine {
                        Some((u, s)) if u == user => Takeover::Relogin(s),
                        Some((u, s)) => Takeover::Switch {
                            app: APP,
                            user: u,
                            session: s,
                        },
                        None => Takeover::None,
                    };
                    let l = Login {
                        takeover,
                        now_us: i as u64,
                        ..req(user, &c, plats[(i * 7 + t as usize) % 4])
                    };
                    match r.login(&p, l) {
                        Ok(out) => mine = Some((user, out.session)),
                        Err(Refusal::Superseded) => {
                            // evicted: this socket would be closed; a new one starts
                            mine = None;
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for user in users {
        let left = r.instances(APP, user);
        let web = left.iter().filter(|i| i.platform == Web).count();
        let native = left.iter().filter(|i| i.platform != Web).count();
        assert!(web <= 3 && native <= 1, "{user}: web {web} native {native}");
    }
    for c in 1..=4 {
        assert!(
            r.sessions_of(c) <= 1,
            "connection {c} holds one session at most"
        );
    }
}
