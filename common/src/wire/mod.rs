//! Every type that crosses a process boundary, and the bounded frame codec that carries them.
//!
//! A frame is `[kind: u8][length: u32 big-endian][payload: bincode 2 (serde)]`. The reader
//! checks the kind and rejects any length above that kind's maximum **before allocating**,
//! then decodes the payload and rejects trailing bytes. Nothing here does IO: the transport
//! feeds bytes in and takes bytes out.
//!
//! **Invariant:** no message carries a party's feature values. Parties send embeddings (the
//! output of their bottom model), labels (label holder only, during training) and blinded
//! points (alignment); the types below have no field that could hold a feature column.
//! **Invariant:** no party message carries a customer id. The only ids on the wire are those
//! the coordinator asks to score ([`Request::Embed`], the id named in the HTTP request);
//! training refers to customers by opaque handles agreed through private set intersection.

//!
//! Layout: [`messages`] (the catalogue: handshake, requests, responses), [`codec`] (frames:
//! kinds, limits, encode and decode), [`matrix`] (the one dense matrix type on the wire, with
//! checked conversions to and from ndarray).

pub mod bounded;
pub mod codec;
pub mod matrix;
pub mod messages;

pub use codec::{
    FrameError, FrameLimits, HEADER_LEN, Kind, MAX_CONTROL_PAYLOAD, decode, decode_payload, encode,
    parse_header,
};
pub use matrix::{Matrix, MatrixError};
pub use messages::*;
pub use tessera_certs::PartyId;

/// Version of the wire protocol. A peer speaking another version is refused at the handshake.
/// 4: `Embed` and `Explain` name the model; parties keep several models loaded.
pub const PROTOCOL_VERSION: u16 = 4;

/// Models a party keeps loaded for scoring at once: the active one, the one before it (an
/// instant rollback), a shadow, and one being activated.
pub const MAX_LOADED_MODELS: usize = 4;

/// Longest customer id accepted anywhere, in characters (so at most 512 bytes of UTF-8).
pub const MAX_ID_LEN: usize = 128;

#[cfg(test)]
mod tests;
