//! Shared by the cargo-fuzz target (fuzz/fuzz_targets/frame_decoder.rs) and the stable
//! garbage test (tests/decoder_garbage.rs), so CI runs the same checks the fuzzer does.

use supermachine_proto::{decode_frame, encode_frame, Message, HEADER_LEN};

/// Decodes every frame in `data`. Panics only if the decoder breaks its contract: an
/// accepted frame must re-encode to the same bytes, and every step must make progress.
/// Returns whether at least one frame was accepted.
pub fn check(data: &[u8]) -> bool {
    let mut rest = data;
    let mut accepted = false;
    while let Some((result, used)) = decode_frame(rest) {
        assert!(used >= HEADER_LEN && used <= rest.len(), "bad span {used}");
        if let Ok(frame) = result {
            let again = encode_frame(frame.id, &frame.message).expect("accepted frame fits");
            assert_eq!(
                again.as_slice(),
                &rest[..used],
                "decode/encode not canonical"
            );
            // The payload decoder alone agrees.
            let kind = rest[2];
            let payload = &rest[HEADER_LEN..used];
            assert_eq!(Message::decode(kind, payload).as_ref(), Ok(&frame.message));
            accepted = true;
        }
        rest = &rest[used..];
    }
    accepted
}

/// Reads `data` as a stream with the blocking reader, the way the agent does: skip
/// oversized payloads, go on after malformed frames, stop where framing is lost.
/// Returns how many frames were accepted.
pub fn check_stream(data: &[u8]) -> usize {
    use supermachine_proto::{read_frame, skip_payload, FrameError};
    let mut reader = data;
    let mut buf = Vec::new();
    let mut accepted = 0;
    loop {
        match read_frame(&mut reader, &mut buf) {
            Ok(_) => accepted += 1,
            Err(FrameError::Malformed { .. }) => {}
            Err(FrameError::Oversized { len, .. }) => {
                if skip_payload(&mut reader, len).is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
        assert!(buf.len() <= supermachine_proto::MAX_FRAME_SIZE as usize);
    }
    accepted
}
