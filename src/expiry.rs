//! The UserSig expiry timer wheel.
//!
//! A UserSig expires on a whole second (`TLS.time + TLS.expire`), so the wheel has one-second slots:
//! a hashed timing wheel of [`SLOTS`] slots, each a doubly linked list threaded through one slab of
//! entries. Schedule and cancel are O(1) with no allocation once the slab has grown; an entry is
//! 32 bytes for the gateway's payload. A deadline more than one lap away stays in its slot and is
//! skipped on the laps before it is due (with 180-day tickets an entry is looked at once per lap,
//! `SLOTS` seconds).
//!
//! [`Wheel`] is a plain struct; [`run`] is the task that drives the gateway's shared wheel.

use crate::outbox::{Event, Outbox};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

/// Slots in the wheel (seconds per lap).
pub const SLOTS: usize = 4096;
const NIL: u32 = u32::MAX;

/// Identifies a scheduled entry; stale keys (fired or cancelled) are recognised by generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelKey {
    index: u32,
    generation: u32,
}

#[derive(Debug)]
struct Entry<T> {
    /// Deadline in unix seconds; u32 lasts until 2106.
    deadline: u32,
    generation: u32,
    prev: u32,
    next: u32,
    item: Option<T>,
}

/// A hashed timing wheel of one-second slots. An entry with deadline `d` fires on the first
/// [`Wheel::advance`] with `now_ms > d * 1000` (the UserSig expiry rule).
#[derive(Debug)]
pub struct Wheel<T> {
    heads: Box<[u32]>,
    entries: Vec<Entry<T>>,
    free: u32,
    len: usize,
    /// The next second whose slot has not been processed.
    cursor: u64,
}

