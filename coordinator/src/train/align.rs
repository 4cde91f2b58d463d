//! Customer alignment by ECDH private set intersection, relayed by the coordinator.
//!
//! 1. `PsiInit`: every party draws a fresh secret key and shuffles its customers.
//! 2. `PsiBlind`: every party sends its customers blinded with its own key (`kₚ·H(id)`), in
//!    its shuffled order, page by page.
//! 3. `PsiReblind`: the label holder's list goes to every other party `j`, which multiplies
//!    it by `k_j`; party `j`'s list goes to the label holder, which multiplies it by its key.
//!    Both results are `k_L·k_j·H(id)`: equal points are shared customers.
//! 4. The coordinator matches the two doubly blinded lists of each pair. A label holder's
//!    customer is named by its position in the label holder's shuffled list (a random
//!    permutation, so the number says nothing): that is its **row handle**.
//! 5. `PsiAssign`: each party is told which of its shuffled positions are in the intersection
//!    and their handles; the label holder gets a handle for each of its customers.
//!
//! What each side learns: a party learns which of its own customers the label holder also
//! has, and the number of customers of the parties whose lists it re-blinded; nothing about
//! ids outside the intersection (it sees them only blinded by a key it does not hold). The
//! coordinator sees only blinded points: it learns the sizes of the lists and of each
//! intersection, and which handles each party holds. No message carries an id, and no key
//! leaves its party.

use std::collections::BTreeMap;
use std::time::Instant;

use tessera_common::psi::{self, POINT_LEN};
use tessera_common::wire::{PartyId, Request, Response};
use tracing::info;

use super::{Ctx, TrainError};
use tessera_common::federation::Federation;

/// Points per `PsiBlind`/`PsiReblind` request (1 MiB of points; well under a second of work).
const PSI_PAGE: usize = 32_768;
/// Handles per `PsiAssign` request.
const ASSIGN_PAGE: usize = 50_000;
/// Largest party the coordinator will align (its lists are held in memory: 32 bytes per id
/// and list).
pub const MAX_ALIGN_ROWS: u64 = 20_000_000;

/// The outcome of an alignment.
#[derive(Clone, Debug)]
pub struct Aligned {
    /// Number of the label holder's customers; their handles are `0..n`.
    pub n: usize,
    /// `membership[p][h]`: party `p` (configured order) holds customer `h`.
    pub membership: Vec<Vec<bool>>,
    /// Number of customers each party holds (configured order).
    pub party_rows: Vec<u64>,
    /// Wall time of the alignment, seconds.
    pub seconds: f64,
}

fn bad(party: &PartyId, stage: &'static str, message: impl Into<String>) -> TrainError {
    TrainError::bad(party, stage, message)
}

/// One list being re-blinded by one party, page by page.
struct Job {
    /// Index of the list's owner.
    source: usize,
    /// Points re-blinded so far.
    out: Vec<u8>,
}

/// Aligns the federation's customers with the label holder's (index `holder` in the
/// configured order) under `session`.
///
/// # Errors
/// [`TrainError`] naming the party and step that failed or answered nonsense.
pub(crate) async fn align<F: Federation>(
    ctx: &Ctx<'_, F>,
    holder: usize,
    session: u64,
) -> Result<Aligned, TrainError> {
    let started = Instant::now();
    let parties = ctx.parties;
    let sizes = init(ctx, session).await?;
    let own = blind_all(ctx, session, &sizes).await?;
    let queues = reblind_all(ctx, session, holder, &own).await?;
    drop(own);
    let (membership, assignments) = match_lists(parties, holder, &sizes, &queues)?;
    drop(queues);
    assign_all(ctx, session, &assignments).await?;
    let n = sizes[holder];
    let seconds = started.elapsed().as_secs_f64();
    let in_every = (0..n).filter(|&h| membership.iter().all(|m| m[h])).count();
    info!(
        label_holder_customers = n,
        in_every_party = in_every,
        seconds = format!("{seconds:.2}"),
        "private set intersection done"
    );
    Ok(Aligned {
        n,
        membership,
        party_rows: sizes.iter().map(|&s| s as u64).collect(),
        seconds,
    })
}

