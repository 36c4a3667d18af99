//! CONTROL calls, one per connection.

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};
use supermachine_proto::{b64_decode, b64_encode};

fn call(agent: &Agent, v: Value) -> Value {
    serde_json::from_str(&agent.control(&v.to_string())).unwrap()
}

#[test]
fn probe_and_unknown_action_answer_exactly() {
    let agent = Agent::start();
    assert_eq!(
        agent.control(r#"{"action":"probe"}"#),
        r#"{"ok":true,"protocol":5}"#
    );
    assert_eq!(
        agent.control(r#"{"action":"reboot"}"#),
        r#"{"ok":false,"error":"unknown CONTROL action"}"#
    );
    let bad = call(&agent, json!({"action": "signal"}));
    assert_eq!(bad["ok"], false);
    assert!(bad["error"].as_str().unwrap().contains("signum"), "{bad}");
    let v: Value = serde_json::from_str(&agent.control("not json")).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("CONTROL JSON parse: "));
}

#[test]
fn write_file_and_read_file_chunk() {
    let agent = Agent::start();
    let dir = TempDir::new("ctl");
    let path = pathbuf(&dir.path("f"));
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    let ack = call(
        &agent,
        json!({"action":"write_file","path":path,"data_b64":b64_encode(&data),"mode":0o600}),
    );
    assert_eq!(ack, json!({"ok": true}));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let mut back = Vec::new();
    while back.len() < data.len() {
        let r = call(
            &agent,
            json!({"action":"read_file_chunk","path":path,"offset":back.len(),"len":30_000,"max_bytes":1_000_000}),
        );
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["total_len"], 100_000);
        let chunk = b64_decode(r["data_b64"].as_str().unwrap()).unwrap();
        assert!(!chunk.is_empty() && chunk.len() <= 30_000);
        back.extend(chunk);
    }
    assert_eq!(back, data);
    let r = call(
        &agent,
        json!({"action":"read_file_chunk","path":path,"offset":0,"len":10,"max_bytes":1000}),
    );
    assert_eq!(r["ok"], false);
    assert!(r["error"].as_str().unwrap().contains("100000"), "{r}");
    let r = call(
        &agent,
        json!({"action":"read_file_chunk","path":"/nonexistent/f","offset":0,"len":10}),
    );
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("No such file or directory"),
        "{r}"
    );
    let r = call(
        &agent,
        json!({"action":"write_file","path":"/nonexistent/f","data_b64":""}),
    );
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("No such file or directory"),
        "{r}"
    );
}

#[test]
fn write_file_chunk_appears_only_with_the_last_chunk() {
    let agent = Agent::start();
    let dir = TempDir::new("chunk");
    let path = pathbuf(&dir.path("big"));
    let parts: [&[u8]; 3] = [b"first-", b"second-", b"third"];
    let mut offset = 0;
    for (i, p) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        let mut body = json!({"action":"write_file_chunk","path":path,"offset":offset,"data_b64":b64_encode(p),"last":last,"token":"t-1"});
        if last {
            body["mode"] = json!(0o755);
        }
        assert_eq!(call(&agent, body), json!({"ok": true}));
        offset += p.len();
        assert_eq!(dir.path("big").exists(), last, "after chunk {i}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"first-second-third");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "temp files left: {names:?}");
    // A chunk out of order is refused, and leaves no partial file.
    let r = call(
        &agent,
        json!({"action":"write_file_chunk","path":pathbuf(&dir.path("x")),"offset":5,"data_b64":"","last":true,"token":"t-2"}),
    );
    assert_eq!(r["ok"], false);
    assert!(!dir.path("x").exists());
}

#[test]
fn signal_targets_the_workload_pid_file() {
    let agent = Agent::start();
    assert_eq!(
        agent.control(r#"{"action":"signal","signum":15}"#),
        r#"{"ok":false,"error":"no workload pid recorded yet (workload may not be running)"}"#
    );
    let mut workload = Command::new("sleep").arg("100").spawn().unwrap();
    let pid = workload.id();
    let r = call(
        &agent,
        json!({"action":"write_file","path":"/run/supermachine-workload.pid","data_b64":b64_encode(format!("{pid}\n").as_bytes())}),
    );
    assert_eq!(r["ok"], true);
    assert_eq!(
        call(&agent, json!({"action":"signal","signum":15})),
        json!({"ok":true,"pid":pid})
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(workload.wait().unwrap().signal(), Some(15));
}

#[test]
fn sync_sync_time_and_drop_vfs_caches() {
    let agent = Agent::start();
    assert_eq!(call(&agent, json!({"action":"sync"})), json!({"ok":true}));
    // The harness binds a private file over /proc/sys/vm/drop_caches.
    assert_eq!(
        call(&agent, json!({"action":"drop_vfs_caches"})),
        json!({"ok":true})
    );
    assert_eq!(read_in(&agent, "/run/drop_caches"), b"3");
    // Setting the clock to now changes nothing measurable but runs clock_settime. In a
    // user namespace (tests not run as root) the kernel refuses, and the error says so.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let r = call(&agent, json!({"action":"sync_time","host_unix_ns":now}));
    if is_root() {
        assert_eq!(r, json!({"ok":true}));
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(
            after.as_nanos() as u64 >= now
                && after < Duration::from_nanos(now) + Duration::from_secs(5)
        );
    } else {
        assert_eq!(
            r["error"],
            "sync_time: Operation not permitted (os error 1)"
        );
    }
}

#[test]
fn smpark_without_the_device_says_so() {
    assert!(
        !std::path::Path::new("/dev/smpark").exists(),
        "this host has /dev/smpark"
    );
    let agent = Agent::start();
    for what in ["park", "unpark"] {
        let r = call(&agent, json!({"action": format!("smpark_{what}")}));
        assert_eq!(r["ok"], false);
        assert_eq!(
            r["error"].as_str().unwrap(),
            format!("smpark {what}: /dev/smpark not available (No such file or directory (os error 2)); module not loaded or single-vCPU bake")
        );
    }
}