impl<T> Wheel<T> {
    /// A wheel whose time starts at `now_secs`.
    pub fn new(now_secs: u64) -> Wheel<T> {
        Wheel {
            heads: vec![NIL; SLOTS].into_boxed_slice(),
            entries: Vec::new(),
            free: NIL,
            len: 0,
            cursor: now_secs,
        }
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes per slab entry (for the benchmark report).
    pub const fn entry_size() -> usize {
        std::mem::size_of::<Entry<T>>()
    }

    /// Schedules `item` for `deadline_secs`. A deadline already passed fires on the next advance.
    pub fn schedule(&mut self, deadline_secs: u64, item: T) -> WheelKey {
        let deadline = deadline_secs.max(self.cursor).min(u32::MAX as u64) as u32;
        let slot = deadline as usize % SLOTS;
        let head = self.heads[slot];
        let index = if self.free != NIL {
            let i = self.free;
            let e = &mut self.entries[i as usize];
            self.free = e.next;
            e.deadline = deadline;
            e.prev = NIL;
            e.next = head;
            e.item = Some(item);
            i
        } else {
            let i = self.entries.len() as u32;
            assert!(i != NIL, "expiry wheel is full");
            self.entries.push(Entry {
                deadline,
                generation: 0,
                prev: NIL,
                next: head,
                item: Some(item),
            });
            i
        };
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        self.heads[slot] = index;
        self.len += 1;
        WheelKey {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Removes a scheduled entry; `None` when it already fired or was cancelled.
    pub fn cancel(&mut self, key: WheelKey) -> Option<T> {
        let e = self.entries.get(key.index as usize)?;
        if e.generation != key.generation || e.item.is_none() {
            return None;
        }
        Some(self.remove(key.index))
    }

    fn remove(&mut self, index: u32) -> T {
        let (prev, next, slot) = {
            let e = &self.entries[index as usize];
            (e.prev, e.next, e.deadline as usize % SLOTS)
        };
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.heads[slot] = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        let e = &mut self.entries[index as usize];
        e.generation = e.generation.wrapping_add(1);
        e.next = self.free;
        e.prev = NIL;
        self.free = index;
        self.len -= 1;
        e.item.take().expect("a linked entry holds an item")
    }

    /// Fires every entry whose deadline `d` satisfies `d * 1000 < now_ms`, pushing their items.
    pub fn advance(&mut self, now_ms: u64, fired: &mut Vec<T>) {
        if now_ms == 0 {
            return;
        }
        let last = (now_ms - 1) / 1000; // the latest second that is over
        if last < self.cursor {
            return;
        }
        let seconds = (last - self.cursor + 1).min(SLOTS as u64);
        for s in 0..seconds {
            let slot = ((self.cursor + s) % SLOTS as u64) as usize;
            let mut i = self.heads[slot];
            while i != NIL {
                let e = &self.entries[i as usize];
                let next = e.next;
                if u64::from(e.deadline) <= last {
                    fired.push(self.remove(i));
                }
                i = next;
            }
        }
        self.cursor = last + 1;
    }
}

/// The gateway's expiry payload: the socket to tell and the session it is about.
pub type Target = (Arc<Outbox>, u64);

/// The gateway's shared wheel.
pub type SharedWheel = Mutex<Wheel<Target>>;

/// Tick period of the driver. Pushes land within this (plus scheduling) after expiry.
pub const TICK: Duration = Duration::from_millis(200);

/// Drives the shared wheel: every tick, fires what is due and tells each socket after the lock is
/// released. Runs until the task is dropped.
pub async fn run(wheel: Arc<SharedWheel>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fired = Vec::new();
    loop {
        tick.tick().await;
        wheel.lock().advance(crate::clock::now_ms(), &mut fired);
        for (outbox, session) in fired.drain(..) {
            outbox.push(Event::Expired { session });
        }
        if fired.capacity() > 4096 {
            fired = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    fn fire(w: &mut Wheel<u32>, now_ms: u64) -> Vec<u32> {
        let mut v = vec![];
        w.advance(now_ms, &mut v);
        v.sort();
        v
    }

    #[test]
    fn fires_after_the_deadline_second_not_at_it() {
        let mut w = Wheel::new(T0);
        w.schedule(T0 + 2, 1);
        assert_eq!(fire(&mut w, (T0 + 2) * 1000), Vec::<u32>::new());
        assert_eq!(fire(&mut w, (T0 + 2) * 1000 + 1), vec![1]);
        assert!(w.is_empty());
    }

    #[test]
    fn cancel_is_exact_and_stale_keys_do_nothing() {
        let mut w = Wheel::new(T0);
        let a = w.schedule(T0 + 5, 1);
        let b = w.schedule(T0 + 5, 2);
        let c = w.schedule(T0 + 5, 3);
        assert_eq!(w.cancel(b), Some(2));
        assert_eq!(w.cancel(b), None);
        let d = w.schedule(T0 + 6, 4); // reuses b's slot with a new generation
        assert_eq!(w.cancel(b), None, "stale key must not cancel the reuser");
        assert_eq!(fire(&mut w, (T0 + 10) * 1000), vec![1, 3, 4]);
        assert_eq!(w.cancel(a), None);
        assert_eq!(w.cancel(c), None);
        assert_eq!(w.cancel(d), None);
    }

    #[test]
    fn deadlines_beyond_a_lap_wait_for_their_lap() {
        let mut w = Wheel::new(T0);
        w.schedule(T0 + 1, 1);
        w.schedule(T0 + 1 + SLOTS as u64, 2);
        w.schedule(T0 + 1 + 3 * SLOTS as u64, 3);
        assert_eq!(fire(&mut w, (T0 + 2) * 1000), vec![1]);
        assert_eq!(fire(&mut w, (T0 + 2 + SLOTS as u64) * 1000), vec![2]);
        // a long pause (more than a lap at once) still fires everything due
        assert_eq!(fire(&mut w, (T0 + 10 * SLOTS as u64) * 1000), vec![3]);
    }

    #[test]
    fn past_deadlines_fire_on_the_next_advance() {
        let mut w = Wheel::new(T0);
        w.advance((T0 + 50) * 1000, &mut vec![]);
        w.schedule(T0, 7);
        assert_eq!(fire(&mut w, (T0 + 50) * 1000 + 1), vec![7]);
    }

    #[test]
    fn entries_stay_small() {
        assert!(
            Wheel::<Target>::entry_size() <= 32,
            "{}",
            Wheel::<Target>::entry_size()
        );
    }

    #[test]
    fn many_entries_random_cancel() {
        let mut w = Wheel::new(T0);
        let mut keys = vec![];
        for i in 0..10_000u32 {
            keys.push((i, w.schedule(T0 + (i as u64 * 7919) % 20_000, i)));
        }
        let mut expect = vec![];
        for (i, k) in keys {
            if i % 3 == 0 {
                assert_eq!(w.cancel(k), Some(i));
            } else {
                expect.push(i);
            }
        }
        assert_eq!(fire(&mut w, (T0 + 30_000) * 1000), expect);
        assert!(w.is_empty());
    }
}
