//! Frames over quinn streams: bounded reads with the header checked before allocating.

use quinn::{RecvStream, SendStream};

use crate::wire::{self, FrameError, FrameLimits, HEADER_LEN, Message};

use super::TransportError;

/// Writes one frame and finishes the stream's send side.
///
/// # Errors
/// Encoding errors, or the stream was reset/the connection lost.
///
/// # Cancel safety
/// Not cancel safe: a cancelled write leaves a partial frame; the stream must be dropped.
pub async fn write_message(
    send: &mut SendStream,
    msg: &Message,
    limits: &FrameLimits,
) -> Result<(), TransportError> {
    let bytes = wire::encode(msg, limits)?;
    send.write_all(&bytes)
        .await
        .map_err(|e| TransportError::Stream(e.to_string()))?;
    send.finish().map_err(|e| TransportError::Stream(e.to_string()))?;
    Ok(())
}

/// Reads one frame.
///
/// # Returns
/// `Ok(None)` if the stream ended cleanly before any byte of a frame.
///
/// # Errors
/// [`FrameError::Truncated`] if it ended mid-frame; header and payload errors; stream errors.
///
/// # Cancel safety
/// Not cancel safe: bytes already read are lost; the stream must be dropped.
pub async fn read_message(
    recv: &mut RecvStream,
    limits: &FrameLimits,
) -> Result<Option<Message>, TransportError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match recv
            .read(&mut header[filled..])
            .await
            .map_err(|e| TransportError::Stream(e.to_string()))?
        {
            Some(n) => filled += n,
            None if filled == 0 => return Ok(None),
            None => return Err(FrameError::Truncated.into()),
        }
    }
    let (kind, len) = wire::parse_header(header, limits)?;
    let mut payload = vec![0u8; len as usize];
    recv.read_exact(&mut payload).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(_) => TransportError::Frame(FrameError::Truncated),
        quinn::ReadExactError::ReadError(e) => TransportError::Stream(e.to_string()),
    })?;
    Ok(Some(wire::decode_payload(kind, &payload)?))
}
