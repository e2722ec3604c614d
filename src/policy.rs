//! The multi-device policy (contract §8) and the pure eviction decision.
//!
//! A [`Policy`] partitions the platforms into exclusive groups and caps instances per platform.
//! [`evict`] decides, for one user's instances and a newcomer, which instances must go and why. It is
//! a plain function with no locks or I/O so that every presence store (the in-process registry, and
//! a shared store in cluster mode) applies exactly the same rule.

use imgate_proto::{KickReason, Platform, ALL_PLATFORMS};

/// Exclusive groups and per-platform instance caps of one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Group number of each platform (by `Platform::index`); equal numbers are exclusive.
    group: [u8; 7],
    max_instances: [u32; 7],
}

impl Policy {
    /// `single`, `dual`, `triple` or `multi`.
    pub fn preset(name: &str) -> Option<Policy> {
        use Platform::*;
        let groups: Vec<Vec<Platform>> = match name {
            "single" => vec![ALL_PLATFORMS.to_vec()],
            "dual" => vec![vec![Android, Iphone, Ipad, Windows, Mac, Linux], vec![Web]],
            "triple" => vec![
                vec![Android, Iphone, Ipad],
                vec![Windows, Mac, Linux],
                vec![Web],
            ],
            "multi" => vec![],
            _ => return None,
        };
        Some(Policy::custom(&groups).expect("presets are valid partitions"))
    }

    /// Custom groups; an unlisted platform is alone. A platform may appear in one group only.
    pub fn custom(groups: &[Vec<Platform>]) -> Result<Policy, String> {
        // Platforms start alone (group 100 + index), listed ones take their group's number.
        let mut group = [0u8; 7];
        for p in ALL_PLATFORMS {
            group[p.index()] = 100 + p.index() as u8;
        }
        let mut listed = [false; 7];
        for (g, members) in groups.iter().enumerate() {
            for &p in members {
                if listed[p.index()] {
                    return Err(format!("platform {p} appears in more than one group"));
                }
                listed[p.index()] = true;
                group[p.index()] = g.min(99) as u8;
            }
        }
        if groups.len() > 99 {
            return Err("at most 99 groups".into());
        }
        Ok(Policy {
            group,
            max_instances: [1; 7],
        })
    }

    /// Sets the instance cap of a platform (at least 1).
    pub fn set_max_instances(&mut self, p: Platform, n: u32) {
        self.max_instances[p.index()] = n.max(1);
    }

    pub fn max_instances(&self, p: Platform) -> u32 {
        self.max_instances[p.index()]
    }

    /// Whether two platforms cannot be online together (a platform is in its own group).
    pub fn same_group(&self, a: Platform, b: Platform) -> bool {
        self.group[a.index()] == self.group[b.index()]
    }
}

/// What the policy needs to know of an instance already logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held<'a> {
    pub platform: Platform,
    pub instance_id: Option<&'a str>,
    /// Login order: smaller logged in earlier.
    pub order: u64,
}

