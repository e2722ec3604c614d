//! The invariant checker. Two parts:
//!
//! - [`check_logs`], over every socket's log once the run is over: each socket that got
//!   `kicked_offline` got exactly one, then close 4501 exactly once and nothing after it; no 4501
//!   without the push; every kick is explained by another login of the same user (one that could
//!   have been ordered after the victim's, on the platform the push names, in the victim's exclusive
//!   group; for `replaced`, the same platform and instance id); no other close code and no
//!   connection dying without a close frame unless its node process was SIGKILLed; every request
//!   answered (a frozen node answers late, only a killed one never), with a login answering 0 or
//!   70169 only.
//! - [`check_presence`], over the cluster's presence (`/v1/online` of every node) and the clients'
//!   view of their open logged-in sockets: every node says the same, the policy holds for every
//!   user, and presence equals the open sockets (as multisets of user, platform and instance id);
//!   [`check_stored`] goes one level down, to every entry Redis holds, dead nodes' included: each
//!   names the node process that holds its socket, once.
//!
//! A login answered 70169 may still have run in Redis (its reply was late or lost: the node then
//! takes its entry back), so it counts as a possible kicker, like a login never answered. What it
//! does not own: getting the data (the driver) or deciding when the cluster has converged.

use crate::client::{Ev, SocketLog, View};
use crate::policy::{self, Inst};
use std::collections::BTreeMap;

/// Figures from the logs, for the summary.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub sockets: u64,
    pub logins: u64,
    /// Login answers by code (0 included).
    pub login_codes: BTreeMap<u32, u64>,
    pub logins_unanswered: u64,
    pub relogins: u64,
    pub switches: u64,
    pub logouts: u64,
    /// `kicked_offline` pushes by reason.
    pub kicks: BTreeMap<String, u64>,
    pub closes_4501: u64,
    /// Sockets that died with their node process (SIGKILL).
    pub died_with_node: u64,
    pub client_closes: u64,
    pub client_drops: u64,
}

/// A login request as the justification of kicks needs it.
#[derive(Debug, Clone)]
struct Attempt {
    socket: u64,
    platform: String,
    iid: Option<String>,
    sent: u64,
    /// (time, code) of its answer.
    answer: Option<(u64, u32)>,
}

/// The session a kick may have hit: (platform, iid, when its login was sent).
type Victim = (String, Option<String>, u64);

#[derive(Debug, Clone)]
enum Req {
    Login {
        user: String,
        platform: String,
        iid: Option<String>,
        sent: u64,
    },
    Logout,
}

fn killed(killed_at: &[Vec<Option<u64>>], log: &SocketLog) -> bool {
    killed_at
        .get(log.node)
        .and_then(|g| g.get(log.generation))
        .is_some_and(|k| k.is_some())
}

