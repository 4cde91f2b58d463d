//! Steps 1 and 2 of scoring: the parties' embeddings gathered into one array per party, and
//! the customers with enough contributing parties to be scored.

use std::collections::BTreeMap;

use ndarray::Array2;
use tessera_common::protocol::fanout::Outcome;
use tessera_common::wire::{PartyId, Response};

use super::{CHUNK, ItemError, PartyStatus, Scored};
use crate::artifact::PartyEntry;

/// The embeddings of a batch, in manifest order.
#[derive(Debug)]
pub struct Gathered {
    /// Per party, `customers × emb_dim` (zero where the party did not contribute).
    pub parts: Vec<Array2<f64>>,
    /// Per party, whether it contributed each customer's embedding.
    pub present: Vec<Vec<bool>>,
    /// Per customer, each party's status, in manifest order.
    pub statuses: Vec<Vec<(PartyId, PartyStatus)>>,
}

/// Turns the `Embed` outcomes (per party, one per chunk of [`CHUNK`] customers) into
/// [`Gathered`]. A party that failed, timed out, answered something else, or answered
/// embeddings of the wrong shape or with non-finite values is unavailable for that chunk: one
/// bad answer degrades the customers of that chunk (as a missing party does) instead of failing
/// every caller coalesced into the batch.
pub fn gather(
    entries: &[PartyEntry],
    answers: &BTreeMap<PartyId, Vec<Outcome<Response>>>,
    n: usize,
) -> Gathered {
    let mut statuses = vec![Vec::with_capacity(entries.len()); n];
    let mut parts = Vec::with_capacity(entries.len());
    let mut present = Vec::with_capacity(entries.len());
    for entry in entries {
        let p = &entry.party_id;
        let d = entry.emb_dim as usize;
        let mut m = Array2::zeros((n, d));
        let mut here = vec![false; n];
        let chunks = answers.get(p);
        for c in 0..n.div_ceil(CHUNK) {
            let start = c * CHUNK;
            let len = CHUNK.min(n - start);
            let chunk_status: Result<(Array2<f64>, &Vec<bool>), PartyStatus> = match chunks
                .and_then(|v| v.get(c))
            {
                None | Some(Outcome::Failed(_)) => Err(PartyStatus::Unavailable),
                Some(Outcome::TimedOut) => Err(PartyStatus::Timeout),
                Some(Outcome::Answered(Response::Embeddings { matrix, known })) => {
                    match matrix.to_array(len, d) {
                        Ok(a) if known.len() == len => Ok((a, known)),
                        Ok(_) | Err(_) => {
                            tracing::warn!(party = %p, customers = len, "malformed embeddings: the party is treated as unavailable for them");
                            Err(PartyStatus::Unavailable)
                        }
                    }
                }
                Some(Outcome::Answered(_)) => Err(PartyStatus::Unavailable),
            };
            for i in 0..len {
                let status = match &chunk_status {
                    Err(s) => *s,
                    Ok((a, known)) if known[i] => {
                        m.row_mut(start + i).assign(&a.row(i));
                        here[start + i] = true;
                        PartyStatus::Ok
                    }
                    Ok(_) => PartyStatus::UnknownCustomer,
                };
                statuses[start + i].push((p.clone(), status));
            }
        }
        parts.push(m);
        present.push(here);
    }
    Gathered {
        parts,
        present,
        statuses,
    }
}

/// One result slot per customer.
pub type Results = Vec<Option<Result<Scored, ItemError>>>;

