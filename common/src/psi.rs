//! ECDH private set intersection (PSI) over ristretto255: the arithmetic, no IO.
//!
//! Every party hashes each of its customer ids to a point `H(id)` of the ristretto255 group
//! and multiplies it by its own secret scalar `k` ("blinding"): `k·H(id)`. Blinded points of
//! one party are multiplied again by another party's scalar ("re-blinding"); because scalar
//! multiplication commutes, `kₐ·k_b·H(id)` is the same point whichever side started, so two
//! doubly blinded lists can be compared for equality without either revealing an id. Under
//! the decisional Diffie–Hellman assumption a point blinded by a key one does not hold says
//! nothing about the id behind it. A key never leaves the party that drew it (it is not
//! serialisable and is wiped on drop), and a fresh key is drawn for every alignment.
//!
//! Points travel as their 32-byte canonical compressed encodings, concatenated
//! ([`POINT_LEN`] bytes each). Decoding rejects non-canonical encodings, so a peer cannot
//! smuggle anything but group elements into a re-blinding.
//!
//! Speed: a variable-base scalar multiplication is most of the cost. Lists are processed in
//! parallel chunks (rayon), and compression uses the batched "double and compress" of
//! curve25519-dalek: the point is multiplied by `k/2` and doubled during compression, which
//! costs far less than compressing each point on its own.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use rand::RngCore;
use rayon::prelude::*;
use sha2::Sha512;
use zeroize::Zeroize;

/// Bytes of one encoded point.
pub const POINT_LEN: usize = 32;

/// Domain separation for hashing ids to the group: ids hashed by another protocol (or another
/// version of this one) never collide with ours.
const DOMAIN: &[u8] = b"tessera/psi/v1/ristretto255-sha512\0";

/// Points per parallel work item (and per batched compression).
const CHUNK: usize = 512;

/// Errors handling points received from a peer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PsiError {
    /// The byte string is not a whole number of points.
    #[error("{0} bytes is not a whole number of {POINT_LEN}-byte points")]
    Length(usize),
    /// A point is not a canonical ristretto255 encoding.
    #[error("point {0} is not a valid ristretto255 encoding")]
    InvalidPoint(usize),
}

/// A party's secret blinding scalar for one alignment. Not `Clone`, not serialisable; its
/// `Debug` prints nothing secret; the scalar is overwritten when the key is dropped.
pub struct PsiKey {
    /// `k / 2`: multiplications use half the key and double while compressing.
    half: Scalar,
    /// `k` itself, for re-blinding points that arrive compressed.
    full: Scalar,
}

impl std::fmt::Debug for PsiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PsiKey(..)")
    }
}

impl Drop for PsiKey {
    fn drop(&mut self) {
        self.half.zeroize();
        self.full.zeroize();
    }
}

impl PsiKey {
    /// A fresh uniformly random non-zero key from the operating system's generator.
    pub fn random() -> Self {
        let mut wide = [0u8; 64];
        loop {
            rand::rngs::OsRng.fill_bytes(&mut wide);
            let full = Scalar::from_bytes_mod_order_wide(&wide);
            if full != Scalar::ZERO {
                wide.zeroize();
                return Self::from_scalar(full);
            }
        }
    }

    fn from_scalar(full: Scalar) -> Self {
        let half = full * Scalar::from(2u64).invert();
        Self { half, full }
    }

    /// A key derived from `seed` (tests and benchmarks only: a real alignment uses
    /// [`PsiKey::random`]).
    pub fn from_seed(seed: u64) -> Self {
        let mut wide = [0u8; 64];
        wide[..8].copy_from_slice(&seed.to_le_bytes());
        wide[8] = 1;
        Self::from_scalar(Scalar::from_bytes_mod_order_wide(&wide))
    }
}

/// Hashes a customer id to a point of the group (SHA-512, then the ristretto255
/// hash-to-group map of RFC 9496), with a protocol-specific domain prefix.
pub fn hash_id(id: &str) -> RistrettoPoint {
    let mut input = Vec::with_capacity(DOMAIN.len() + id.len());
    input.extend_from_slice(DOMAIN);
    input.extend_from_slice(id.as_bytes());
    RistrettoPoint::hash_from_bytes::<Sha512>(&input)
}

/// Multiplies by `k/2` then compresses `2·p`, in batches: `compress(k·p)` for each point.
fn multiply_and_compress(key: &PsiKey, points: &[RistrettoPoint], out: &mut [u8]) {
    let halves: Vec<RistrettoPoint> = points.iter().map(|p| p * key.half).collect();
    for (c, dst) in RistrettoPoint::double_and_compress_batch(&halves)
        .iter()
        .zip(out.chunks_exact_mut(POINT_LEN))
    {
        dst.copy_from_slice(c.as_bytes());
    }
}

/// Blinds ids with `key`: `k·H(id)` for each, in order, as concatenated encodings.
pub fn blind_ids<S: AsRef<str> + Sync>(key: &PsiKey, ids: &[S]) -> Vec<u8> {
    let mut out = vec![0u8; ids.len() * POINT_LEN];
    out.par_chunks_mut(CHUNK * POINT_LEN)
        .zip(ids.par_chunks(CHUNK))
        .for_each(|(dst, chunk)| {
            let points: Vec<RistrettoPoint> = chunk.iter().map(|id| hash_id(id.as_ref())).collect();
            multiply_and_compress(key, &points, dst);
        });
    out
}

