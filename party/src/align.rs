//! The party's side of an alignment: private set intersection with the other parties,
//! relayed by the coordinator (see `tessera_common::psi` for the arithmetic).
//!
//! The party draws a fresh secret key, shuffles its customers, and hands out its customers
//! only as blinded points in that shuffled order. It re-blinds other parties' points with its
//! key. At the end the coordinator tells it which of its shuffled positions are in the
//! intersection and the opaque row handle each gets; training then names customers by
//! handle. The key and the shuffle never leave this module.

use std::collections::HashMap;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use tessera_common::psi::{self, PsiError, PsiKey};

/// One alignment in progress or done.
pub struct Alignment {
    session: u64,
    key: PsiKey,
    /// `order[i]` is the row of the customer at shuffled position `i`.
    order: Vec<usize>,
    /// Row of each assigned handle.
    handles: HashMap<u64, usize>,
    /// Whether each shuffled position has been given a handle.
    assigned: Vec<bool>,
    /// Points re-blinded so far in this session.
    reblinded: u64,
    /// Whether handle assignment has begun (re-blinding is over then).
    assigning: bool,
}

/// Why a re-blinding is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReblindError {
    /// The points are malformed.
    #[error(transparent)]
    Psi(#[from] PsiError),
    /// Handles are being assigned: the intersection is known, no more re-blinding.
    #[error("re-blinding is over for this alignment: handles are being assigned")]
    Closed,
    /// More points than the bank's policy allows per alignment.
    #[error("more than {0} peer customers re-blinded in one alignment (training.max_peer_customers)")]
    OverCap(u64),
}

/// Why an assignment was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssignError {
    /// Positions and handles differ in number.
    #[error("positions and handles differ in length")]
    Length,
    /// A position is beyond the party's customers.
    #[error("position out of range")]
    OutOfRange,
    /// A position or a handle was assigned twice.
    #[error("a position or handle was assigned twice")]
    Duplicate,
}

impl Alignment {
    /// A new alignment of `n_rows` customers under session `session`, with a fresh key and
    /// a fresh shuffle.
    pub fn new(session: u64, n_rows: usize) -> Self {
        let mut order: Vec<usize> = (0..n_rows).collect();
        let mut rng = rand_chacha::ChaCha20Rng::from_entropy();
        order.shuffle(&mut rng);
        Self {
            session,
            key: PsiKey::random(),
            order,
            handles: HashMap::new(),
            assigned: vec![false; n_rows],
            reblinded: 0,
            assigning: false,
        }
    }