/// Decides which customers can be scored: at least `min_parties` (and at least one) party
/// contributed. The others get their error now.
///
/// # Returns
/// The result slots (errors filled in) and the rows to score, in order.
pub fn scorable(statuses: &[Vec<(PartyId, PartyStatus)>], min_parties: usize) -> (Results, Vec<usize>) {
    let mut results: Results = vec![None; statuses.len()];
    let mut rows = Vec::with_capacity(statuses.len());
    for (r, st) in statuses.iter().enumerate() {
        let contributing = st.iter().filter(|(_, s)| *s == PartyStatus::Ok).count();
        let any_unavailable = st
            .iter()
            .any(|(_, s)| matches!(s, PartyStatus::Unavailable | PartyStatus::Timeout));
        if contributing == 0 && !any_unavailable {
            results[r] = Some(Err(ItemError::UnknownCustomer(st.clone())));
        } else if contributing < min_parties.max(1) {
            results[r] = Some(Err(if any_unavailable {
                ItemError::PartiesUnavailable(st.clone())
            } else {
                ItemError::UnknownCustomer(st.clone())
            }));
        } else {
            rows.push(r);
        }
    }
    (results, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_common::protocol::fanout::Failure;
    use tessera_common::wire::Matrix;

    fn pid(s: &str) -> PartyId {
        PartyId::new(s).unwrap()
    }

    fn entry(p: &str, emb_dim: u32) -> PartyEntry {
        PartyEntry {
            party_id: pid(p),
            n_features: 3,
            emb_dim,
        }
    }

    fn embeddings(rows: &[[f32; 2]], known: &[bool]) -> Outcome<Response> {
        Outcome::Answered(Response::Embeddings {
            matrix: Matrix {
                rows: rows.len() as u32,
                cols: 2,
                data: rows.iter().flatten().copied().collect(),
            },
            known: known.to_vec(),
        })
    }

    #[test]
    fn gathers_known_rows_and_names_each_partys_status() {
        let entries = [entry("a", 2), entry("b", 2), entry("c", 2)];
        let answers = BTreeMap::from([
            (
                pid("a"),
                vec![embeddings(&[[1.0, 2.0], [3.0, 4.0]], &[true, false])],
            ),
            (pid("b"), vec![Outcome::TimedOut]),
            (pid("c"), vec![Outcome::Failed(Failure::NotConnected)]),
        ]);
        let g = gather(&entries, &answers, 2);
        assert_eq!(g.parts[0].row(0).to_vec(), vec![1.0, 2.0]);
        assert_eq!(
            g.parts[0].row(1).to_vec(),
            vec![0.0, 0.0],
            "unknown rows stay zero"
        );
        assert_eq!(g.present[0], vec![true, false]);
        assert_eq!(g.present[1], vec![false, false]);
        assert_eq!(
            g.statuses[1],
            vec![
                (pid("a"), PartyStatus::UnknownCustomer),
                (pid("b"), PartyStatus::Timeout),
                (pid("c"), PartyStatus::Unavailable)
            ]
        );
    }

    #[test]
    fn a_malformed_answer_makes_that_party_unavailable_for_its_chunk_only() {
        let entries = [entry("a", 2), entry("b", 2)];
        for bad in [
            embeddings(&[[1.0, 2.0]], &[true, true]),       // one row for two ids
            embeddings(&[[1.0, 2.0], [1.0, 2.0]], &[true]), // known too short
            embeddings(&[[f32::NAN, 2.0], [1.0, 2.0]], &[true, true]), // not finite
        ] {
            let good = embeddings(&[[1.0, 2.0], [3.0, 4.0]], &[true, true]);
            let answers = BTreeMap::from([(pid("a"), vec![bad]), (pid("b"), vec![good])]);
            let g = gather(&entries, &answers, 2);
            assert_eq!(g.present[0], vec![false, false]);
            assert_eq!(g.present[1], vec![true, true]);
            assert_eq!(g.statuses[0][0], (pid("a"), PartyStatus::Unavailable));
            assert_eq!(g.statuses[0][1], (pid("b"), PartyStatus::Ok));
        }
    }

    #[test]
    fn scorable_needs_min_parties_and_tells_unknown_from_unavailable() {
        let st = |v: &[(&str, PartyStatus)]| v.iter().map(|(p, s)| (pid(p), *s)).collect::<Vec<_>>();
        use PartyStatus::*;
        let statuses = vec![
            st(&[("a", Ok), ("b", Ok)]),
            st(&[("a", Ok), ("b", UnknownCustomer)]),
            st(&[("a", UnknownCustomer), ("b", UnknownCustomer)]),
            st(&[("a", Ok), ("b", Timeout)]),
            st(&[("a", UnknownCustomer), ("b", Unavailable)]),
        ];
        let (results, rows) = scorable(&statuses, 1);
        assert_eq!(rows, vec![0, 1, 3]);
        assert!(matches!(results[2], Some(Err(ItemError::UnknownCustomer(_)))));
        assert!(matches!(results[4], Some(Err(ItemError::PartiesUnavailable(_)))));
        let (results, rows) = scorable(&statuses, 2);
        assert_eq!(rows, vec![0]);
        assert!(matches!(results[1], Some(Err(ItemError::UnknownCustomer(_)))));
        assert!(matches!(results[3], Some(Err(ItemError::PartiesUnavailable(_)))));
    }
}
