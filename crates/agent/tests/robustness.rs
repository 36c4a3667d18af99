//! Malformed input: each bad connection gets its ERROR and the agent serves the next.

mod common;

use std::io::Read;

use common::*;
use supermachine_proto::Kind;

fn error_of(c: &mut Conn) -> String {
    let f = c.recv().expect("an ERROR frame");
    assert_eq!(f.kind, Kind::Error as u8, "{f:?}");
    String::from_utf8(f.payload).unwrap()
}

fn still_serving(agent: &mut Agent) {
    agent.assert_alive();
    assert_eq!(
        agent.control(r#"{"action":"probe"}"#),
        r#"{"ok":true,"protocol":5}"#
    );
    assert_eq!(agent.run(&req(&["true"])).code(), 0);
}

#[test]
fn wrong_first_frame_kind() {
    let mut agent = Agent::start();
    let mut c = agent.connect();
    c.send_raw(b"ABCDE");
    assert_eq!(
        error_of(&mut c),
        "first frame must be REQUEST(0xff) or CONTROL(0xfe), got 0x41"
    );
    assert!(c.recv().is_none());
    let mut c = agent.connect();
    c.send(Kind::Stdin, b"x");
    assert!(error_of(&mut c).ends_with("got 0x00"));
    still_serving(&mut agent);
}

#[test]
fn oversized_frames_close_the_connection() {
    let mut agent = Agent::start();
    for kind in [0xffu8, 0xfe] {
        let mut c = agent.connect();
        c.send_raw(&header(kind, (16 << 20) + 1));
        let e = error_of(&mut c);
        assert!(e.contains("16777217") && e.contains("limit"), "{e}");
        assert!(c.recv().is_none());
    }
    // Inside a session: ERROR, the job is ended, the connection closed.
    let mut c = agent.connect();
    c.request(&sh("echo $$; exec sleep 100"));
    let pid: u32 = c.read_until(|s| s.ends_with('\n')).trim().parse().unwrap();
    c.send_raw(&header(0, u32::MAX));
    let e = error_of(&mut c);
    assert!(e.contains("4294967295"), "{e}");
    assert!(wait_dead(pid));
    still_serving(&mut agent);
}

#[test]
fn truncated_frames_and_silent_peers() {
    let mut agent = Agent::start();
    {
        let mut c = agent.connect();
        c.send_raw(&[0xff, 0, 0]);
        c.s.shutdown(std::net::Shutdown::Write).unwrap();
        let e = error_of(&mut c);
        assert!(e.contains("got 3 of 5 bytes"), "{e}");
    }
    {
        let mut c = agent.connect();
        c.send_raw(&header(0xff, 100));
        c.send_raw(b"{\"argv\"");
        c.s.shutdown(std::net::Shutdown::Write).unwrap();
        let e = error_of(&mut c);
        assert!(e.contains("of 105 bytes"), "{e}");
    }
    // Connect and close at once; connect and say nothing while others are served.
    drop(agent.connect());
    let idle = agent.connect();
    still_serving(&mut agent);
    drop(idle);
    still_serving(&mut agent);
}

#[test]
fn bad_requests_get_the_published_error_texts() {
    let mut agent = Agent::start();
    let mut c = agent.connect();
    c.send(Kind::Request, b"{not json");
    assert!(error_of(&mut c).starts_with("REQUEST JSON parse: "));
    let mut c = agent.connect();
    c.send(Kind::Request, br#"{"argv":[],"env":{},"tty":false}"#);
    assert_eq!(error_of(&mut c), "REQUEST.argv is empty");
    let mut c = agent.connect();
    c.send(
        Kind::Request,
        br#"{"argv":["a\u0000b"],"env":{},"tty":false}"#,
    );
    assert_eq!(error_of(&mut c), "REQUEST.argv contains a NUL byte");
    let mut c = agent.connect();
    c.send(Kind::Request, br#"{"argv":["true"],"chain":[[]]}"#);
    assert_eq!(error_of(&mut c), "REQUEST.chain[0] is empty");
    // Unknown kinds and short frames inside a session are ignored.
    let mut c = agent.connect();
    c.request(&req(&["cat"]));
    c.send_raw(&[0x42, 0, 0, 0, 1, 9]);
    c.send(Kind::Resize, &[1]);
    c.send(Kind::Signal, &[]);
    c.send(Kind::Stdin, b"still here");
    c.send(Kind::Stdin, b"");
    let o = c.collect();
    assert_eq!((o.code(), o.out().as_str()), (0, "still here"));
    let mut rest = Vec::new();
    c.s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    still_serving(&mut agent);
}

#[test]
fn as_pid1_it_serves_and_reaps_orphans() {
    let mut agent = Agent::start_as_pid1();
    // The exec'd shell's parent is the agent, PID 1 of the namespace.
    assert_eq!(agent.run(&sh("echo $PPID")).out(), "1\n");
    // Orphans re-parented to PID 1 are reaped: no zombies once they have exited.
    let o = agent.run(&sh(
        "for i in 1 2 3 4 5; do (sleep 0.1 &) ; done; echo started",
    ));
    assert_eq!(o.out(), "started\n");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let o = agent.run(&sh("grep -l '^State:.*Z' /proc/[0-9]*/status; true"));
    assert_eq!(o.out(), "", "zombies left");
    still_serving(&mut agent);
}

#[test]
fn concurrent_sessions_do_not_mix() {
    let agent = std::sync::Arc::new(Agent::start());
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let agent = agent.clone();
            std::thread::spawn(move || {
                for j in 0..5 {
                    let mut r = req(&["sh", "-c", "cat; echo \" $0\"; exit $1"]);
                    r.argv.push(format!("t{i}-{j}"));
                    r.argv.push(format!("{}", (i + j) % 7));
                    let mut c = agent.connect();
                    c.request(&r);
                    c.send(Kind::Stdin, format!("in{i}-{j}").as_bytes());
                    c.send(Kind::Stdin, b"");
                    let o = c.collect();
                    assert_eq!(o.out(), format!("in{i}-{j} t{i}-{j}\n"));
                    assert_eq!(o.code(), ((i + j) % 7) as u32);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