/// Step 1: fresh keys and shuffles at every party; the number of customers of each.
async fn init<F: Federation>(ctx: &Ctx<'_, F>, session: u64) -> Result<Vec<usize>, TrainError> {
    let mut sizes = Vec::with_capacity(ctx.parties.len());
    for (p, r) in ctx.all("psi init", |_| Request::PsiInit { session }).await? {
        match r {
            Response::PsiReady { n } if n <= MAX_ALIGN_ROWS => sizes.push(n as usize),
            Response::PsiReady { n } => {
                return Err(bad(
                    &p,
                    "psi init",
                    format!("{n} customers exceed the limit of {MAX_ALIGN_ROWS}"),
                ));
            }
            _ => return Err(bad(&p, "psi init", "expected the number of customers")),
        }
    }

    Ok(sizes)
}

/// Step 2: each party's own customers, blinded with its own key, page by page.
async fn blind_all<F: Federation>(
    ctx: &Ctx<'_, F>,
    session: u64,
    sizes: &[usize],
) -> Result<Vec<Vec<u8>>, TrainError> {
    let (parties, n_parties) = (ctx.parties, ctx.parties.len());
    let mut own: Vec<Vec<u8>> = sizes.iter().map(|&n| Vec::with_capacity(n * POINT_LEN)).collect();
    loop {
        let pending: Vec<PartyId> = (0..n_parties)
            .filter(|&p| own[p].len() / POINT_LEN < sizes[p])
            .map(|p| parties[p].clone())
            .collect();
        if pending.is_empty() {
            break;
        }
        let offsets: BTreeMap<PartyId, u64> = (0..n_parties)
            .map(|p| (parties[p].clone(), (own[p].len() / POINT_LEN) as u64))
            .collect();
        let answers = ctx
            .some(&pending, "psi blind", |p| Request::PsiBlind {
                session,
                offset: offsets.get(p).copied().unwrap_or(0),
                limit: PSI_PAGE as u32,
            })
            .await?;
        for (party, r) in answers {
            let p = index_of(parties, &party);
            let remaining = sizes[p] - own[p].len() / POINT_LEN;
            let Response::Points { points } = r else {
                return Err(bad(&party, "psi blind", "expected points"));
            };
            match psi::count(&points) {
                Ok(k) if k > 0 && k <= remaining.min(PSI_PAGE) => own[p].extend_from_slice(&points),
                _ => return Err(bad(&party, "psi blind", "wrong number of points")),
            }
        }
    }

    Ok(own)
}

/// Step 3: re-blinding: the label holder's list at every other party, every other party's
/// list at the label holder. Returns each party's jobs with their results.
async fn reblind_all<F: Federation>(
    ctx: &Ctx<'_, F>,
    session: u64,
    holder: usize,
    own: &[Vec<u8>],
) -> Result<Vec<Vec<Job>>, TrainError> {
    let (parties, n_parties) = (ctx.parties, ctx.parties.len());
    let mut queues: Vec<Vec<Job>> = (0..n_parties).map(|_| Vec::new()).collect();
    for j in (0..n_parties).filter(|&j| j != holder) {
        queues[j].push(Job {
            source: holder,
            out: Vec::with_capacity(own[holder].len()),
        });
        queues[holder].push(Job {
            source: j,
            out: Vec::with_capacity(own[j].len()),
        });
    }
    loop {
        // The next page of each party's first unfinished job.
        let mut requests: BTreeMap<PartyId, (usize, usize, Request)> = BTreeMap::new();
        for (p, queue) in queues.iter().enumerate() {
            if let Some((k, job)) = queue
                .iter()
                .enumerate()
                .find(|(_, j)| j.out.len() < own[j.source].len())
            {
                let start = job.out.len();
                let end = (start + PSI_PAGE * POINT_LEN).min(own[job.source].len());
                requests.insert(
                    parties[p].clone(),
                    (
                        k,
                        end - start,
                        Request::PsiReblind {
                            session,
                            points: own[job.source][start..end].to_vec(),
                        },
                    ),
                );
            }
        }
        if requests.is_empty() {
            break;
        }
        let pending: Vec<PartyId> = requests.keys().cloned().collect();
        let answers = ctx
            .some(&pending, "psi reblind", |p| {
                requests
                    .get(p)
                    .map(|(_, _, r)| r.clone())
                    .unwrap_or(Request::PsiReblind {
                        session,
                        points: Vec::new(),
                    })
            })
            .await?;
        for (party, r) in answers {
            let p = index_of(parties, &party);
            let Some(&(k, len, _)) = requests.get(&party) else {
                continue;
            };
            match r {
                Response::Points { points } if points.len() == len => {
                    queues[p][k].out.extend_from_slice(&points)
                }
                _ => return Err(bad(&party, "psi reblind", "expected as many points as were sent")),
            }
        }
    }

    Ok(queues)
}