    /// The session number.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Number of customers being aligned.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Blinded points of shuffled positions `offset..offset + limit` (clamped), where
    /// `ids[row]` is the id of each row.
    pub fn blind(&self, ids: &[String], offset: u64, limit: usize) -> Vec<u8> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.order.len());
        let end = start.saturating_add(limit).min(self.order.len());
        let page: Vec<&str> = self.order[start..end]
            .iter()
            .filter_map(|&r| ids.get(r).map(String::as_str))
            .collect();
        psi::blind_ids(&self.key, &page)
    }

    /// Another party's points multiplied by this party's key, at most `cap` points per
    /// alignment and only before handles are assigned.
    ///
    /// # Errors
    /// [`ReblindError`]: malformed points, past the cap, or assignment begun.
    pub fn reblind(&mut self, points: &[u8], cap: u64) -> Result<Vec<u8>, ReblindError> {
        if self.assigning {
            return Err(ReblindError::Closed);
        }
        let n = psi::count(points)? as u64;
        if self.reblinded.saturating_add(n) > cap {
            return Err(ReblindError::OverCap(cap));
        }
        let out = psi::reblind(&self.key, points)?;
        self.reblinded += n;
        Ok(out)
    }

    /// Records handles for shuffled positions. All or nothing: on error nothing is recorded.
    ///
    /// # Errors
    /// [`AssignError`] on mismatched lengths, out-of-range positions, or repeats.
    pub fn assign(&mut self, positions: &[u64], handles: &[u64]) -> Result<(), AssignError> {
        // From the first assignment on, the coordinator knows the intersection: no more
        // re-blinding (it would only serve to test guessed ids).
        self.assigning = true;
        if positions.len() != handles.len() {
            return Err(AssignError::Length);
        }
        let mut rows = Vec::with_capacity(positions.len());
        let mut seen_pos = std::collections::HashSet::with_capacity(positions.len());
        let mut seen_handle = std::collections::HashSet::with_capacity(positions.len());
        for (&p, &h) in positions.iter().zip(handles) {
            let p = usize::try_from(p).map_err(|_| AssignError::OutOfRange)?;
            let row = *self.order.get(p).ok_or(AssignError::OutOfRange)?;
            if self.assigned[p]
                || self.handles.contains_key(&h)
                || !seen_pos.insert(p)
                || !seen_handle.insert(h)
            {
                return Err(AssignError::Duplicate);
            }
            rows.push((p, h, row));
        }
        for (p, h, row) in rows {
            self.assigned[p] = true;
            self.handles.insert(h, row);
        }
        Ok(())
    }

    /// The row behind a handle, if this party holds that customer.
    pub fn row(&self, handle: u64) -> Option<usize> {
        self.handles.get(&handle).copied()
    }

    /// Shuffled position of `row` (tests give handles by row with it).
    #[cfg(test)]
    pub(crate) fn position_of_row(&self, row: usize) -> Option<usize> {
        self.order.iter().position(|&r| r == row)
    }

    /// Number of handles assigned (this party's part of the intersection).
    pub fn assigned(&self) -> usize {
        self.handles.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffled_blinding_covers_every_customer_once_and_assignment_is_checked() {
        let ids: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
        let mut a = Alignment::new(1, ids.len());
        let pts = [a.blind(&ids, 0, 20), a.blind(&ids, 20, 1000)].concat();
        assert_eq!(psi::count(&pts).unwrap(), 50);
        assert!(a.blind(&ids, u64::MAX, 10).is_empty());
        // Same multiset of points as blinding the ids in file order, different order.
        let mut sorted: Vec<&[u8]> = pts.chunks(32).collect();
        let in_order = psi::blind_ids(&a.key, &ids);
        let mut expected: Vec<&[u8]> = in_order.chunks(32).collect();
        assert_ne!(sorted, expected, "the order is shuffled");
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected);

        assert_eq!(a.assign(&[0, 1], &[7]), Err(AssignError::Length));
        assert_eq!(a.assign(&[50], &[7]), Err(AssignError::OutOfRange));
        assert_eq!(a.assign(&[3, 3], &[7, 8]), Err(AssignError::Duplicate));
        assert_eq!(a.assign(&[3, 4], &[7, 7]), Err(AssignError::Duplicate));
        assert_eq!(a.assigned(), 0, "failed assignments record nothing");
        assert_eq!(a.assign(&[3, 4], &[7, 8]), Ok(()));
        assert_eq!(a.assign(&[3], &[9]), Err(AssignError::Duplicate));
        assert_eq!(a.row(7), Some(a.order[3]));
        assert_eq!(a.row(9), None);
    }

    #[test]
    fn reblinding_is_capped_per_alignment_and_ends_with_assignment() {
        let mut a = Alignment::new(1, 10);
        let other = psi::blind_ids(&PsiKey::random(), &["x", "y", "z"]);
        assert_eq!(psi::count(&a.reblind(&other, 5).unwrap()).unwrap(), 3);
        assert_eq!(a.reblind(&other, 5), Err(ReblindError::OverCap(5)), "3 + 3 > 5");
        assert!(matches!(a.reblind(&[1, 2, 3], 5), Err(ReblindError::Psi(_))));
        a.reblind(&other[..64], 5).unwrap();
        a.assign(&[0], &[1]).unwrap();
        assert_eq!(a.reblind(&other[..32], 100), Err(ReblindError::Closed));
        // A failed assignment closes re-blinding too.
        let mut b = Alignment::new(2, 10);
        assert!(b.assign(&[99], &[1]).is_err());
        assert_eq!(b.reblind(&other, 100), Err(ReblindError::Closed));
    }
}
