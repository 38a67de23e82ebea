//! Who got what: per-direction bookkeeping of sent, delivered, acked and lost envelopes.
//!
//! Deliveries are tallied by sequence number, not by counting arrivals, so that a duplicate, a
//! stale envelope from an earlier run, or one that never was sent cannot pass for a delivery.
//! At the end of a run, for each direction (sender → receiver):
//!
//! * `delivered` = distinct sequence numbers received that are below the number sent;
//! * `lost` = `sent - delivered` (so `sent = delivered + lost` holds by construction; the
//!   independent check is `received = delivered + unexpected`, where `received` is counted live
//!   at each first arrival);
//! * `acked_lost` = envelopes the target acknowledged (took responsibility for) but never
//!   delivered to a receiver that was connected at the end: the figure a durable relay must
//!   keep at 0;
//! * `acked_away` = the same for a receiver that had lost its connection and was not back by
//!   the end of the run (`reconnect-storm`): stored by the relay for a client that did not
//!   come to get them, so not lost, and not delivered either.

use serde::{Deserialize, Serialize};

/// Largest sequence number a [`SeqSet`] tracks: 2^28 envelopes from one sender (32 MiB of bits).
/// A larger one can only be corrupt and is counted as unexpected.
pub const MAX_TRACKED_SEQ: u64 = 1 << 28;

/// A growable bit set of sequence numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqSet {
    words: Vec<u64>,
}

impl SeqSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `seq`; `Some(true)` if it was new, `Some(false)` if already present, `None` if it is
    /// beyond [`MAX_TRACKED_SEQ`].
    pub fn insert(&mut self, seq: u64) -> Option<bool> {
        if seq >= MAX_TRACKED_SEQ {
            return None;
        }
        let word = usize::try_from(seq / 64).ok()?;
        let bit = 1u64 << (seq % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let w = self.words.get_mut(word)?;
        let new = *w & bit == 0;
        *w |= bit;
        Some(new)
    }

    /// Whether `seq` is present.
    pub fn contains(&self, seq: u64) -> bool {
        usize::try_from(seq / 64)
            .ok()
            .and_then(|i| self.words.get(i))
            .is_some_and(|w| w & (1u64 << (seq % 64)) != 0)
    }

    /// Number of members.
    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Number of members below `n`.
    pub fn count_below(&self, n: u64) -> u64 {
        let full = usize::try_from(n / 64).unwrap_or(usize::MAX);
        let mut count: u64 = self
            .words
            .iter()
            .take(full)
            .map(|w| u64::from(w.count_ones()))
            .sum();
        let rest = n % 64;
        if rest > 0
            && let Some(w) = self.words.get(full)
        {
            count += u64::from((w & ((1u64 << rest) - 1)).count_ones());
        }
        count
    }

    /// Number of members below `n` that are not in `other`.
    pub fn count_below_not_in(&self, n: u64, other: &SeqSet) -> u64 {
        let words = usize::try_from(n.div_ceil(64)).unwrap_or(usize::MAX);
        self.words
            .iter()
            .enumerate()
            .take(words)
            .map(|(i, &w)| {
                let mut mine = w & !other.words.get(i).copied().unwrap_or(0);
                if (i as u64 + 1) * 64 > n {
                    // Last word: keep only bits below n.
                    let keep = n - i as u64 * 64;
                    mine &= (1u64 << keep) - 1;
                }
                u64::from(mine.count_ones())
            })
            .sum()
    }
}

/// What one sender → receiver direction saw, as the tasks left it at the end of a run.
#[derive(Debug, Clone, Default)]
pub struct DirectionTally {
    /// Envelopes handed to the target by the sender.
    pub sent: u64,
    /// Sequence numbers the receiver got (first arrivals).
    pub received: SeqSet,
    /// Sequence numbers the target acknowledged to the sender.
    pub acked: SeqSet,
    /// Arrivals of a sequence number already received.
    pub duplicates: u64,
    /// Envelopes the target refused with an error frame (seen by the sender).
    pub refused: u64,
}

/// The envelope counts of a run (or of a worker's share), added up over directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Envelopes handed to the target.
    pub sent: u64,
    /// Distinct envelopes received that had been sent.
    pub delivered: u64,
    /// Sent but not delivered by the end of the drain.
    pub lost: u64,
    /// Repeated arrivals of an envelope already delivered.
    pub duplicates: u64,
    /// First arrivals counted live as they came in (must equal `delivered + unexpected`).
    pub received: u64,
    /// Arrivals stamped by this run with a sequence number never sent (must be 0).
    pub unexpected: u64,
    /// Arrivals not stamped by this run (an earlier run's queue, or garbage).
    pub foreign: u64,
    /// Envelopes the target acknowledged to their sender.
    pub acked: u64,
    /// Acknowledged but never delivered to a receiver that was there at the end (a durable
    /// relay must keep this at 0).
    pub acked_lost: u64,
    /// Acknowledged and not delivered because the receiver was not back by the end of the run
    /// (`reconnect-storm` only): part of `lost`, not of `acked_lost`.
    #[serde(default)]
    pub acked_away: u64,
    /// Refused by the target with an error frame (`RATE_LIMITED`, ...): part of `lost`, and
    /// each one a failure of the run.
    #[serde(default)]
    pub refused: u64,
}

impl Counts {
    /// The counts of one direction.
    pub fn from_direction(t: &DirectionTally) -> Self {
        Self::from_direction_to(t, false)
    }

