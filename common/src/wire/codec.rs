//! Frames: `[kind: u8][length: u32 big-endian][payload: bincode 2 (serde)]`. The reader checks
//! the kind and rejects any length above that kind's maximum **before allocating**, then
//! decodes the payload and rejects trailing bytes. Nothing here does IO: the transport feeds
//! bytes in and takes bytes out.

use super::messages::Message;

/// Bytes in a frame header: kind (1) and payload length (4).
pub const HEADER_LEN: usize = 5;

/// Maximum payload of handshake frames (hello, welcome, reject).
pub const MAX_CONTROL_PAYLOAD: u32 = 16 * 1024;

/// Frame kinds. The numeric values are part of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// [`Hello`], party → coordinator, first frame on a new connection.
    Hello = 1,
    /// [`Welcome`], coordinator → party, accepting the hello.
    Welcome = 2,
    /// [`Reject`], coordinator → party, refusing the hello.
    Reject = 3,
    /// [`Request`], coordinator → party, on a stream the coordinator opens.
    Request = 4,
    /// [`Response`], party → coordinator, on the same stream.
    Response = 5,
    /// [`crate::wire::Traced`], coordinator → party: a request with the ids it serves.
    Traced = 6,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Reject,
            4 => Kind::Request,
            5 => Kind::Response,
            6 => Kind::Traced,
            _ => return None,
        })
    }
}

/// Size limits applied when reading and writing frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest payload of a request or response frame, in bytes.
    pub max_data_payload: u32,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_data_payload: 32 * 1024 * 1024,
        }
    }
}

impl FrameLimits {
    /// The largest payload allowed for a frame of `kind`.
    pub fn max_payload(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Hello | Kind::Welcome | Kind::Reject => MAX_CONTROL_PAYLOAD,
            Kind::Request | Kind::Response | Kind::Traced => self.max_data_payload,
        }
    }
}

/// Errors reading or writing frames. A peer that sends a bad frame loses its stream.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The kind byte names no known frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The declared payload length exceeds the maximum for this kind.
    #[error("frame of kind {kind:?} declares {len} bytes, above the limit of {max}")]
    TooLarge {
        /// The frame kind.
        kind: Kind,
        /// The declared length.
        len: u64,
        /// The limit for this kind.
        max: u32,
    },
    /// The payload could not be decoded as the kind's message.
    #[error("malformed {kind:?} payload: {reason}")]
    Malformed {
        /// The frame kind.
        kind: Kind,
        /// What the decoder said.
        reason: String,
    },
    /// The payload decoded but bytes were left over.
    #[error("{kind:?} payload has {extra} trailing bytes")]
    TrailingBytes {
        /// The frame kind.
        kind: Kind,
        /// How many bytes were left.
        extra: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended mid-frame")]
    Truncated,
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// A frame arrived that is not valid at this point of the protocol.
    #[error("unexpected frame {0:?}")]
    Unexpected(Kind),
}

fn bincode_config() -> impl bincode::config::Config {
    // The limit stops a declared container length from driving allocation past any frame.
    bincode::config::standard().with_limit::<{ 64 * 1024 * 1024 }>()
}

/// Encodes a message as one frame.
///
/// # Errors
/// [`FrameError::TooLarge`] if the payload exceeds the kind's limit (the peer would refuse it);
/// [`FrameError::Encode`] if serialisation fails.
pub fn encode(msg: &Message, limits: &FrameLimits) -> Result<Vec<u8>, FrameError> {
    let cfg = bincode_config();
    let enc =
        |r: Result<Vec<u8>, bincode::error::EncodeError>| r.map_err(|e| FrameError::Encode(e.to_string()));
    let payload = match msg {
        Message::Hello(m) => enc(bincode::serde::encode_to_vec(m, cfg))?,
        Message::Welcome(m) => enc(bincode::serde::encode_to_vec(m, cfg))?,
        Message::Reject(m) => enc(bincode::serde::encode_to_vec(m, cfg))?,
        Message::Request(m) => enc(bincode::serde::encode_to_vec(m, cfg))?,
        Message::Response(m) => enc(bincode::serde::encode_to_vec(m, cfg))?,
        Message::Traced(m) => enc(bincode::serde::encode_to_vec(m, cfg))?,
    };
    let kind = msg.kind();
    let max = limits.max_payload(kind);
    if payload.len() as u64 > u64::from(max) {
        return Err(FrameError::TooLarge {
            kind,
            len: payload.len() as u64,
            max,
        });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(kind as u8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Parses a frame header, checking the kind and the length limit.
///
/// # Errors
/// [`FrameError::UnknownKind`] or [`FrameError::TooLarge`].
pub fn parse_header(header: [u8; HEADER_LEN], limits: &FrameLimits) -> Result<(Kind, u32), FrameError> {
    let kind = Kind::from_byte(header[0]).ok_or(FrameError::UnknownKind(header[0]))?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let max = limits.max_payload(kind);
    if len > max {
        return Err(FrameError::TooLarge {
            kind,
            len: u64::from(len),
            max,
        });
    }
    Ok((kind, len))
}

/// Decodes the payload of a frame whose header has been checked by [`parse_header`].
///
/// # Errors
/// [`FrameError::Malformed`] or [`FrameError::TrailingBytes`].
pub fn decode_payload(kind: Kind, payload: &[u8]) -> Result<Message, FrameError> {
    fn dec<T: serde::de::DeserializeOwned>(kind: Kind, payload: &[u8]) -> Result<T, FrameError> {
        let (value, used): (T, usize) = bincode::serde::decode_from_slice(payload, bincode_config())
            .map_err(|e| FrameError::Malformed {
                kind,
                reason: e.to_string(),
            })?;
        if used != payload.len() {
            return Err(FrameError::TrailingBytes {
                kind,
                extra: payload.len() - used,
            });
        }
        Ok(value)
    }
    Ok(match kind {
        Kind::Hello => Message::Hello(dec(kind, payload)?),
        Kind::Welcome => Message::Welcome(dec(kind, payload)?),
        Kind::Reject => Message::Reject(dec(kind, payload)?),
        Kind::Request => Message::Request(dec(kind, payload)?),
        Kind::Response => Message::Response(dec(kind, payload)?),
        Kind::Traced => {
            let t: super::messages::Traced = dec(kind, payload)?;
            if !t.is_bounded() {
                return Err(FrameError::Malformed {
                    kind,
                    reason: "too many or too long request ids".into(),
                });
            }
            Message::Traced(t)
        }
    })
}

/// Decodes one frame from the front of `buf`.
///
/// # Returns
/// `Ok(None)` if `buf` does not yet hold a whole frame (read more), otherwise the message and
/// the number of bytes it used.
///
/// # Errors
/// Any [`FrameError`] from the header or payload.
pub fn decode(buf: &[u8], limits: &FrameLimits) -> Result<Option<(Message, usize)>, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(header);
    let (kind, len) = parse_header(h, limits)?;
    let end = HEADER_LEN + len as usize;
    let Some(payload) = buf.get(HEADER_LEN..end) else {
        return Ok(None);
    };
    Ok(Some((decode_payload(kind, payload)?, end)))
}