/// Positions in each party's shuffled list and their handles, per party.
type Assignments = Vec<(Vec<u64>, Vec<u64>)>;

/// Step 4: matches each pair's doubly blinded lists. Handles are the label holder's
/// positions. No IO.
///
/// # Returns
/// `membership[p][h]` (party `p` holds customer `h`) and each party's assignments.
///
/// # Errors
/// [`TrainError`] if a list is missing, malformed, or a party holds the same customer twice.
fn match_lists(
    parties: &[PartyId],
    holder: usize,
    sizes: &[usize],
    queues: &[Vec<Job>],
) -> Result<(Vec<Vec<bool>>, Assignments), TrainError> {
    let n_parties = parties.len();
    let n = sizes[holder];
    let mut membership = vec![vec![false; n]; n_parties];
    membership[holder].fill(true);
    let mut assignments: Assignments = vec![(Vec::new(), Vec::new()); n_parties];
    assignments[holder] = ((0..n as u64).collect(), (0..n as u64).collect());
    for j in (0..n_parties).filter(|&j| j != holder) {
        // The label holder's list as re-blinded by j, and j's list as re-blinded by the holder.
        let from_j = queues[j].iter().find(|job| job.source == holder);
        let from_holder = queues[holder].iter().find(|job| job.source == j);
        let (Some(a), Some(b)) = (from_j, from_holder) else {
            return Err(TrainError::Setup("alignment bookkeeping lost a list".into()));
        };
        let pairs =
            psi::intersect(&a.out, &b.out).map_err(|e| bad(&parties[j], "psi match", e.to_string()))?;
        let (positions, handles) = &mut assignments[j];
        for (h, pos) in pairs {
            if membership[j][h] {
                // Two of j's points equal one of the holder's: j has a duplicate id.
                return Err(bad(&parties[j], "psi match", "the same customer appears twice"));
            }
            membership[j][h] = true;
            positions.push(pos as u64);
            handles.push(h as u64);
        }
        info!(party = %parties[j], customers = sizes[j], shared_with_label_holder = positions.len(), "aligned");
    }
    Ok((membership, assignments))
}

/// Step 5: tells every party its handles, page by page.
async fn assign_all<F: Federation>(
    ctx: &Ctx<'_, F>,
    session: u64,
    assignments: &Assignments,
) -> Result<(), TrainError> {
    let (parties, n_parties) = (ctx.parties, ctx.parties.len());
    let mut sent = vec![0usize; n_parties];
    loop {
        let pending: Vec<PartyId> = (0..n_parties)
            .filter(|&p| sent[p] < assignments[p].0.len())
            .map(|p| parties[p].clone())
            .collect();
        if pending.is_empty() {
            break;
        }
        let pages: BTreeMap<PartyId, (Vec<u64>, Vec<u64>)> = pending
            .iter()
            .map(|party| {
                let p = index_of(parties, party);
                let end = (sent[p] + ASSIGN_PAGE).min(assignments[p].0.len());
                (
                    party.clone(),
                    (
                        assignments[p].0[sent[p]..end].to_vec(),
                        assignments[p].1[sent[p]..end].to_vec(),
                    ),
                )
            })
            .collect();
        let answers = ctx
            .some(&pending, "psi assign", |p| {
                let (positions, handles) = pages.get(p).cloned().unwrap_or_default();
                Request::PsiAssign {
                    session,
                    positions,
                    handles,
                }
            })
            .await?;
        for (party, r) in answers {
            if r != Response::Ack {
                return Err(bad(&party, "psi assign", "expected an acknowledgement"));
            }
            let p = index_of(parties, &party);
            sent[p] += pages.get(&party).map_or(0, |(pos, _)| pos.len());
        }
    }
    Ok(())
}