    /// The counts of one direction whose receiver was, or was not (`receiver_away`), connected
    /// at the end of the run.
    pub fn from_direction_to(t: &DirectionTally, receiver_away: bool) -> Self {
        let delivered = t.received.count_below(t.sent);
        let acked_undelivered = t.acked.count_below_not_in(t.sent, &t.received);
        let (acked_lost, acked_away) = if receiver_away {
            (0, acked_undelivered)
        } else {
            (acked_undelivered, 0)
        };
        Self {
            sent: t.sent,
            delivered,
            lost: t.sent - delivered,
            duplicates: t.duplicates,
            received: 0,
            unexpected: t.received.len() - delivered,
            foreign: 0,
            acked: t.acked.count_below(t.sent),
            acked_lost,
            acked_away,
            refused: t.refused,
        }
    }

    /// Adds `other` into these counts.
    pub fn add(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.received += other.received;
        self.unexpected += other.unexpected;
        self.foreign += other.foreign;
        self.acked += other.acked;
        self.acked_lost += other.acked_lost;
        self.acked_away += other.acked_away;
        self.refused += other.refused;
    }

    /// Whether the counts are consistent: `sent = delivered + lost`, the live count of first
    /// arrivals equals `delivered + unexpected`, and what was acked or refused but never
    /// delivered is part of what was lost.
    pub fn adds_up(&self) -> bool {
        self.sent == self.delivered + self.lost
            && self.received == self.delivered + self.unexpected
            && self.acked_lost + self.acked_away <= self.acked
            && self.acked_lost + self.acked_away <= self.lost
            && self.refused <= self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(seqs: &[u64]) -> SeqSet {
        let mut s = SeqSet::new();
        for &q in seqs {
            s.insert(q);
        }
        s
    }

    #[test]
    fn seq_set_counts_below_a_bound_across_word_edges() {
        let s = set(&[0, 1, 63, 64, 65, 127, 128, 1000]);
        assert_eq!(s.len(), 8);
        assert_eq!(s.count_below(0), 0);
        assert_eq!(s.count_below(1), 1);
        assert_eq!(s.count_below(64), 3);
        assert_eq!(s.count_below(65), 4);
        assert_eq!(s.count_below(128), 6);
        assert_eq!(s.count_below(129), 7);
        assert_eq!(s.count_below(u64::MAX), 8);
        assert!(s.contains(1000) && !s.contains(999) && !s.contains(u64::MAX));
    }

    #[test]
    fn seq_set_reports_repeats_and_refuses_absurd_numbers() {
        let mut s = SeqSet::new();
        assert_eq!(s.insert(5), Some(true));
        assert_eq!(s.insert(5), Some(false));
        assert_eq!(s.insert(MAX_TRACKED_SEQ), None);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn counts_of_a_direction_add_up() {
        // 10 sent; 0..7 delivered, plus 12 which was never sent; 0..9 acked; 8 and 9 lost,
        // of which 8 and 9 were acked.
        let t = DirectionTally {
            sent: 10,
            received: set(&[0, 1, 2, 3, 4, 5, 6, 7, 12]),
            acked: set(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            duplicates: 3,
            refused: 0,
        };
        let mut c = Counts::from_direction(&t);
        c.received = 9; // what the receiver counted live
        assert_eq!(c.delivered, 8);
        assert_eq!(c.lost, 2);
        assert_eq!(c.unexpected, 1);
        assert_eq!(c.acked, 10);
        assert_eq!(c.acked_lost, 2);
        assert_eq!(c.duplicates, 3);
        assert!(c.adds_up());
        // The same direction to a receiver that never came back: the two acked and undelivered
        // envelopes are away, not lost by the target; everything else is the same.
        let mut away = Counts::from_direction_to(&t, true);
        away.received = 9;
        assert_eq!((away.acked_lost, away.acked_away), (0, 2));
        assert_eq!((away.delivered, away.lost, away.acked), (8, 2, 10));
        assert!(away.adds_up());
        // More acked-and-undelivered than lost cannot add up.
        away.acked_away = 3;
        assert!(!away.adds_up());
    }

    #[test]
    fn counts_of_many_directions_still_add_up_and_mismatches_are_caught() {
        let mut total = Counts::default();
        for n in 0..50u64 {
            let received: Vec<u64> = (0..n).filter(|q| q % 7 != 3).collect();
            let t = DirectionTally {
                sent: n,
                received: set(&received),
                acked: set(&received),
                duplicates: 0,
                refused: 0,
            };
            let mut c = Counts::from_direction(&t);
            c.received = received.len() as u64;
            assert_eq!(c.acked_lost, 0);
            total.add(&c);
        }
        assert!(total.adds_up());
        assert_eq!(total.sent, (0..50).sum::<u64>());
        let mut broken = total;
        broken.received += 1;
        assert!(!broken.adds_up());
    }

    #[test]
    fn refused_envelopes_are_lost_and_counted_apart() {
        // 5 sent, the target refused 3 and 4 (RATE_LIMITED): never acked, never delivered.
        let t = DirectionTally {
            sent: 5,
            received: set(&[0, 1, 2]),
            acked: set(&[0, 1, 2]),
            duplicates: 0,
            refused: 2,
        };
        let mut c = Counts::from_direction(&t);
        c.received = 3;
        assert_eq!((c.delivered, c.lost, c.refused, c.acked_lost), (3, 2, 2, 0));
        assert!(c.adds_up());
        let mut more = c;
        more.refused = 3;
        assert!(!more.adds_up(), "more refused than lost cannot be");
    }
}
