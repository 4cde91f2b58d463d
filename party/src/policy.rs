//! What this bank lets a coordinator do with its data: whether it takes part in training at
//! all, what its bottom model may be, and how much explaining it answers. The coordinator
//! proposes; the party decides (a hostile coordinator must not be able to choose a bottom
//! model it can invert, nor query attributions at will).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The `[training]` section of a party's configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingPolicy {
    /// Whether this bank takes part in training runs (alignment included). Default `false`:
    /// the bank's operator opts in. Serving a saved model needs no training.
    pub enabled: bool,
    /// Fewest non-linear hidden layers the bottom model must have (at least 1: a purely linear
    /// bottom model can be inverted back to the standardised features). Default 1.
    pub min_hidden_layers: usize,
    /// The bank's own seed, mixed into the initialisation of every bottom model so that the
    /// coordinator cannot regenerate the initial weights from the seed it sends. Default: a
    /// fresh random seed at every start.
    pub seed: Option<u64>,
    /// Most customers of the other banks this bank re-blinds in one alignment (PSI). Each
    /// re-blinded point lets the coordinator test one guessed id against this bank's list, so
    /// the coordinator gets at most this many guesses per alignment, and none once handles are
    /// assigned. Default 5,000,000.
    pub max_peer_customers: u64,
}

impl Default for TrainingPolicy {
    fn default() -> Self {
        Self {
            enabled: false,
            min_hidden_layers: 1,
            seed: None,
            max_peer_customers: 5_000_000,
        }
    }
}

impl TrainingPolicy {
    /// The default policy with training enabled (demos, tests and benchmarks).
    pub fn allow() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }
}

/// Mixes the coordinator's seed with the bank's own (SplitMix64 finaliser over both), so the
/// initialisation depends on a secret the coordinator does not have.
pub fn mix_seed(coordinator: u64, own: u64) -> u64 {
    let mut z = coordinator ^ own.rotate_left(29) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Why an explanation is refused.
const REFUSAL: &str =
    "explain refused: only customers embedded moments before, with the same model, once per embedding";

/// How long after embedding a customer its explanation may be asked for.
pub const EXPLAIN_WINDOW: Duration = Duration::from_secs(30);
/// Most embedded customers remembered for explaining (older ones are forgotten first).
pub const EXPLAIN_MEMORY: usize = 200_000;

/// The customers embedded moments ago, by model: `Explain` is answered only for them, at most
/// once per embedding, and only for the model that embedded them (several models may be
/// loaded: the active one and a shadow). Bounded in time and size.
#[derive(Debug, Default)]
pub struct ExplainAllowance {
    /// (when, model and customer) in the order embedded.
    order: VecDeque<(Instant, String)>,
    /// Explanations left per model and customer.
    left: HashMap<String, u32>,
}

/// The allowance's key of a customer embedded with a model (a model id has no NUL).
fn key(model: &str, id: &str) -> String {
    format!("{model}\u{0}{id}")
}

impl ExplainAllowance {
    /// Records that `ids` were embedded with `model` at `now`.
    pub fn embedded(&mut self, model: &str, ids: &[String], now: Instant) {
        self.expire(now);
        for id in ids {
            let k = key(model, id);
            *self.left.entry(k.clone()).or_default() += 1;
            self.order.push_back((now, k));
        }
        while self.order.len() > EXPLAIN_MEMORY {
            self.pop_front();
        }
    }

    /// Takes one explanation for each of `ids` (with `model`, at `now`).
    ///
    /// # Errors
    /// A message for the refusal if any id was not embedded with this model within
    /// [`EXPLAIN_WINDOW`] as many times as it is asked for; nothing is taken then.
    pub fn take(&mut self, model: &str, ids: &[String], now: Instant) -> Result<(), &'static str> {
        self.expire(now);
        let mut want: HashMap<String, u32> = HashMap::new();
        for id in ids {
            *want.entry(key(model, id)).or_default() += 1;
        }
        if want
            .iter()
            .any(|(k, n)| self.left.get(k).copied().unwrap_or(0) < *n)
        {
            return Err(REFUSAL);
        }
        for (k, n) in want {
            if let Some(l) = self.left.get_mut(&k) {
                *l -= n;
            }
        }
        Ok(())
    }

    fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > EXPLAIN_WINDOW)
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, id)) = self.order.pop_front()
            && let Some(l) = self.left.get_mut(&id)
        {
            *l = l.saturating_sub(1);
            if *l == 0 {
                self.left.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn explain_only_what_was_embedded_once_per_embedding_and_model_and_in_time() {
        let t0 = Instant::now();
        let mut a = ExplainAllowance::default();
        a.embedded("m", &ids(&["c1", "c2"]), t0);
        assert!(a.take("m", &ids(&["c3"]), t0).is_err(), "never embedded");
        assert!(a.take("other", &ids(&["c1"]), t0).is_err(), "another model");
        assert!(
            a.take("m", &ids(&["c1", "c1"]), t0).is_err(),
            "more than embedded"
        );
        assert!(a.take("m", &ids(&["c1", "c2"]), t0).is_ok());
        assert!(a.take("m", &ids(&["c1"]), t0).is_err(), "already explained");
        a.embedded("m", &ids(&["c1"]), t0);
        let late = t0 + EXPLAIN_WINDOW + Duration::from_secs(1);
        assert!(a.take("m", &ids(&["c1"]), late).is_err(), "too late");
        // Two models loaded at once (active and shadow): each keeps its own allowance.
        a.embedded("m", &ids(&["c5"]), t0);
        a.embedded("shadow", &ids(&["c5"]), t0);
        assert!(a.take("m", &ids(&["c5"]), t0).is_ok());
        assert!(a.take("shadow", &ids(&["c5"]), t0).is_ok());
        assert!(a.take("m", &ids(&["c5"]), t0).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let t0 = Instant::now();
        let mut a = ExplainAllowance::default();
        let many: Vec<String> = (0..EXPLAIN_MEMORY + 10).map(|i| format!("c{i}")).collect();
        a.embedded("m", &many, t0);
        assert_eq!(a.order.len(), EXPLAIN_MEMORY);
        assert!(
            a.take("m", &ids(&["c0"]), t0).is_err(),
            "the oldest were forgotten"
        );
        assert!(a.take("m", &ids(&["c11"]), t0).is_ok());
    }

    #[test]
    fn seeds_mix_both_sides() {
        assert_ne!(mix_seed(1, 2), mix_seed(1, 3));
        assert_ne!(mix_seed(1, 2), mix_seed(2, 2));
        assert_eq!(mix_seed(7, 9), mix_seed(7, 9));
    }
}
