//! Shared by the integration tests: sample frames of every kind.
#![allow(dead_code)]

pub mod fuzz_body;

use supermachine_proto::*;

/// Encoded frames of every kind, edge values included.
pub fn samples() -> Vec<Vec<u8>> {
    let req = ExecRequest {
        argv: vec!["sh".into(), "-c".into(), "echo é".into()],
        cwd: Some("/tmp".into()),
        tty: true,
        cols: Some(80),
        rows: Some(24),
        stage_files: vec![StageFile {
            path: "/a".into(),
            data_b64: b64_encode(b"hi"),
            mode: Some(0o755),
        }],
        chain: vec![vec!["true".into()]],
        ..Default::default()
    };
    let payloads: Vec<(u8, Vec<u8>)> = vec![
        (Kind::Request as u8, serde_json::to_vec(&req).unwrap()),
        (Kind::Control as u8, br#"{"action":"probe"}"#.to_vec()),
        (Kind::Control as u8, control_err("unknown CONTROL action")),
        (Kind::Stdin as u8, vec![]),
        (Kind::Stdin as u8, b"abc".to_vec()),
        (Kind::Stdout as u8, vec![0; 1000]),
        (Kind::Stderr as u8, b"err".to_vec()),
        (
            Kind::Resize as u8,
            Resize { cols: 1, rows: 2 }.encode().to_vec(),
        ),
        (Kind::Signal as u8, vec![9]),
        (
            Kind::Exit as u8,
            Exit {
                code: 137,
                peak_rss_kib: Some(1),
            }
            .encode(),
        ),
        (Kind::Error as u8, b"nope".to_vec()),
        (0x42, b"unknown kind".to_vec()),
    ];
    payloads
        .into_iter()
        .map(|(k, p)| {
            let mut v = Vec::new();
            write_frame(&mut v, k, &p).unwrap();
            v
        })
        .collect()
}