/// Decides which held instances a newcomer on `platform` with `instance_id` evicts, in the order of
/// contract §8: the same platform and instance id (`Replaced`), the other platforms of its group, then
/// the earliest instances on its platform while the cap would be exceeded (both `MultiDevice`).
/// Returns indices into `held` with the reason; the newcomer always wins.
///
/// This is [`canonical`] with the newcomer as the newest entry.
pub fn evict(
    policy: &Policy,
    held: &[Held<'_>],
    platform: Platform,
    instance_id: Option<&str>,
) -> Vec<(usize, KickReason)> {
    let mut all = Vec::with_capacity(held.len() + 1);
    all.extend_from_slice(held);
    all.push(Held {
        platform,
        instance_id,
        order: u64::MAX,
    });
    let mut victims = canonical(policy, &all, held.len());
    victims.retain(|&(i, _)| i < held.len());
    victims
}

/// The canonical form of one user's entries in the exclusive group of `entries[anchor]`: which
/// entries must go so that the group satisfies the policy, the newest winning. Per platform and
/// instance id only the newest stays (`Replaced`); the platform of the newest remaining entry wins
/// the group, every other platform of the group goes (`MultiDevice`); on the winning platform the
/// newest `max_instances` stay (`MultiDevice` for the rest). Entries outside the group are untouched.
///
/// For a login (the anchor is the newest entry) this is exactly contract §8's steps 1 to 3. For a
/// restore of a known session with its original order (cluster mode, after data loss) older entries
/// lose, whichever side they are on. Orders must be distinct. The cluster's Lua script is a port of
/// this function, tested against it.
pub fn canonical(policy: &Policy, entries: &[Held<'_>], anchor: usize) -> Vec<(usize, KickReason)> {
    let group_platform = entries[anchor].platform;
    let in_group: Vec<usize> = (0..entries.len())
        .filter(|&i| policy.same_group(entries[i].platform, group_platform))
        .collect();
    let mut reason: Vec<Option<KickReason>> = vec![None; entries.len()];
    for &i in &in_group {
        let a = &entries[i];
        if a.instance_id.is_none() {
            continue;
        }
        let newer_twin = in_group.iter().any(|&j| {
            let b = &entries[j];
            j != i
                && b.platform == a.platform
                && b.instance_id == a.instance_id
                && b.order > a.order
        });
        if newer_twin {
            reason[i] = Some(KickReason::Replaced);
        }
    }
    let newest = in_group
        .iter()
        .copied()
        .filter(|&i| reason[i].is_none())
        .max_by_key(|&i| entries[i].order);
    if let Some(star) = newest.map(|i| entries[i].platform) {
        let mut on_star = Vec::new();
        for &i in &in_group {
            if reason[i].is_some() {
                continue;
            }
            if entries[i].platform == star {
                on_star.push(i);
            } else {
                reason[i] = Some(KickReason::MultiDevice);
            }
        }
        on_star.sort_unstable_by_key(|&i| std::cmp::Reverse(entries[i].order));
        for &i in on_star.iter().skip(policy.max_instances(star) as usize) {
            reason[i] = Some(KickReason::MultiDevice);
        }
    }
    reason
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|r| (i, r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Platform::*;

    fn h(platform: Platform, iid: Option<&str>, order: u64) -> Held<'_> {
        Held {
            platform,
            instance_id: iid,
            order,
        }
    }

    fn names(v: &[(usize, KickReason)]) -> Vec<(usize, &'static str)> {
        let mut v: Vec<_> = v.iter().map(|&(i, r)| (i, r.as_str())).collect();
        v.sort();
        v
    }

    #[test]
    fn presets_have_the_contract_groups() {
        let single = Policy::preset("single").unwrap();
        assert!(single.same_group(Web, Android) && single.same_group(Mac, Iphone));
        let dual = Policy::preset("dual").unwrap();
        assert!(dual.same_group(Android, Linux) && !dual.same_group(Web, Mac));
        let triple = Policy::preset("triple").unwrap();
        assert!(triple.same_group(Iphone, Ipad) && triple.same_group(Windows, Linux));
        assert!(!triple.same_group(Android, Windows) && !triple.same_group(Web, Mac));
        let multi = Policy::preset("multi").unwrap();
        for a in ALL_PLATFORMS {
            for b in ALL_PLATFORMS {
                assert_eq!(multi.same_group(a, b), a == b);
            }
        }
        assert!(Policy::preset("quad").is_none());
    }

    #[test]
    fn custom_groups_leave_unlisted_platforms_alone() {
        let p = Policy::custom(&[vec![Android, Iphone], vec![Windows, Mac]]).unwrap();
        assert!(p.same_group(Android, Iphone) && p.same_group(Windows, Mac));
        assert!(!p.same_group(Android, Windows));
        assert!(!p.same_group(Web, Linux) && !p.same_group(Ipad, Android));
        assert!(Policy::custom(&[vec![Web], vec![Web, Mac]]).is_err());
    }

    #[test]
    fn same_instance_id_is_replaced_first() {
        let p = Policy::preset("multi").unwrap();
        let held = [h(Web, Some("tab-1"), 1), h(Web, Some("tab-2"), 2)];
        let mut p2 = p.clone();
        p2.set_max_instances(Web, 10);
        assert_eq!(
            names(&evict(&p2, &held, Web, Some("tab-1"))),
            [(0, "replaced")]
        );
        // with cap 1 the replacement frees the slot the other tab still holds: it goes too
        assert_eq!(
            names(&evict(&p, &held, Web, Some("tab-1"))),
            [(0, "replaced"), (1, "multi_device")]
        );
        // same instance id on another platform is not a replacement
        assert_eq!(evict(&p2, &held, Mac, Some("tab-1")), []);
    }

    #[test]
    fn group_members_on_other_platforms_are_kicked() {
        let p = Policy::preset("dual").unwrap();
        let held = [h(Android, None, 1), h(Web, None, 2), h(Mac, None, 3)];
        assert_eq!(
            names(&evict(&p, &held, Iphone, None)),
            [(0, "multi_device"), (2, "multi_device")]
        );
        assert_eq!(names(&evict(&p, &held, Web, None)), [(1, "multi_device")]);
    }

    #[test]
    fn the_earliest_goes_when_the_cap_is_reached() {
        let mut p = Policy::preset("multi").unwrap();
        p.set_max_instances(Web, 3);
        // held out of order: the earliest is order 1 at index 2
        let held = [h(Web, None, 5), h(Web, None, 9), h(Web, None, 1)];
        assert_eq!(names(&evict(&p, &held, Web, None)), [(2, "multi_device")]);
        let two = [h(Web, None, 5), h(Web, None, 9)];
        assert_eq!(evict(&p, &two, Web, None), []);
        // a cap lowered by reconfiguration evicts down to cap - 1 before the newcomer joins
        p.set_max_instances(Web, 1);
        assert_eq!(
            names(&evict(&p, &held, Web, None)),
            [
                (0, "multi_device"),
                (1, "multi_device"),
                (2, "multi_device")
            ]
        );
    }

    #[test]
    fn a_restore_with_an_older_order_loses() {
        let mut p = Policy::preset("dual").unwrap();
        p.set_max_instances(Web, 2);
        // a restored android (order 1) against a newer iphone (order 5): android loses
        let e = [h(Iphone, None, 5), h(Android, None, 1)];
        assert_eq!(names(&canonical(&p, &e, 1)), [(1, "multi_device")]);
        // a restored web tab older than two newer tabs loses the cap
        let e = [h(Web, None, 5), h(Web, None, 6), h(Web, None, 2)];
        assert_eq!(names(&canonical(&p, &e, 2)), [(2, "multi_device")]);
        // a restored same-instance entry older than the present one is the replaced one
        let e = [h(Web, Some("t"), 9), h(Web, Some("t"), 3)];
        assert_eq!(names(&canonical(&p, &e, 1)), [(1, "replaced")]);
        // a newer restore wins as a login would
        let e = [h(Web, Some("t"), 3), h(Web, Some("t"), 9)];
        assert_eq!(names(&canonical(&p, &e, 1)), [(0, "replaced")]);
    }

    #[test]
    fn result_always_satisfies_the_policy() {
        // exhaustive over small states: after eviction plus the newcomer, the policy holds
        let mut p = Policy::preset("triple").unwrap();
        p.set_max_instances(Web, 2);
        let plats = [Android, Iphone, Windows, Web];
        let iids = [None, Some("a"), Some("b")];
        let mut held_sets: Vec<Vec<Held>> = vec![vec![]];
        for _ in 0..3 {
            let mut next = vec![];
            for s in &held_sets {
                for &pl in &plats {
                    for &iid in &iids {
                        let mut s2 = s.clone();
                        s2.push(h(pl, iid, s.len() as u64));
                        next.push(s2);
                    }
                }
            }
            held_sets.extend(next);
        }
        for held in &held_sets {
            for &pl in &plats {
                for &iid in &iids {
                    let v = evict(&p, held, pl, iid);
                    let mut left: Vec<Held> = held
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !v.iter().any(|(j, _)| j == i))
                        .map(|(_, x)| *x)
                        .collect();
                    left.push(h(pl, iid, 99));
                    let on = left.iter().filter(|x| x.platform == pl).count();
                    assert!(on as u32 <= p.max_instances(pl));
                    for x in &left {
                        assert!(x.platform == pl || !p.same_group(x.platform, pl));
                        if iid.is_some() && x.order != 99 && x.platform == pl {
                            assert_ne!(x.instance_id, iid);
                        }
                    }
                }
            }
        }
    }
}
