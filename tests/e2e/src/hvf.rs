//! The part supermachine's HVF backend plays for an aarch64 guest, done on this host:
//! the delta disk it bakes, the env service on vsock port 1026, the console it scans for
//! markers and answers with `R`/`P`, and the guest memory it writes to release smpark.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, sleep, JoinHandle};
use std::time::Duration;

use crate::assets::asset;

/// Guest RAM starts here on QEMU `virt` (the VMM's own layout puts it at 0x8000_0000).
pub const VIRT_RAM_BASE: u64 = 0x4000_0000;

/// The two image layers of the test image, bottom first.
pub fn layers() -> Vec<PathBuf> {
    (0..2)
        .map(|i| asset(&format!("rootfs/layers-aarch64/layer-{i}.squashfs")))
        .collect()
}

/// What the VMM writes into the delta layer (supermachine `bake/mod.rs`).
#[derive(Debug, Clone)]
pub struct Delta {
    /// `/.supermachine-cmd` text, written as given (one argument per line).
    pub cmd: String,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub volumes: Option<String>,
    /// Put the host build's agent at `/supermachine-agent`.
    pub agent: bool,
}

impl Delta {
    /// A workload that reports what it was given, then exits 3.
    pub fn reporting_workload() -> Delta {
        Delta {
            cmd: "/bin/sh\n-c\necho \"workload: uid=$(id -u) cwd=$(pwd) host=$(hostname) GREETING=$GREETING TOKEN=$SECRET_TOKEN\"; exit 3\n".into(),
            workdir: Some("/srv/app\n".into()),
            user: Some("app\n".into()),
            hostname: Some("smtest\n".into()),
            volumes: None,
            agent: true,
        }
    }

    /// Writes the delta squashfs into `dir` and returns its path.
    pub fn build(&self, dir: &Path) -> PathBuf {
        let stage = dir.join("delta-stage");
        for sub in ["proc", "sys", "dev/shm", "tmp", "run"] {
            fs::create_dir_all(stage.join(sub)).expect("delta stage");
        }
        let mut files = vec![(".supermachine-cmd", Some(self.cmd.clone()))];
        files.push((".supermachine-workdir", self.workdir.clone()));
        files.push((".supermachine-user", self.user.clone()));
        files.push((".supermachine-hostname", self.hostname.clone()));
        files.push((".supermachine-volumes", self.volumes.clone()));
        for (name, text) in files {
            if let Some(text) = text {
                fs::write(stage.join(name), text).expect("delta file");
            }
        }
        // The VMM also copies init-oci to /init in the delta; the tests use its
        // `smpark park|unpark` mode from inside the container.
        let mut binaries = vec![("init", asset("aarch64/init-oci"))];
        if self.agent {
            binaries.push(("supermachine-agent", asset("aarch64/supermachine-agent")));
        }
        for (name, from) in binaries {
            let to = stage.join(name);
            fs::copy(&from, &to).expect("copy into the delta");
            fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let out = dir.join("delta.squashfs");
        let status = Command::new("mksquashfs")
            .arg(&stage)
            .arg(&out)
            .args([
                "-noappend",
                "-quiet",
                "-no-progress",
                "-all-root",
                "-no-xattrs",
            ])
            .status()
            .expect("mksquashfs is not installed: run `sudo bash .ci/install`");
        assert!(status.success(), "mksquashfs of the delta failed");
        out
    }
}

/// The env service's answer: `{"env":{..},"secrets":{..}}`.
pub fn env_json(env: &[(&str, &str)], secrets: &[(&str, &str)]) -> String {
    let object = |pairs: &[(&str, &str)]| {
        let body: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}:{}", json_string(k), json_string(v)))
            .collect();
        format!("{{{}}}", body.join(","))
    };
    format!(
        "{{\"env\":{},\"secrets\":{}}}",
        object(env),
        object(secrets)
    )
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// vhost-device-vsock hands a guest connection to host port P to `<uds>_P`; this
/// answers each one with `body`, then closes it, as the VMM's muxer does for port 1026.
pub struct EnvService {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl EnvService {
    pub fn start(uds: &Path, body: String) -> EnvService {
        let path = PathBuf::from(format!("{}_1026", uds.display()));
        let listener = UnixListener::bind(&path)
            .unwrap_or_else(|e| panic!("cannot listen on {}: {e}", path.display()));
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (stop2, served2) = (stop.clone(), served.clone());
        let thread = thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.write_all(body.as_bytes());
                        let _ = conn.shutdown(std::net::Shutdown::Both);
                        served2.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => sleep(Duration::from_millis(20)),
                }
            }
        });
        EnvService {
            stop,
            served,
            thread: Some(thread),
        }
    }

    /// How many connections were answered.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for EnvService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The hex address after `[SUPERMACHINE-SMPARK] state_gpa=0x`, as the VMM parses it.
pub fn smpark_gpa(console: &str) -> Option<u64> {
    let marker = "[SUPERMACHINE-SMPARK] state_gpa=0x";
    let at = console.find(marker)? + marker.len();
    let hex: String = console[at..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .take(16)
        .collect();
    u64::from_str_radix(&hex, 16).ok()
}
