//! Steps 1, 3 and 4 of training: who holds the labels, the label holder's split of the
//! aligned customers, and their labels. The pure parts ([`label_holder`], [`complete_bitmap`],
//! [`Population::new`]) are tested without a federation.

use tessera_common::federation::Federation;
use tessera_common::wire::{
    PartyId, PartyInfo, Request, Response, SPLIT_HOLDOUT, SPLIT_TRAIN, SPLIT_UNUSED, SPLIT_VALIDATION,
};

use super::TrainError;
use super::align::Aligned;
use super::ctx::Ctx;
use crate::config::TrainingConfig;

/// Handles per labels request.
const PAGE: usize = 50_000;

/// The one party that holds labels.
///
/// # Errors
/// [`TrainError::Setup`] if none or several do.
pub fn label_holder(infos: &[PartyInfo]) -> Result<PartyId, TrainError> {
    let holders: Vec<&PartyInfo> = infos.iter().filter(|i| i.has_labels).collect();
    match holders.as_slice() {
        [one] => Ok(one.party_id.clone()),
        [] => Err(TrainError::Setup("no party holds labels".into())),
        _ => Err(TrainError::Setup("more than one party holds labels".into())),
    }
}

/// Step 1: every party describes itself.
///
/// # Errors
/// [`TrainError::Party`] if a party fails or describes another party.
pub(crate) async fn describe<F: Federation>(ctx: &Ctx<'_, F>) -> Result<Vec<PartyInfo>, TrainError> {
    ctx.all("describe", |_| Request::Describe)
        .await?
        .into_iter()
        .map(|(p, r)| match r {
            Response::Info(i) if i.party_id == p => Ok(i),
            _ => Err(TrainError::bad(&p, "describe", "bad answer")),
        })
        .collect()
}

/// The `Split` request's bitmap over handles `0..n`: bit `h` set when every party holds `h`.
pub fn complete_bitmap(membership: &[Vec<bool>], n: usize) -> Vec<u8> {
    let mut bitmap = vec![0u8; n.div_ceil(8)];
    for h in 0..n {
        if membership.iter().all(|m| m[h]) {
            bitmap[h / 8] |= 1 << (h % 8);
        }
    }
    bitmap
}

/// The customers training uses, by handle, and what is known of each.
#[derive(Clone, Debug, PartialEq)]
pub struct Population {
    /// Handles of the customers used (split tag not unused), in handle order.
    pub customers: Vec<u64>,
    /// `membership[p][i]`: party `p` knows customer `i`.
    pub membership: Vec<Vec<bool>>,
    /// Whether every party knows customer `i`.
    pub complete: Vec<bool>,
    /// Indexes (into `customers`) of the training, validation and holdout customers.
    pub train: Vec<usize>,
    /// See `train`.
    pub validation: Vec<usize>,
    /// See `train`.
    pub holdout: Vec<usize>,
}

impl Population {
    /// The customers the split tags keep, with their membership and partition.
    ///
    /// # Errors
    /// [`TrainError::Setup`] if a partition is empty.
    pub fn new(tags: &[u8], aligned_membership: &[Vec<bool>]) -> Result<Self, TrainError> {
        let customers: Vec<u64> = (0..tags.len() as u64)
            .filter(|&h| tags[h as usize] != SPLIT_UNUSED)
            .collect();
        let membership: Vec<Vec<bool>> = aligned_membership
            .iter()
            .map(|m| customers.iter().map(|&h| m[h as usize]).collect())
            .collect();
        let complete = (0..customers.len())
            .map(|i| membership.iter().all(|m| m[i]))
            .collect();
        let with_tag = |t: u8| -> Vec<usize> {
            (0..customers.len())
                .filter(|&i| tags[customers[i] as usize] == t)
                .collect()
        };
        let (train, validation, holdout) = (
            with_tag(SPLIT_TRAIN),
            with_tag(SPLIT_VALIDATION),
            with_tag(SPLIT_HOLDOUT),
        );
        if train.is_empty() || validation.is_empty() || holdout.is_empty() {
            return Err(TrainError::Setup(
                "the split left the training, validation or holdout set empty".into(),
            ));
        }
        Ok(Self {
            customers,
            membership,
            complete,
            train,
            validation,
            holdout,
        })
    }

    /// The handles of the customers at `idx`.
    pub fn handles(&self, idx: &[usize]) -> Vec<u64> {
        idx.iter().map(|&i| self.customers[i]).collect()
    }

    /// Customers every party knows.
    pub fn n_complete(&self) -> usize {
        self.complete.iter().filter(|&&c| c).count()
    }
}

