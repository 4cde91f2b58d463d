//! Steps 4 and 5 of scoring: the parties' reason codes, checked against their published
//! dictionaries, and merged into at most [`MAX_REASONS`] per customer.

use std::collections::BTreeMap;

use tessera_common::protocol::fanout::Outcome;
use tessera_common::wire::{MAX_REASONS, PartyId, ReasonCode, Response};

use super::top::TopPass;
use super::{CHUNK, Reason};
use crate::artifact::PartyEntry;

/// Codes per party (manifest index), per scorable row.
pub type Codes = Vec<Vec<Vec<String>>>;

/// Turns the `Explain` outcomes (per party, one per chunk) into codes per party and row. Codes
/// not in the party's dictionary are dropped, at most [`MAX_REASONS`] are kept, and rows the
/// party did not contribute stay empty. Reasons are best effort: a failed chunk leaves its
/// rows without codes.
pub fn collect(
    answers: BTreeMap<PartyId, Vec<Outcome<Response>>>,
    index: &BTreeMap<&PartyId, usize>,
    dictionaries: &BTreeMap<PartyId, Vec<ReasonCode>>,
    present: &[Vec<bool>],
    rows: usize,
) -> Codes {
    let mut codes: Codes = vec![vec![Vec::new(); rows]; present.len()];
    for (party, outcomes) in answers {
        let Some(&p) = index.get(&party) else { continue };
        let dict = dictionaries.get(&party);
        for (c, o) in outcomes.into_iter().enumerate() {
            let Outcome::Answered(Response::Reasons { codes: got }) = o else {
                continue;
            };
            let start = c * CHUNK;
            for (i, list) in got
                .into_iter()
                .enumerate()
                .take(CHUNK.min(rows.saturating_sub(start)))
            {
                let known: Vec<String> = list
                    .into_iter()
                    .filter(|code| dict.is_some_and(|d| d.iter().any(|e| e.code == *code)))
                    .take(MAX_REASONS)
                    .collect();
                if present[p][start + i] {
                    codes[p][start + i] = known;
                }
            }
        }
    }
    codes
}

/// The reasons of row `k`: parties in order of how much they raised the risk (their share of
/// the logit), their codes taken in turns, at most [`MAX_REASONS`], each with its published text.
pub fn merge(
    entries: &[PartyEntry],
    pass: &TopPass,
    codes: &Codes,
    k: usize,
    dictionaries: &BTreeMap<PartyId, Vec<ReasonCode>>,
) -> Vec<Reason> {
    let mut order: Vec<usize> = (0..entries.len()).filter(|&p| pass.present[p][k]).collect();
    order.sort_by(|&a, &b| pass.shares[b][k].total_cmp(&pass.shares[a][k]).then(a.cmp(&b)));
    let mut reasons = Vec::new();
    let mut depth = 0;
    while reasons.len() < MAX_REASONS && order.iter().any(|&p| codes[p][k].len() > depth) {
        for &p in &order {
            if reasons.len() < MAX_REASONS
                && let Some(code) = codes[p][k].get(depth)
            {
                let party = &entries[p].party_id;
                let text = dictionaries
                    .get(party)
                    .and_then(|d| d.iter().find(|e| e.code == *code))
                    .map(|e| e.text.clone())
                    .unwrap_or_default();
                reasons.push(Reason {
                    code: code.clone(),
                    text,
                    party: party.clone(),
                });
            }
        }
        depth += 1;
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn pid(s: &str) -> PartyId {
        PartyId::new(s).unwrap()
    }

    fn dict(codes: &[&str]) -> Vec<ReasonCode> {
        codes
            .iter()
            .map(|c| ReasonCode {
                code: c.to_string(),
                text: format!("text of {c}"),
            })
            .collect()
    }

    fn entry(p: &str) -> PartyEntry {
        PartyEntry {
            party_id: pid(p),
            n_features: 1,
            emb_dim: 1,
        }
    }

    #[test]
    fn unpublished_codes_and_absent_rows_are_dropped() {
        let (a, b) = (pid("a"), pid("b"));
        let index = BTreeMap::from([(&a, 0), (&b, 1)]);
        let dictionaries = BTreeMap::from([(a.clone(), dict(&["A1", "A2"])), (b.clone(), dict(&["B1"]))]);
        let answers = BTreeMap::from([
            (
                a.clone(),
                vec![Outcome::Answered(Response::Reasons {
                    codes: vec![vec!["A1".into(), "ZZ".into(), "A2".into()], vec!["A2".into()]],
                })],
            ),
            (b.clone(), vec![Outcome::TimedOut]),
        ]);
        let present = vec![vec![true, false], vec![true, true]];
        let codes = collect(answers, &index, &dictionaries, &present, 2);
        assert_eq!(codes[0][0], vec!["A1", "A2"]);
        assert!(codes[0][1].is_empty(), "party a did not contribute row 1");
        assert!(
            codes[1][0].is_empty() && codes[1][1].is_empty(),
            "a timed-out party gives no codes"
        );
    }

    #[test]
    fn parties_that_raise_the_risk_most_speak_first_in_turns() {
        let entries = [entry("a"), entry("b")];
        let pass = TopPass {
            x: Array2::zeros((1, 2)),
            pds: vec![0.5],
            grads: vec![],
            shares: vec![vec![0.1], vec![0.9]],
            present: vec![vec![true], vec![true]],
        };
        let codes: Codes = vec![
            vec![vec!["A1".into(), "A2".into(), "A3".into()]],
            vec![vec!["B1".into(), "B2".into()]],
        ];
        let dictionaries = BTreeMap::from([
            (pid("a"), dict(&["A1", "A2", "A3"])),
            (pid("b"), dict(&["B1", "B2"])),
        ]);
        let got: Vec<(String, String)> = merge(&entries, &pass, &codes, 0, &dictionaries)
            .into_iter()
            .map(|r| (r.code, r.party.to_string()))
            .collect();
        let want = [("B1", "b"), ("A1", "a"), ("B2", "b"), ("A2", "a")];
        assert_eq!(got, want.map(|(c, p)| (c.to_string(), p.to_string())));
        let first = &merge(&entries, &pass, &codes, 0, &dictionaries)[0];
        assert_eq!(first.text, "text of B1");
    }
}
