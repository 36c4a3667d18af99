//! The stable stand-in for the cargo-fuzz target (fuzz/fuzz_targets/frame_decoder.rs):
//! many random, truncated and mutated byte strings through the decoder. It must never
//! panic, and whatever it accepts must re-encode to exactly the bytes it came from.

mod support;

use support::fuzz_body;

use supermachine_proto::encode_frame;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn random_bytes() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let len = rng.below(96);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half the time start with the magic so the payload decoders get exercised.
        if rng.below(2) == 0 && bytes.len() >= 2 {
            bytes[0] = b'S';
            bytes[1] = b'M';
        }
        fuzz_body::check(&bytes);
        fuzz_body::check_stream(&bytes);
    }
}

#[test]
fn truncated_and_mutated_valid_frames() {
    let valid: Vec<Vec<u8>> = support::samples()
        .iter()
        .enumerate()
        .map(|(i, m)| encode_frame(i as u32, m).unwrap())
        .collect();
    let mut rng = XorShift(42);
    let mut accepted_mutants = 0;
    for frame in &valid {
        // Every truncation.
        for cut in 0..frame.len() {
            fuzz_body::check(&frame[..cut]);
            fuzz_body::check_stream(&frame[..cut]);
        }
        // Random byte and bit mutations, and garbage appended.
        for _ in 0..2_000 {
            let mut m = frame.clone();
            for _ in 0..=rng.below(3) {
                let at = rng.below(m.len());
                if rng.below(2) == 0 {
                    m[at] ^= 1 << rng.below(8);
                } else {
                    m[at] = rng.next() as u8;
                }
            }
            if rng.below(4) == 0 {
                let extra = rng.below(20);
                m.extend((0..extra).map(|_| rng.next() as u8));
            }
            fuzz_body::check_stream(&m);
            if fuzz_body::check(&m) {
                accepted_mutants += 1;
            }
        }
    }
    // Some mutants (e.g. changed ids or data bytes) are valid frames: the canonical
    // re-encoding check above has actually run on them.
    assert!(accepted_mutants > 1000, "{accepted_mutants}");
}
