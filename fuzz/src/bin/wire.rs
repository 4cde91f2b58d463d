//! Fuzz target: the wire codec. Any bytes: decoding never panics and never allocates past the
//! frame limits; a frame that decodes encodes again to a frame that decodes and encodes to the
//! same bytes (bytes, not messages, are compared: a NaN is not equal to itself).

use tessera_common::wire::{FrameLimits, decode, encode};

fn main() {
    let limits = FrameLimits::default();
    afl::fuzz!(|data: &[u8]| {
        let mut rest = data;
        // Several frames back to back, as on a stream.
        while let Ok(Some((message, used))) = decode(rest, &limits) {
            let again = encode(&message, &limits).expect("a decoded message encodes");
            let (back, n) = decode(&again, &limits)
                .expect("a re-encoded message decodes")
                .expect("a re-encoded message is a whole frame");
            assert_eq!(n, again.len());
            assert_eq!(encode(&back, &limits).expect("encodes again"), again);
            rest = &rest[used..];
        }
    });
}