/// Re-blinds points received from another party: `k·P` for each, in order.
///
/// # Errors
/// [`PsiError::Length`] if `points` is not a whole number of points;
/// [`PsiError::InvalidPoint`] (with the index of a bad one) if one is not a canonical encoding.
pub fn reblind(key: &PsiKey, points: &[u8]) -> Result<Vec<u8>, PsiError> {
    if !points.len().is_multiple_of(POINT_LEN) {
        return Err(PsiError::Length(points.len()));
    }
    let mut out = vec![0u8; points.len()];
    out.par_chunks_mut(CHUNK * POINT_LEN)
        .zip(points.par_chunks(CHUNK * POINT_LEN))
        .enumerate()
        .try_for_each(|(c, (dst, src))| {
            let mut decoded = Vec::with_capacity(src.len() / POINT_LEN);
            for (i, bytes) in src.chunks_exact(POINT_LEN).enumerate() {
                let p = CompressedRistretto::from_slice(bytes)
                    .ok()
                    .and_then(|c| c.decompress())
                    .ok_or(PsiError::InvalidPoint(c * CHUNK + i))?;
                decoded.push(p);
            }
            multiply_and_compress(key, &decoded, dst);
            Ok(())
        })?;
    Ok(out)
}

/// Number of points in a concatenated encoding.
///
/// # Errors
/// [`PsiError::Length`] if it is not a whole number of points.
pub fn count(points: &[u8]) -> Result<usize, PsiError> {
    if points.len().is_multiple_of(POINT_LEN) {
        Ok(points.len() / POINT_LEN)
    } else {
        Err(PsiError::Length(points.len()))
    }
}

/// Positions of equal points in two doubly blinded lists: `(i, j)` with `a[i] == b[j]`,
/// ordered by `j`. A point repeated within `a` matches at its first position (ids are unique
/// within a party, so repeats do not occur in a correct run).
///
/// # Errors
/// [`PsiError::Length`] if either list is not a whole number of points.
pub fn intersect(a: &[u8], b: &[u8]) -> Result<Vec<(usize, usize)>, PsiError> {
    count(a)?;
    count(b)?;
    let mut index: std::collections::HashMap<[u8; POINT_LEN], usize> =
        std::collections::HashMap::with_capacity(a.len() / POINT_LEN);
    for (i, p) in a.chunks_exact(POINT_LEN).enumerate() {
        let mut k = [0u8; POINT_LEN];
        k.copy_from_slice(p);
        index.entry(k).or_insert(i);
    }
    Ok(b.chunks_exact(POINT_LEN)
        .enumerate()
        .filter_map(|(j, p)| {
            let mut k = [0u8; POINT_LEN];
            k.copy_from_slice(p);
            index.get(&k).map(|&i| (i, j))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// Runs the two-party protocol and returns the intersection as ids of `a`.
    fn psi(a: &[String], b: &[String], ka: &PsiKey, kb: &PsiKey) -> BTreeSet<String> {
        let ea = blind_ids(ka, a);
        let eb = blind_ids(kb, b);
        let fa = reblind(kb, &ea).unwrap();
        let fb = reblind(ka, &eb).unwrap();
        intersect(&fa, &fb)
            .unwrap()
            .into_iter()
            .map(|(i, j)| {
                assert_eq!(a[i], b[j], "matched positions hold the same id");
                a[i].clone()
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn intersection_equals_the_plain_set_intersection(
            a in proptest::collection::btree_set("[A-Za-z0-9_-]{1,12}", 0..40),
            b in proptest::collection::btree_set("[A-Za-z0-9_-]{1,12}", 0..40),
            shared in proptest::collection::btree_set("[A-Za-z0-9]{1,12}", 0..20),
            seeds in (any::<u64>(), any::<u64>()),
        ) {
            let a: Vec<String> = a.union(&shared).cloned().collect();
            let b: Vec<String> = b.union(&shared).cloned().collect();
            let expected: BTreeSet<String> = a.iter().filter(|x| b.contains(x)).cloned().collect();
            let got = psi(&a, &b, &PsiKey::from_seed(seeds.0), &PsiKey::from_seed(seeds.1 ^ 0x5a5a));
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn blinded_points_never_contain_the_id(id in "[A-Za-z0-9]{4,16}", seed in any::<u64>()) {
            let e = blind_ids(&PsiKey::from_seed(seed), std::slice::from_ref(&id));
            prop_assert!(!e.windows(id.len()).any(|w| w == id.as_bytes()));
            // And a different key gives an unrelated point.
            let e2 = blind_ids(&PsiKey::from_seed(seed.wrapping_add(1)), &[id]);
            prop_assert_ne!(e, e2);
        }

        #[test]
        fn reblind_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = reblind(&PsiKey::from_seed(1), &bytes);
        }
    }

    #[test]
    fn blinding_commutes_and_matches_the_reference_arithmetic() {
        let (ka, kb) = (PsiKey::random(), PsiKey::random());
        let ids: Vec<String> = (0..1500).map(|i| format!("customer-{i}")).collect();
        let ab = reblind(&kb, &blind_ids(&ka, &ids)).unwrap();
        let ba = reblind(&ka, &blind_ids(&kb, &ids)).unwrap();
        assert_eq!(ab, ba);
        // The batched half-key path equals the plain multiplication.
        let plain = (hash_id(&ids[7]) * ka.full).compress();
        assert_eq!(&blind_ids(&ka, &ids[7..8])[..], plain.as_bytes());
    }

    #[test]
    fn bad_encodings_are_refused() {
        let k = PsiKey::from_seed(3);
        assert_eq!(reblind(&k, &[0u8; 31]), Err(PsiError::Length(31)));
        let mut pts = blind_ids(&k, &["a", "b"]);
        pts[POINT_LEN..].fill(0xff);
        assert_eq!(reblind(&k, &pts), Err(PsiError::InvalidPoint(1)));
        assert_eq!(intersect(&[0u8; 33], &[]), Err(PsiError::Length(33)));
        assert!(format!("{k:?}").contains(".."));
    }
}