/// Aligns `parties` (configured order; `holder` indexes the label holder) as session
/// `session`, each request bounded by `timeout`. The same alignment [`super::train`] runs
/// first; exposed for tests and benchmarks.
///
/// # Errors
/// [`TrainError`] naming the party and step that failed.
pub async fn align_federation<F: Federation>(
    fed: &F,
    parties: &[PartyId],
    holder: usize,
    session: u64,
    timeout: std::time::Duration,
) -> Result<Aligned, TrainError> {
    if holder >= parties.len() {
        return Err(TrainError::Setup("label holder index out of range".into()));
    }
    let ctx = Ctx {
        fed,
        parties,
        timeout,
        trace: vec![format!("align:{session:x}")],
    };
    align(&ctx, holder, session).await
}

fn index_of(parties: &[PartyId], party: &PartyId) -> usize {
    parties.iter().position(|p| p == party).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_common::psi::{PsiKey, blind_ids, reblind};

    /// The jobs two parties would hold after re-blinding: `holder`'s ids and `other`'s ids,
    /// each blinded by its owner and re-blinded by the other.
    fn jobs(holder: &[&str], other: &[&str]) -> Vec<Vec<Job>> {
        let (kh, ko) = (PsiKey::from_seed(1), PsiKey::from_seed(2));
        let (bh, bo) = (blind_ids(&kh, holder), blind_ids(&ko, other));
        vec![
            vec![Job {
                source: 1,
                out: reblind(&kh, &bo).unwrap(),
            }],
            vec![Job {
                source: 0,
                out: reblind(&ko, &bh).unwrap(),
            }],
        ]
    }

    fn parties() -> Vec<PartyId> {
        vec![PartyId::new("lender").unwrap(), PartyId::new("bank").unwrap()]
    }

    #[test]
    fn matching_gives_handles_in_the_holders_order_and_positions_in_the_others() {
        let holder = ["a", "b", "c", "d"];
        let other = ["x", "d", "b"];
        let queues = jobs(&holder, &other);
        let (membership, assignments) = match_lists(&parties(), 0, &[4, 3], &queues).unwrap();
        assert_eq!(membership[0], vec![true; 4]);
        assert_eq!(membership[1], vec![false, true, false, true]);
        assert_eq!(assignments[0], ((0..4).collect(), (0..4).collect()));
        let mut pairs: Vec<(u64, u64)> = assignments[1]
            .0
            .iter()
            .copied()
            .zip(assignments[1].1.iter().copied())
            .collect();
        pairs.sort();
        assert_eq!(
            pairs,
            vec![(1, 3), (2, 1)],
            "position of d is 1 -> handle 3; b is 2 -> handle 1"
        );
    }

    #[test]
    fn a_duplicate_customer_or_a_lost_list_is_refused() {
        let queues = jobs(&["a", "b"], &["b", "b"]);
        let e = match_lists(&parties(), 0, &[2, 2], &queues).unwrap_err();
        assert!(e.to_string().contains("the same customer appears twice"), "{e}");
        let mut lost = jobs(&["a"], &["a"]);
        lost[1].clear();
        assert!(matches!(
            match_lists(&parties(), 0, &[1, 1], &lost),
            Err(TrainError::Setup(_))
        ));
    }
}
