//! Every message survives encode → decode, and the header layout is the documented one.

mod support;

use supermachine_proto::*;
use support::samples;

#[test]
fn every_message_round_trips() {
    for (i, m) in samples().into_iter().enumerate() {
        let id = i as u32 * 1000 + 1;
        let bytes = encode_frame(id, &m).unwrap();
        let (frame, used) = decode_frame(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(
            frame.unwrap(),
            Frame {
                id,
                message: m.clone()
            }
        );
        // The blocking reader agrees with the slice decoder.
        let mut buf = Vec::new();
        let f = read_frame(&mut &bytes[..], &mut buf).unwrap();
        assert_eq!(f.message, m);
    }
}

#[test]
fn header_layout_is_the_documented_one() {
    let bytes = encode_frame(0x0102_0304, &Message::Ping { nonce: 5 }).unwrap();
    assert_eq!(
        &bytes[..HEADER_LEN],
        &[b'S', b'M', kind::PING, 0, 4, 3, 2, 1, 8, 0, 0, 0]
    );
    assert_eq!(&bytes[HEADER_LEN..], &5u64.to_le_bytes());
}

#[test]
fn oversized_is_rejected_from_the_header_alone() {
    let mut h = encode_frame(1, &Message::Ok).unwrap();
    h[8..12].copy_from_slice(&(MAX_FRAME_SIZE + 1).to_le_bytes());
    match decode_frame(&h) {
        Some((Err(FrameError::Oversized { id: 1, len }), 12)) => {
            assert_eq!(len, MAX_FRAME_SIZE + 1)
        }
        other => panic!("{other:?}"),
    }
    // The blocking reader neither reads nor allocates the payload.
    let mut buf = Vec::new();
    match read_frame(&mut &h[..], &mut buf) {
        Err(FrameError::Oversized { .. }) => assert_eq!(buf.capacity(), 0),
        other => panic!("{other:?}"),
    }
    let big = Message::Stdout {
        data: vec![0; MAX_FRAME_SIZE as usize + 1],
    };
    assert!(encode_frame(1, &big).is_err());
    let max = Message::Stdout {
        data: vec![0; MAX_FRAME_SIZE as usize],
    };
    assert!(encode_frame(1, &max).is_ok());
}

#[test]
fn stream_errors_say_how_far_they_got() {
    let bytes = encode_frame(1, &Message::Ping { nonce: 1 }).unwrap();
    let mut buf = Vec::new();
    assert!(matches!(
        read_frame(&mut &bytes[..0], &mut buf),
        Err(FrameError::Closed)
    ));
    assert!(matches!(
        read_frame(&mut &bytes[..5], &mut buf),
        Err(FrameError::Truncated { got: 5 })
    ));
    assert!(matches!(
        read_frame(&mut &bytes[..14], &mut buf),
        Err(FrameError::Truncated { got: 14 })
    ));
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert!(matches!(
        read_frame(&mut &bad[..], &mut buf),
        Err(FrameError::BadMagic)
    ));
    // Two frames back to back, the first malformed: the reader lands on the second.
    let mut two = bytes.clone();
    two[3] = 1;
    two.extend_from_slice(&bytes);
    let mut r = &two[..];
    assert!(matches!(
        read_frame(&mut r, &mut buf),
        Err(FrameError::Malformed {
            error: DecodeError::ReservedFlags(1),
            ..
        })
    ));
    assert_eq!(
        read_frame(&mut r, &mut buf).unwrap().message,
        Message::Ping { nonce: 1 }
    );
    // Oversized payloads can be skipped without buffering them.
    let mut over = bytes[..HEADER_LEN].to_vec();
    over[8..12].copy_from_slice(&(MAX_FRAME_SIZE + 10).to_le_bytes());
    over.extend(std::iter::repeat(7u8).take(MAX_FRAME_SIZE as usize + 10));
    over.extend_from_slice(&bytes);
    let mut r = &over[..];
    let Err(FrameError::Oversized { len, .. }) = read_frame(&mut r, &mut buf) else {
        panic!("not oversized")
    };
    skip_payload(&mut r, len).unwrap();
    assert_eq!(
        read_frame(&mut r, &mut buf).unwrap().message,
        Message::Ping { nonce: 1 }
    );
}

#[test]
fn version_negotiation_picks_the_newest_common() {
    assert_eq!(negotiate_version(1, 1), Some(1));
    assert_eq!(negotiate_version(1, 9), Some(PROTOCOL_VERSION));
    assert_eq!(negotiate_version(2, 9), None);
    assert_eq!(negotiate_version(0, 0), None);
    assert_eq!(negotiate_version(3, 1), None);
}
