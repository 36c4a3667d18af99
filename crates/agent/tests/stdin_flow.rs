//! Stdin and output flow control: big inputs, children that do not read, hosts that do
//! not read, connections that go away.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use supermachine_proto::{encode_header, Kind};

/// Sends `total` bytes of stdin in `frame`-sized STDIN frames from a thread, then EOF,
/// while this thread collects the output.
fn pump(agent: &Agent, argv: &[&str], total: usize, frame: usize) -> Outcome {
    let mut c = agent.connect();
    c.request(&req(argv));
    let mut w = c.s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk: Vec<u8> = (0..frame).map(|i| (i % 251) as u8).collect();
        let mut left = total;
        while left > 0 {
            let n = left.min(frame);
            let mut buf = encode_header(Kind::Stdin as u8, n as u32).to_vec();
            buf.extend_from_slice(&chunk[..n]);
            if w.write_all(&buf).is_err() {
                return;
            }
            left -= n;
        }
        let _ = w.write_all(&encode_header(Kind::Stdin as u8, 0));
    });
    let o = c.collect();
    writer.join().unwrap();
    o
}

#[test]
fn one_mib_of_stdin_into_wc_and_cat() {
    let agent = Agent::start();
    let o = pump(&agent, &["wc", "-c"], 1 << 20, 1 << 20);
    assert_eq!((o.code(), o.out().trim()), (0, "1048576"), "{o:?}");
    let o = pump(&agent, &["cat"], 1 << 20, 64 * 1024 + 7);
    assert_eq!(o.code(), 0);
    assert_eq!(o.stdout.len(), 1 << 20);
    assert!(o
        .stdout
        .iter()
        .enumerate()
        .all(|(i, &b)| b == ((i % (64 * 1024 + 7)) % 251) as u8));
}

#[test]
fn sixteen_mib_of_stdin_into_wc_and_cat() {
    let agent = Agent::start();
    let o = pump(&agent, &["wc", "-c"], 16 << 20, 1 << 20);
    assert_eq!((o.code(), o.out().trim()), (0, "16777216"), "{o:?}");
    // One frame of the largest size the host may send.
    let o = pump(&agent, &["wc", "-c"], 16 << 20, 16 << 20);
    assert_eq!((o.code(), o.out().trim()), (0, "16777216"), "{o:?}");
    let o = pump(&agent, &["cat"], 16 << 20, 1 << 20);
    assert_eq!((o.code(), o.stdout.len()), (0, 16 << 20));
}

#[test]
fn stdin_to_a_child_that_never_reads_does_not_hang() {
    let agent = Agent::start();
    for _ in 0..5 {
        let t0 = Instant::now();
        // The writer blocks once the agent stops reading; EXIT must still come.
        let mut c = agent.connect();
        c.request(&sh("sleep 0.3; echo done"));
        let mut w = c.s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let chunk = vec![7u8; 1 << 20];
            for _ in 0..64 {
                let mut buf = encode_header(Kind::Stdin as u8, chunk.len() as u32).to_vec();
                buf.extend_from_slice(&chunk);
                if w.write_all(&buf).is_err() {
                    return;
                }
            }
        });
        let o = c.collect();
        assert_eq!((o.code(), o.out().as_str()), (0, "done\n"));
        assert!(t0.elapsed() < Duration::from_secs(30));
        drop(c);
        writer.join().unwrap();
    }
    // Same for a child that exits at once.
    let o = pump(&agent, &["true"], 8 << 20, 1 << 20);
    assert_eq!(o.code(), 0);
}

#[test]
fn host_not_reading_output_keeps_agent_memory_bounded() {
    let agent = Agent::start();
    let before = agent.rss_kib();
    let mut c = agent.connect();
    c.request(&req(&["cat", "/dev/zero"]));
    std::thread::sleep(Duration::from_secs(3));
    let during = agent.rss_kib();
    println!("agent RSS before {before} KiB, after 3 s of unread output {during} KiB");
    assert!(
        during < before + 16 * 1024,
        "agent grew from {before} to {during} KiB while the host did not read"
    );
    // Reading resumes the flow.
    let mut got = 0;
    while got < 4 << 20 {
        let f = c.recv().unwrap();
        assert_eq!(f.kind, Kind::Stdout as u8);
        got += f.payload.len();
    }
}

#[test]
fn closing_the_connection_kills_the_process_group() {
    let agent = Agent::start();
    let mut c = agent.connect();
    c.request(&sh("sleep 100 & echo $!; exec sleep 100"));
    let bg: u32 = c.read_until(|s| s.ends_with('\n')).trim().parse().unwrap();
    drop(c);
    assert!(
        wait_dead(bg),
        "background job survived the closed connection"
    );
    // A job that ignores SIGHUP is killed after the grace period.
    let mut c = agent.connect();
    c.request(&sh("trap '' HUP; echo $$; while :; do sleep 0.1; done"));
    let pid: u32 = c.read_until(|s| s.ends_with('\n')).trim().parse().unwrap();
    drop(c);
    assert!(wait_dead(pid), "a job ignoring SIGHUP survived");
}
