//! The stable stand-in for the cargo-fuzz target (fuzz/fuzz_targets/frame_decoder.rs):
//! many random, truncated and mutated byte strings through the decoder. It must never
//! panic, and whatever it accepts must re-encode to exactly the bytes it came from.

mod support;

use support::fuzz_body;

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
    let mut accepted = 0;
    for _ in 0..20_000 {
        let len = rng.below(96);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half the time make the length small so whole frames get through.
        if rng.below(2) == 0 && bytes.len() >= 5 {
            bytes[1] = 0;
            bytes[2] = 0;
            bytes[3] = 0;
            bytes[4] %= 40;
        }
        accepted += fuzz_body::check(&bytes);
    }
    assert!(accepted > 1000, "{accepted}");
}

#[test]
fn truncated_and_mutated_valid_frames() {
    let valid = support::samples();
    let all: Vec<u8> = valid.concat();
    assert_eq!(fuzz_body::check(&all), valid.len());
    let mut rng = XorShift(42);
    let mut accepted_mutants = 0;
    for frame in &valid {
        // Every truncation: nothing accepted.
        for cut in 0..frame.len() {
            assert_eq!(fuzz_body::check(&frame[..cut]), 0);
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
            if fuzz_body::check(&m) > 0 {
                accepted_mutants += 1;
            }
        }
    }
    // Mutated kinds and payload bytes still frame: the re-encoding check has run on them.
    assert!(accepted_mutants > 1000, "{accepted_mutants}");
}
