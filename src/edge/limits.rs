//! Counting sockets per client address (contract §14 `max_connections_per_ip`, and §16's pending
//! sockets per address): one small counter per address that has sockets, in a sharded map, taken and
//! given back in synchronous calls (never across an await), with no allocation per socket: a socket
//! holds a [`Slot`] (the address and a handle), and the map entry goes when its count is 0.
//!
//! An IPv6 address counts by its /64 (one host usually has a whole /64); an IPv4-mapped IPv6
//! address counts as its IPv4 address.

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// The counted unit of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpKey {
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6Prefix(u64),
}

impl IpKey {
    pub fn of(ip: IpAddr) -> IpKey {
        match super::proxy::canonical(ip) {
            IpAddr::V4(v4) => IpKey::V4(v4),
            IpAddr::V6(v6) => IpKey::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

/// Sockets per address.
#[derive(Debug, Default)]
pub struct PerIp {
    counts: DashMap<IpKey, u32>,
}

/// One socket's place in a [`PerIp`] count, given back on drop.
#[derive(Debug)]
pub struct Slot {
    owner: Option<(Arc<PerIp>, IpKey)>,
}

impl Slot {
    /// A slot that counts nothing (the limit is off).
    pub fn none() -> Slot {
        Slot { owner: None }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((per_ip, key)) = self.owner.take() {
            per_ip.release(key);
        }
    }
}

impl PerIp {
    pub fn new() -> Arc<PerIp> {
        Arc::new(PerIp::default())
    }

    /// Takes a place for `ip` unless it already holds `limit` (0: no limit, nothing counted).
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<Slot> {
        if limit == 0 {
            return Some(Slot::none());
        }
        let key = IpKey::of(ip);
        match self.counts.entry(key) {
            Entry::Occupied(mut e) => {
                if *e.get() as usize >= limit {
                    return None;
                }
                *e.get_mut() += 1;
            }
            Entry::Vacant(v) => {
                v.insert(1);
            }
        }
        Some(Slot {
            owner: Some((Arc::clone(self), key)),
        })
    }

    fn release(&self, key: IpKey) {
        self.counts.remove_if_mut(&key, |_, n| {
            *n -= 1;
            *n == 0
        });
    }

    /// How many places `ip` holds.
    pub fn count(&self, ip: IpAddr) -> u32 {
        self.counts.get(&IpKey::of(ip)).map_or(0, |n| *n)
    }

    /// Addresses with at least one place.
    pub fn addresses(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_gives_back_on_drop() {
        let p = PerIp::new();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = p.acquire(a, 2).unwrap();
        let s2 = p.acquire(a, 2).unwrap();
        assert!(p.acquire(a, 2).is_none(), "a third socket of a is refused");
        let s3 = p.acquire(b, 2).unwrap();
        assert_eq!((p.count(a), p.count(b)), (2, 1));
        drop(s1);
        let s4 = p.acquire(a, 2).unwrap();
        drop((s2, s3, s4));
        assert_eq!(p.addresses(), 0, "no entry is left behind");
        let free = p.acquire(a, 0).unwrap();
        assert_eq!(p.count(a), 0, "limit 0 counts nothing");
        drop(free);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let p = PerIp::new();
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let z: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _s = p.acquire(x, 1).unwrap();
        assert!(p.acquire(y, 1).is_none(), "same /64");
        assert!(p.acquire(z, 1).is_some(), "another /64");
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let _t = p.acquire(v4, 1).unwrap();
        assert!(p.acquire(mapped, 1).is_none());
    }
}

/// The sockets not logged in (contract §16): in total, and per client address.
#[derive(Debug)]
pub struct Pending {
    /// `imgate_pending_sockets`.
    total: prometheus_client::metrics::gauge::Gauge,
    per_ip: Arc<PerIp>,
}

/// One socket's place in the pending counts, given back on drop (at login or close).
#[derive(Debug)]
pub struct Waiting {
    total: prometheus_client::metrics::gauge::Gauge,
    slot: Slot,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.total.dec();
    }
}

impl Pending {
    pub fn new(total: prometheus_client::metrics::gauge::Gauge) -> Pending {
        Pending {
            total,
            per_ip: PerIp::new(),
        }
    }

    /// A new connection from `ip`: refused (`None`) when `max_pending` sockets are waiting, or,
    /// when the client's address is already known (`known`: the TCP peer is the client), when it
    /// holds `max_pending_per_ip` of them.
    pub fn enter(&self, cfg: &crate::config::Config, ip: IpAddr, known: bool) -> Option<Waiting> {
        if cfg.max_pending > 0 && self.total.get() >= cfg.max_pending as i64 {
            return None;
        }
        let slot = if known {
            self.per_ip.acquire(ip, cfg.max_pending_per_ip)?
        } else {
            Slot::none()
        };
        self.total.inc();
        Some(Waiting {
            total: self.total.clone(),
            slot,
        })
    }

    /// At the upgrade, once the client's address is known (behind a proxy): refused when it
    /// holds `max_pending_per_ip` waiting sockets. A place taken at accept is kept.
    pub fn place(&self, w: &mut Waiting, cfg: &crate::config::Config, client: IpAddr) -> bool {
        if w.slot.owner.is_some() || cfg.max_pending_per_ip == 0 {
            return true;
        }
        match self.per_ip.acquire(client, cfg.max_pending_per_ip) {
            Some(s) => {
                w.slot = s;
                true
            }
            None => false,
        }
    }

    /// A socket that logged out (or whose UserSig expired) waits again; it is counted whatever
    /// the caps (they refuse new sockets, never close an open one).
    pub fn reenter(&self, client: IpAddr) -> Waiting {
        self.total.inc();
        Waiting {
            total: self.total.clone(),
            slot: self
                .per_ip
                .acquire(client, usize::MAX)
                .unwrap_or_else(Slot::none),
        }
    }

    /// Sockets waiting (for tests).
    pub fn waiting(&self) -> i64 {
        self.total.get()
    }
}
