//! The multi-device policy the nodes run ([`crate::cluster::POLICY_TOML`]: `triple`, web and mac
//! up to 2 instances, every other platform 1), as the checker needs it: groups, caps, and the test
//! of one user's instances against them (contract §8: one platform per group, at most its cap, one
//! instance per platform and instance id).

use std::collections::BTreeMap;

/// The platforms the clients use.
pub const PLATFORMS: [&str; 7] = [
    "android", "iphone", "ipad", "windows", "mac", "linux", "web",
];

/// The exclusive group of a platform under `triple`.
pub fn group(platform: &str) -> u8 {
    match platform {
        "android" | "iphone" | "ipad" => 0,
        "windows" | "mac" | "linux" => 1,
        _ => 2,
    }
}

/// How many instances a platform may have.
pub fn cap(platform: &str) -> usize {
    match platform {
        "web" | "mac" => 2,
        _ => 1,
    }
}

/// One online instance: (platform, instance id).
pub type Inst = (String, Option<String>);

/// What is wrong with one user's instances (empty when the policy holds).
pub fn violations(instances: &[Inst]) -> Vec<String> {
    let mut out = Vec::new();
    let mut by_group: BTreeMap<u8, BTreeMap<&str, usize>> = BTreeMap::new();
    for (p, _) in instances {
        *by_group
            .entry(group(p))
            .or_default()
            .entry(p.as_str())
            .or_default() += 1;
    }
    for platforms in by_group.values() {
        if platforms.len() > 1 {
            out.push(format!(
                "platforms of one exclusive group online together: {:?}",
                platforms.keys().collect::<Vec<_>>()
            ));
        }
        for (p, n) in platforms {
            if *n > cap(p) {
                out.push(format!("{n} instances on {p} (cap {})", cap(p)));
            }
        }
    }
    let mut seen = BTreeMap::new();
    for (p, iid) in instances {
        if let Some(i) = iid {
            let n = seen.entry((p.as_str(), i.as_str())).or_insert(0);
            *n += 1;
            if *n == 2 {
                out.push(format!("two instances on {p} with instance id {i}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(p: &str, iid: Option<&str>) -> Inst {
        (p.to_owned(), iid.map(str::to_owned))
    }

    #[test]
    fn the_policy() {
        assert!(violations(&[i("web", None), i("web", Some("a")), i("iphone", None)]).is_empty());
        assert!(violations(&[i("mac", None), i("mac", None)]).is_empty());
        assert_eq!(
            violations(&[i("android", None), i("iphone", None)]).len(),
            1
        );
        assert_eq!(violations(&vec![i("web", None); 3]).len(), 1);
        assert_eq!(violations(&vec![i("linux", None); 2]).len(), 1);
        assert_eq!(
            violations(&[i("web", Some("t")), i("web", Some("t"))]),
            vec!["two instances on web with instance id t".to_owned()]
        );
    }
}
