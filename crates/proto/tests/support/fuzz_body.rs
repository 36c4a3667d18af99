//! Shared by the cargo-fuzz target (fuzz/fuzz_targets/frame_decoder.rs) and the stable
//! garbage test (tests/decoder_garbage.rs), so CI runs the same checks the fuzzer does.

use supermachine_proto::{
    parse_control, parse_request, read_frame, write_frame, Decoder, Exit, FrameError, Resize,
    HEADER_LEN, MAX_PAYLOAD,
};

/// Feeds `data` to the incremental decoder in uneven pieces. Panics only if the decoder
/// breaks its contract: accepted frames re-encode to the exact input bytes, the blocking
/// reader agrees, and nothing is lost or invented. Returns how many frames were accepted.
pub fn check(data: &[u8]) -> usize {
    let mut dec = Decoder::new();
    let mut consumed = 0usize;
    let mut accepted = 0;
    let mut pos = 0;
    let mut step = 1;
    'outer: while pos < data.len() {
        let end = (pos + step).min(data.len());
        dec.push(&data[pos..end]);
        pos = end;
        step = step % 7 + 1;
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => {
                    let mut again = Vec::new();
                    write_frame(&mut again, f.kind, &f.payload).expect("accepted frame fits");
                    assert_eq!(again.as_slice(), &data[consumed..consumed + again.len()]);
                    consumed += again.len();
                    accepted += 1;
                    payload_decoders(&f.payload);
                }
                Ok(None) => break,
                Err(FrameError::TooLarge { len }) => {
                    assert!(len > MAX_PAYLOAD);
                    break 'outer;
                }
                Err(e) => panic!("decoder returned {e}"),
            }
        }
        assert_eq!(dec.buffered(), pos - consumed);
    }
    // The blocking reader sees the same frames.
    let mut r = data;
    for _ in 0..accepted {
        assert!(read_frame(&mut r).expect("reader agrees").is_some());
    }
    if dec.buffered() > 0 && dec.buffered() < HEADER_LEN + MAX_PAYLOAD as usize {
        assert!(dec.truncated().is_some() || dec.next_frame().is_err());
    }
    accepted
}

/// The payload parsers must never panic on any bytes.
fn payload_decoders(p: &[u8]) {
    let _ = parse_control(p);
    let _ = parse_request(p);
    let _ = Exit::decode(p);
    let _ = Resize::decode(p);
}