/// Step 3: the label holder splits the aligned customers (in its own file order, so the
/// holdout is the same customers in every run), stratified by label and by whether every
/// party knows the customer.
///
/// # Errors
/// [`TrainError::Party`] if the label holder fails or answers a malformed split.
pub(crate) async fn split<F: Federation>(
    ctx: &Ctx<'_, F>,
    holder: &PartyId,
    session: u64,
    aligned: &Aligned,
    cfg: &TrainingConfig,
) -> Result<Vec<u8>, TrainError> {
    let n = aligned.n;
    let request = Request::Split {
        session,
        complete: complete_bitmap(&aligned.membership, n),
        holdout_fraction: cfg.holdout_fraction,
        validation_fraction: cfg.validation_fraction,
        seed: cfg.split_seed,
        max_rows: cfg.max_rows.map(|m| m as u64),
    };
    match ctx.one(holder, "split", request).await? {
        Response::Split { tags } if tags.len() == n && tags.iter().all(|&t| t <= SPLIT_UNUSED) => Ok(tags),
        _ => Err(TrainError::bad(holder, "split", "bad answer")),
    }
}

/// Step 4: the labels of `customers`, page by page, from the label holder.
///
/// # Errors
/// [`TrainError::Party`] on a failed or malformed answer; [`TrainError::Setup`] if either
/// class has fewer than 10 customers.
pub(crate) async fn labels<F: Federation>(
    ctx: &Ctx<'_, F>,
    holder: &PartyId,
    session: u64,
    customers: &[u64],
) -> Result<Vec<u8>, TrainError> {
    let mut labels = Vec::with_capacity(customers.len());
    for chunk in customers.chunks(PAGE) {
        let request = Request::Labels {
            session,
            handles: chunk.to_vec(),
        };
        match ctx.one(holder, "labels", request).await? {
            Response::Labels { labels: l } if l.len() == chunk.len() && l.iter().all(|&v| v <= 1) => {
                labels.extend(l)
            }
            _ => return Err(TrainError::bad(holder, "labels", "bad answer")),
        }
    }
    let positives = labels.iter().filter(|&&l| l == 1).count();
    if positives < 10 || labels.len() - positives < 10 {
        return Err(TrainError::Setup(format!(
            "too few customers of each class to train ({} customers, {positives} positive)",
            labels.len()
        )));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(p: &str, has_labels: bool) -> PartyInfo {
        PartyInfo {
            party_id: PartyId::new(p).unwrap(),
            n_features: 1,
            n_rows: 1,
            has_labels,
            max_emb_dim: 8,
        }
    }

    #[test]
    fn exactly_one_label_holder() {
        assert_eq!(
            label_holder(&[info("a", false), info("b", true)]).unwrap(),
            PartyId::new("b").unwrap()
        );
        assert!(matches!(
            label_holder(&[info("a", false)]),
            Err(TrainError::Setup(_))
        ));
        assert!(matches!(
            label_holder(&[info("a", true), info("b", true)]),
            Err(TrainError::Setup(_))
        ));
    }

    #[test]
    fn bitmap_marks_customers_every_party_holds() {
        let membership = vec![vec![true; 10], (0..10).map(|h| h % 3 == 0).collect()];
        let b = complete_bitmap(&membership, 10);
        assert_eq!(b, vec![0b0100_1001, 0b0000_0010]);
    }

    #[test]
    fn population_drops_unused_and_partitions_by_tag() {
        let tags = [
            SPLIT_TRAIN,
            SPLIT_UNUSED,
            SPLIT_VALIDATION,
            SPLIT_HOLDOUT,
            SPLIT_TRAIN,
        ];
        let membership = vec![vec![true; 5], vec![true, true, false, true, false]];
        let p = Population::new(&tags, &membership).unwrap();
        assert_eq!(p.customers, vec![0, 2, 3, 4]);
        assert_eq!(p.membership[1], vec![true, false, true, false]);
        assert_eq!(p.complete, vec![true, false, true, false]);
        assert_eq!(
            (p.train.clone(), p.validation.clone(), p.holdout.clone()),
            (vec![0, 3], vec![1], vec![2])
        );
        assert_eq!(p.handles(&p.train), vec![0, 4]);
        assert_eq!(p.n_complete(), 2);
        let no_holdout = [SPLIT_TRAIN, SPLIT_VALIDATION];
        assert!(matches!(
            Population::new(&no_holdout, &[vec![true; 2]]),
            Err(TrainError::Setup(_))
        ));
    }
}