/// Every login attempt, by user.
fn attempts(logs: &[SocketLog]) -> BTreeMap<String, Vec<Attempt>> {
    let mut by_user: BTreeMap<String, Vec<Attempt>> = BTreeMap::new();
    for log in logs {
        let mut open: BTreeMap<u64, (String, usize)> = BTreeMap::new();
        for (t, ev) in &log.events {
            match ev {
                Ev::Login {
                    seq,
                    user,
                    platform,
                    iid,
                } => {
                    let list = by_user.entry(user.clone()).or_default();
                    open.insert(*seq, (user.clone(), list.len()));
                    list.push(Attempt {
                        socket: log.id,
                        platform: platform.clone(),
                        iid: iid.clone(),
                        sent: *t,
                        answer: None,
                    });
                }
                Ev::Response { seq, code } => {
                    if let Some((user, i)) = open.remove(seq) {
                        if let Some(a) = by_user.get_mut(&user).and_then(|l| l.get_mut(i)) {
                            a.answer = Some((*t, *code));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    by_user
}

/// Whether some other login of `user` explains this kick of `victim`, seen at `at`.
fn explained(
    all: &BTreeMap<String, Vec<Attempt>>,
    socket: u64,
    user: &str,
    victim: &Victim,
    at: u64,
    reason: &str,
    by: Option<&str>,
) -> bool {
    let (vp, viid, since) = victim;
    let Some(list) = all.get(user) else {
        return false;
    };
    list.iter().any(|a| {
        let could_be_later = a.socket != socket
            && a.sent <= at
            && a.answer
                .is_none_or(|(t, code)| t >= *since && (code == 0 || code == 70169));
        could_be_later
            && match reason {
                "replaced" => viid.is_some() && a.platform == *vp && a.iid == *viid,
                "multi_device" => {
                    by.is_some_and(|b| a.platform == b && policy::group(b) == policy::group(vp))
                }
                _ => false,
            }
    })
}

/// Checks every socket's log; returns the violations and the figures.
pub fn check_logs(logs: &[SocketLog], killed_at: &[Vec<Option<u64>>]) -> (Vec<String>, Stats) {
    let all = attempts(logs);
    let mut v = Vec::new();
    let mut st = Stats::default();
    for log in logs {
        st.sockets += 1;
        let died = killed(killed_at, log);
        let tag = format!(
            "socket {} (node {} gen {})",
            log.id, log.node, log.generation
        );
        let mut session: Option<(String, String, Option<String>, u64)> = None;
        let mut pending: BTreeMap<u64, Req> = BTreeMap::new();
        let mut kicks = 0;
        let mut closed = false;
        let mut saw_4501 = false;
        for (t, ev) in &log.events {
            if closed {
                v.push(format!("{tag}: {ev:?} after the socket closed"));
                continue;
            }
            match ev {
                Ev::Connected => {}
                Ev::Login {
                    seq,
                    user,
                    platform,
                    iid,
                } => {
                    st.logins += 1;
                    match &session {
                        Some((u, ..)) if u == user => st.relogins += 1,
                        Some(_) => st.switches += 1,
                        None => {}
                    }
                    pending.insert(
                        *seq,
                        Req::Login {
                            user: user.clone(),
                            platform: platform.clone(),
                            iid: iid.clone(),
                            sent: *t,
                        },
                    );
                }
                Ev::Logout { seq } => {
                    st.logouts += 1;
                    pending.insert(*seq, Req::Logout);
                }
                Ev::Response { seq, code } => {
                    if kicks > 0 {
                        v.push(format!(
                            "{tag}: a response (seq {seq}, code {code}) after kicked_offline"
                        ));
                    }
                    match pending.remove(seq) {
                        None => v.push(format!("{tag}: a response to unknown seq {seq}")),
                        Some(Req::Login {
                            user,
                            platform,
                            iid,
                            sent,
                        }) => {
                            *st.login_codes.entry(*code).or_default() += 1;
                            match code {
                                0 => session = Some((user, platform, iid, sent)),
                                70169 => {}
                                c => v.push(format!("{tag}: login of {user} answered {c}")),
                            }
                        }
                        Some(Req::Logout) => match code {
                            0 => session = None,
                            c => v.push(format!("{tag}: logout answered {c}")),
                        },
                    }
                }
                Ev::Kicked { reason, by } => {
                    kicks += 1;
                    *st.kicks.entry(reason.clone()).or_default() += 1;
                    if kicks > 1 {
                        v.push(format!("{tag}: kicked_offline #{kicks}"));
                    }
                    // The session hit: the one logged in, or one whose login is under way (a
                    // kick that beat its answer, or a re-login superseded by the kick).
                    let mut victims: Vec<(String, Victim)> = Vec::new();
                    if let Some((u, p, i, s)) = &session {
                        victims.push((u.clone(), (p.clone(), i.clone(), *s)));
                    }
                    for r in pending.values() {
                        if let Req::Login {
                            user,
                            platform,
                            iid,
                            sent,
                        } = r
                        {
                            victims.push((user.clone(), (platform.clone(), iid.clone(), *sent)));
                        }
                    }
                    let logout_pending = pending.values().any(|r| matches!(r, Req::Logout));
                    if victims.is_empty() && !logout_pending {
                        v.push(format!(
                            "{tag}: kicked_offline ({reason}) with no session and no login under way"
                        ));
                    } else if !victims.is_empty()
                        && !victims.iter().any(|(u, vic)| {
                            explained(&all, log.id, u, vic, *t, reason, by.as_deref())
                        })
                    {
                        v.push(format!(
                            "{tag}: kicked_offline ({reason}, by {by:?}) explained by no other login of {:?}",
                            victims
                        ));
                    }
                    session = None;
                }
                Ev::Push(kind) => v.push(format!("{tag}: unexpected push {kind}")),
                Ev::Closed(Some(4501)) => {
                    closed = true;
                    saw_4501 = true;
                    st.closes_4501 += 1;
                    if kicks == 0 {
                        v.push(format!("{tag}: closed 4501 without kicked_offline"));
                    }
                }
                Ev::Closed(Some(code)) => {
                    closed = true;
                    v.push(format!("{tag}: closed by the server with {code}"));
                }
                Ev::Closed(None) => {
                    closed = true;
                    if died {
                        st.died_with_node += 1;
                    } else {
                        v.push(format!(
                            "{tag}: the connection died without a close frame, its node alive"
                        ));
                    }
                }
                Ev::Unanswered { seq } => {
                    closed = true;
                    if let Some(Req::Login { .. }) = pending.get(seq) {
                        st.logins_unanswered += 1;
                    }
                    if !died {
                        v.push(format!(
                            "{tag}: request seq {seq} unanswered for {:?}, its node alive",
                            crate::client::ANSWER_WAIT
                        ));
                    }
                }
                Ev::NoCloseAfterKick => {
                    closed = true;
                    if !died {
                        v.push(format!("{tag}: kicked_offline but no close followed"));
                    }
                }
                Ev::ClientClose => {
                    closed = true;
                    st.client_closes += 1;
                }
                Ev::ClientDrop => {
                    closed = true;
                    st.client_drops += 1;
                }
            }
        }
        if kicks > 0 && !saw_4501 && !closed {
            v.push(format!("{tag}: kicked_offline, still open at the end"));
        }
    }
    (v, st)
}

/// Sockets frozen with their node (open across one of its SIGSTOPs, as the client saw it), and how
/// many of them got `kicked_offline` within 15 s of the SIGCONT: sessions that lost to a newer login
/// while their node was presumed dead, and were closed on waking.
pub fn frozen(logs: &[SocketLog], stops: &[Vec<(usize, u64, u64)>]) -> (u64, u64) {
    let (mut frozen, mut kicked_on_waking) = (0, 0);
    for log in logs {
        let Some(windows) = stops.get(log.node) else {
            continue;
        };
        let first = log.events.first().map_or(0, |e| e.0);
        let last = log.events.last().map_or(0, |e| e.0);
        for &(g, from, to) in windows {
            let open_at_end = !log.events.iter().any(|(_, e)| {
                matches!(
                    e,
                    Ev::Closed(_) | Ev::ClientClose | Ev::ClientDrop | Ev::Unanswered { .. }
                )
            });
            if g != log.generation || first > from || (last < to && !open_at_end) {
                continue;
            }
            frozen += 1;
            if log.events.iter().any(|(t, e)| {
                matches!(e, Ev::Kicked { .. }) && *t >= to && *t <= to.saturating_add(15_000)
            }) {
                kicked_on_waking += 1;
            }
        }
    }
    (frozen, kicked_on_waking)
}

/// One node's answer to `/v1/online` for every user: user → instances.
pub type Presence = BTreeMap<String, Vec<Inst>>;

/// Checks what Redis stores (every entry, with its node id) against the open sockets: the same
/// (user, platform, instance id, node process), so no entry of a dead or killed process is left and
/// no socket is counted twice or on the wrong node. `node_id` maps a socket's (node, generation)
/// to the node id its process runs under.
pub fn check_stored(
    stored: &Result<Vec<crate::cluster::Stored>, String>,
    views: &[View],
    node_id: impl Fn(usize, usize) -> String,
) -> Vec<String> {
    let stored = match stored {
        Ok(s) => s,
        Err(e) => return vec![format!("reading Redis: {e}")],
    };
    let mut in_redis: Vec<&crate::cluster::Stored> = stored.iter().collect();
    in_redis.sort();
    let open: Vec<crate::cluster::Stored> = views
        .iter()
        .map(|s| {
            (
                s.user.clone(),
                s.platform.clone(),
                s.iid.clone(),
                node_id(s.node, s.generation),
            )
        })
        .collect();
    let mut open_sorted: Vec<&crate::cluster::Stored> = open.iter().collect();
    open_sorted.sort();
    if in_redis == open_sorted {
        return Vec::new();
    }
    let extra: Vec<_> = in_redis
        .iter()
        .filter(|e| !open_sorted.contains(e))
        .collect();
    let missing: Vec<_> = open_sorted
        .iter()
        .filter(|e| !in_redis.contains(e))
        .collect();
    vec![format!(
        "Redis entries and open sockets differ: in Redis only {extra:?}; open only {missing:?} ({} in Redis, {} open)",
        in_redis.len(),
        open_sorted.len()
    )]
}

/// Checks presence against the policy and the open sockets; empty when everything holds.
pub fn check_presence(nodes: &[Result<Presence, String>], views: &[View]) -> Vec<String> {
    let mut v = Vec::new();
    let mut ok: Vec<(usize, Presence)> = Vec::new();
    for (i, p) in nodes.iter().enumerate() {
        match p {
            Ok(p) => ok.push((i, normalise(p))),
            Err(e) => v.push(format!("node {i}: /v1/online failed: {e}")),
        }
    }
    let Some((first, reference)) = ok.first().cloned() else {
        v.push("no node answered /v1/online".into());
        return v;
    };
    for (i, p) in &ok[1..] {
        if *p != reference {
            v.push(format!(
                "node {i} and node {first} disagree: {p:?} vs {reference:?}"
            ));
        }
    }
    let mut open: Presence = BTreeMap::new();
    for s in views {
        open.entry(s.user.clone())
            .or_default()
            .push((s.platform.clone(), s.iid.clone()));
    }
    let open = normalise(&open);
    for (user, inst) in &reference {
        for e in policy::violations(inst) {
            v.push(format!("policy, user {user}: {e} (presence {inst:?})"));
        }
    }
    for (user, inst) in &open {
        for e in policy::violations(inst) {
            v.push(format!("policy, user {user}: {e} (open sockets {inst:?})"));
        }
    }
    let users: std::collections::BTreeSet<&String> = reference.keys().chain(open.keys()).collect();
    for user in users {
        let (p, o) = (reference.get(user), open.get(user));
        if p != o {
            v.push(format!(
                "user {user}: presence {:?} but open logged-in sockets {:?}",
                p.cloned().unwrap_or_default(),
                o.cloned().unwrap_or_default()
            ));
        }
    }
    v
}

/// Sorted instance lists, offline users left out.
fn normalise(p: &Presence) -> Presence {
    p.iter()
        .filter(|(_, i)| !i.is_empty())
        .map(|(u, i)| {
            let mut i = i.clone();
            i.sort();
            (u.clone(), i)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(id: u64, events: Vec<(u64, Ev)>) -> SocketLog {
        SocketLog {
            id,
            node: 0,
            generation: 0,
            events,
        }
    }

    fn login(seq: u64, user: &str, platform: &str, iid: Option<&str>) -> Ev {
        Ev::Login {
            seq,
            user: user.into(),
            platform: platform.into(),
            iid: iid.map(Into::into),
        }
    }

    fn kicked(reason: &str, by: &str) -> Ev {
        Ev::Kicked {
            reason: reason.into(),
            by: Some(by.into()),
        }
    }

    fn ok(seq: u64) -> Ev {
        Ev::Response { seq, code: 0 }
    }

    /// Socket 1 (android) is evicted by socket 2's iphone login: push, then 4501.
    fn good_pair() -> Vec<SocketLog> {
        vec![
            log(
                1,
                vec![
                    (10, Ev::Connected),
                    (11, login(1, "u", "android", None)),
                    (12, ok(1)),
                    (30, kicked("multi_device", "iphone")),
                    (31, Ev::Closed(Some(4501))),
                ],
            ),
            log(
                2,
                vec![
                    (20, Ev::Connected),
                    (21, login(1, "u", "iphone", None)),
                    (29, ok(1)),
                ],
            ),
        ]
    }

    #[test]
    fn a_clean_eviction_passes() {
        let (v, st) = check_logs(&good_pair(), &[vec![None]]);
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(st.kicks["multi_device"], 1);
        assert_eq!(st.closes_4501, 1);
    }

    #[test]
    fn a_double_kick_is_reported() {
        let mut logs = good_pair();
        logs[0]
            .events
            .insert(4, (30, kicked("multi_device", "iphone")));
        let (v, _) = check_logs(&logs, &[vec![None]]);
        assert!(v.iter().any(|e| e.contains("kicked_offline #2")), "{v:?}");
    }

    #[test]
    fn a_4501_without_push_is_reported() {
        let mut logs = good_pair();
        logs[0].events.remove(3);
        let (v, _) = check_logs(&logs, &[vec![None]]);
        assert!(v.iter().any(|e| e.contains("4501 without")), "{v:?}");
    }

    #[test]
    fn an_unexplained_kick_is_reported() {
        // The only other login was answered before the victim's login was even sent.
        let logs = vec![
            log(
                1,
                vec![
                    (20, login(1, "u", "android", None)),
                    (21, ok(1)),
                    (30, kicked("multi_device", "iphone")),
                    (31, Ev::Closed(Some(4501))),
                ],
            ),
            log(2, vec![(5, login(1, "u", "iphone", None)), (6, ok(1))]),
        ];
        let (v, _) = check_logs(&logs, &[vec![None]]);
        assert!(v.iter().any(|e| e.contains("explained by no")), "{v:?}");
        // A replaced kick needs the same instance id.
        let logs = vec![
            log(
                1,
                vec![
                    (20, login(1, "u", "web", Some("a"))),
                    (21, ok(1)),
                    (30, kicked("replaced", "web")),
                    (31, Ev::Closed(Some(4501))),
                ],
            ),
            log(2, vec![(25, login(1, "u", "web", Some("b"))), (26, ok(1))]),
        ];
        let (v, _) = check_logs(&logs, &[vec![None]]);
        assert!(v.iter().any(|e| e.contains("explained by no")), "{v:?}");
    }

    #[test]
    fn a_dead_connection_counts_only_with_a_killed_node() {
        let logs = vec![log(
            1,
            vec![(1, login(1, "u", "web", None)), (2, Ev::Closed(None))],
        )];
        let (v, _) = check_logs(&logs, &[vec![None]]);
        assert_eq!(v.len(), 1, "{v:?}");
        let (v, st) = check_logs(&logs, &[vec![Some(2)]]);
        assert!(v.is_empty(), "{v:?}");
        assert_eq!(st.died_with_node, 1);
        let logs = vec![log(
            1,
            vec![(1, login(1, "u", "web", None)), (2, Ev::Closed(Some(4000)))],
        )];
        assert_eq!(check_logs(&logs, &[vec![None]]).0.len(), 1);
    }

    fn view(user: &str, platform: &str, iid: Option<&str>) -> View {
        View {
            user: user.into(),
            platform: platform.into(),
            iid: iid.map(Into::into),
            node: 0,
            generation: 0,
        }
    }

    #[test]
    fn redis_must_hold_exactly_the_open_sockets() {
        let views = vec![view("a", "web", None)];
        let id = |n: usize, g: usize| format!("chaos{n}-g{g}");
        let entry = |node: &str| ("a".to_owned(), "web".to_owned(), None, node.to_owned());
        assert!(check_stored(&Ok(vec![entry("chaos0-g0")]), &views, id).is_empty());
        // The entry of a killed process (g0) while the socket lives on g1's: wrong node.
        let mut moved = views.clone();
        moved[0].generation = 1;
        assert_eq!(
            check_stored(&Ok(vec![entry("chaos0-g0")]), &moved, id).len(),
            1
        );
        // A duplicate.
        let two = vec![entry("chaos0-g0"), entry("chaos0-g0")];
        assert_eq!(check_stored(&Ok(two), &views, id).len(), 1);
    }

    fn presence(entries: &[(&str, &str, Option<&str>)]) -> Presence {
        let mut p: Presence = BTreeMap::new();
        for (u, pl, i) in entries {
            p.entry((*u).into())
                .or_default()
                .push(((*pl).into(), i.map(Into::into)));
        }
        p
    }

    #[test]
    fn presence_must_equal_the_open_sockets() {
        let views = vec![view("a", "web", None), view("a", "iphone", Some("d"))];
        let p = presence(&[("a", "iphone", Some("d")), ("a", "web", None)]);
        let mut with_offline = p.clone();
        with_offline.insert("b".into(), vec![]);
        assert!(check_presence(&[Ok(p.clone()), Ok(with_offline)], &views).is_empty());
        // A ghost entry, a missing one, and two nodes that disagree.
        let ghost = presence(&[
            ("a", "iphone", Some("d")),
            ("a", "web", None),
            ("c", "mac", None),
        ]);
        let v = check_presence(&[Ok(ghost)], &views);
        assert!(v.iter().any(|e| e.starts_with("user c:")), "{v:?}");
        let v = check_presence(&[Ok(p.clone())], &views[..1]);
        assert!(v.iter().any(|e| e.starts_with("user a:")), "{v:?}");
        let v = check_presence(&[Ok(p), Ok(presence(&[]))], &views);
        assert!(v.iter().any(|e| e.contains("disagree")), "{v:?}");
    }

    #[test]
    fn a_policy_breach_is_reported() {
        let views = vec![view("a", "android", None), view("a", "iphone", None)];
        let p = presence(&[("a", "android", None), ("a", "iphone", None)]);
        let v = check_presence(&[Ok(p)], &views);
        assert_eq!(
            v.iter().filter(|e| e.starts_with("policy")).count(),
            2,
            "{v:?}"
        );
    }
}
