//! Lists whose length is checked *before* their elements are decoded.
//!
//! A frame's byte limit does not bound the memory its decoding takes: an empty string is one
//! byte on the wire and 24 bytes in memory (a `String`), an empty list inside a list the same,
//! so a 32 MiB frame of empty customer ids would decode to about 800 MB. The message fields
//! whose elements are larger in memory than on the wire are decoded through [`vec`] (and
//! [`vec_of_vecs`]) with a per-field cap: a declared length above it is refused at once, before
//! any element is read or any memory reserved, and the frame is malformed.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};

/// Most customer ids in one scoring request (`Embed`, `Explain`) or answer (`Reasons`).
pub const MAX_IDS: usize = 65_536;
/// Most entries of a party's reason dictionary.
pub const MAX_DICTIONARY: usize = 4_096;
/// Most hidden layers of a bottom model.
pub const MAX_LAYERS: usize = 64;

struct Bounded<T, const N: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for Bounded<T, N> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {N} items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        // The wire codec declares the length first: refused before anything is allocated.
        if let Some(n) = seq.size_hint().filter(|&n| n > N) {
            return Err(A::Error::invalid_length(n, &self));
        }
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(N));
        while let Some(item) = seq.next_element()? {
            if out.len() == N {
                return Err(A::Error::invalid_length(N + 1, &self));
            }
            out.push(item);
        }
        Ok(out)
    }
}

/// Deserializes a list of at most `N` elements (`#[serde(deserialize_with = "…")]`).
///
/// # Errors
/// The deserializer's error, `invalid length` when the list is longer than `N`.
pub fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>, const N: usize>(d: D) -> Result<Vec<T>, D::Error> {
    d.deserialize_seq(Bounded::<T, N>(PhantomData))
}

/// One inner list of [`vec_of_vecs`].
struct Inner<T, const M: usize>(Vec<T>);

impl<'de, T: Deserialize<'de>, const M: usize> Deserialize<'de> for Inner<T, M> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        vec::<D, T, M>(d).map(Inner)
    }
}

/// Deserializes at most `N` lists of at most `M` elements each.
///
/// # Errors
/// The deserializer's error, `invalid length` when a list is too long.
pub fn vec_of_vecs<'de, D: Deserializer<'de>, T: Deserialize<'de>, const N: usize, const M: usize>(
    d: D,
) -> Result<Vec<Vec<T>>, D::Error> {
    let outer: Vec<Inner<T, M>> = vec::<D, Inner<T, M>, N>(d)?;
    Ok(outer.into_iter().map(|i| i.0).collect())
}
