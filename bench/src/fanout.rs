//! Room fan-out: when did each message reach the last member of its room.
//!
//! A room message from one sender goes to every other member; the figure that matters to a person
//! in a busy room is when the *last* of them has it. Every member's receive task reports each
//! first arrival here; a message is complete when `expected` members have it, and its
//! last-member latency is the latest arrival minus the (intended or actual) send time in its
//! stamp. Messages that some member never got are not complete: they show as lost deliveries in
//! the counts, not as latencies.
//!
//! One lock per sender: the members of a room report arrivals of the same message at about the
//! same time, but the lock is held for a few nanoseconds and senders are independent.

use crate::accounting::MAX_TRACKED_SEQ;
use crate::latency::Latency;
use crate::target::UserId;
use std::collections::HashMap;
use std::sync::Mutex;

/// What is known of one message.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Members that have it.
    count: u32,
    /// Its stamp's send time, ns on the worker's clock.
    sent_ns: u64,
    /// The latest first arrival so far, ns on the worker's clock.
    last_ns: u64,
}

/// The fan-out of one room's messages.
#[derive(Debug)]
pub struct FanOut {
    expected: u32,
    senders: HashMap<UserId, Mutex<Vec<Slot>>>,
}

impl FanOut {
    /// A room whose `senders` each reach `expected` other members.
    pub fn new(senders: impl IntoIterator<Item = UserId>, expected: u32) -> Self {
        Self {
            expected,
            senders: senders
                .into_iter()
                .map(|s| (s, Mutex::new(Vec::new())))
                .collect(),
        }
    }

    /// How many members each message should reach.
    pub fn expected(&self) -> u32 {
        self.expected
    }

    /// Whether `user` sends in this room.
    pub fn is_sender(&self, user: UserId) -> bool {
        self.senders.contains_key(&user)
    }

    /// Records the first arrival of message `seq` from `from` at one member at `at_ns`. Returns
    /// true when this arrival makes the message complete (it was the last member). The caller
    /// reports each member's first arrival once (it keeps the per-member sequence sets).
    pub fn arrive(&self, from: UserId, seq: u64, sent_ns: u64, at_ns: u64) -> bool {
        if seq >= MAX_TRACKED_SEQ {
            return false;
        }
        let (Some(slots), Ok(i)) = (self.senders.get(&from), usize::try_from(seq)) else {
            return false;
        };
        let Ok(mut slots) = slots.lock() else {
            return false;
        };
        if i >= slots.len() {
            slots.resize(i + 1, Slot::default());
        }
        let Some(slot) = slots.get_mut(i) else {
            return false;
        };
        slot.count += 1;
        slot.sent_ns = sent_ns;
        slot.last_ns = slot.last_ns.max(at_ns);
        slot.count == self.expected
    }

    /// Messages that reached every member.
    pub fn complete(&self) -> u64 {
        self.senders
            .values()
            .filter_map(|s| s.lock().ok())
            .map(|slots| slots.iter().filter(|s| s.count >= self.expected).count() as u64)
            .sum()
    }

    /// The last-member latency of every complete message.
    pub fn last_member_latency(&self) -> anyhow::Result<Latency> {
        let mut latency = Latency::new()?;
        for slots in self.senders.values() {
            let Ok(slots) = slots.lock() else { continue };
            for s in slots
                .iter()
                .filter(|s| s.count >= self.expected && s.count > 0)
            {
                latency.record_micros(s.last_ns.saturating_sub(s.sent_ns) / 1000);
            }
        }
        Ok(latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_complete_at_its_last_member_and_timed_by_it() {
        // Sender 7 to 3 members: message 0 arrives at 2 ms, 9 ms and 4 ms after its send at 1 ms.
        let f = FanOut::new([7], 3);
        let ms = 1_000_000;
        assert!(!f.arrive(7, 0, ms, 3 * ms));
        assert!(!f.arrive(7, 0, ms, 10 * ms));
        assert!(f.arrive(7, 0, ms, 5 * ms), "the third member completes it");
        // Message 1 reached only two members: lost for the third, so no latency.
        assert!(!f.arrive(7, 1, ms, 2 * ms));
        assert!(!f.arrive(7, 1, ms, 2 * ms));
        assert_eq!(f.complete(), 1);
        let s = f.last_member_latency().unwrap().summary().unwrap();
        assert_eq!(s.count, 1);
        // 9 ms, within the histogram's 0.1 %.
        assert!((8_990..=9_010).contains(&s.max_us), "{s:?}");
    }

    #[test]
    fn unknown_senders_and_absurd_sequence_numbers_are_ignored() {
        let f = FanOut::new([1, 2], 1);
        assert!(!f.arrive(3, 0, 0, 1));
        assert!(!f.arrive(1, MAX_TRACKED_SEQ, 0, 1));
        assert!(f.arrive(2, 5, 0, 1_000));
        assert!(f.is_sender(1) && !f.is_sender(3));
        assert_eq!(f.complete(), 1);
        assert_eq!(f.expected(), 1);
    }

    #[test]
    fn latencies_of_many_senders_are_merged() {
        let f = FanOut::new(0..10, 2);
        for sender in 0..10 {
            for seq in 0..100 {
                let sent = seq * 1_000_000;
                f.arrive(sender, seq, sent, sent + 1_000_000);
                f.arrive(sender, seq, sent, sent + 2_000_000);
            }
        }
        let s = f.last_member_latency().unwrap().summary().unwrap();
        assert_eq!((s.count, f.complete()), (1000, 1000));
        assert!((1_998..=2_002).contains(&s.p50_us), "{s:?}");
    }
}
