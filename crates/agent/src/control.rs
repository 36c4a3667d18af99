//! CONTROL calls: one JSON request, one JSON reply.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use serde_json::{Map, Value};
use supermachine_proto::{
    b64_decode, b64_encode, control_err, control_ok, parse_control, Control, ControlParseError,
    PROTOCOL_VERSION, WORKLOAD_PID_PATH,
};

use crate::files;

/// Where `drop_vfs_caches` writes.
const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";
/// The smpark module's character device.
const SMPARK_DEV: &str = "/dev/smpark";
/// `_IO('M', 1)` and `_IO('M', 2)`: park and unpark the secondary vCPUs.
const SMPARK_PARK: libc::c_ulong = 0x4D01;
const SMPARK_UNPARK: libc::c_ulong = 0x4D02;

/// Answers one CONTROL payload.
pub fn handle(payload: &[u8]) -> Vec<u8> {
    match parse_control(payload) {
        Ok(c) => match run(c) {
            Ok(extra) => control_ok(extra),
            Err(msg) => control_err(&msg),
        },
        Err(e @ ControlParseError::UnknownAction(_)) => control_err(&e.to_string()),
        Err(e @ ControlParseError::Malformed(_)) => control_err(&e.to_string()),
    }
}

fn one(key: &str, v: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(key.into(), v);
    m
}

fn run(c: Control) -> Result<Map<String, Value>, String> {
    match c {
        Control::Probe => Ok(one("protocol", PROTOCOL_VERSION.into())),
        Control::Signal { signum } => signal_workload(signum),
        Control::WriteFile {
            path,
            data_b64,
            mode,
        } => {
            let data = b64_decode(&data_b64).map_err(|e| format!("write_file({path}): {e}"))?;
            files::write_atomic(Path::new(&path), &data, mode)
                .map_err(|e| format!("write_file({path}): {e}"))?;
            Ok(Map::new())
        }
        Control::WriteFileChunk {
            path,
            offset,
            data_b64,
            last,
            token,
            mode,
        } => {
            let data =
                b64_decode(&data_b64).map_err(|e| format!("write_file_chunk({path}): {e}"))?;
            files::write_chunk(
                Path::new(&path),
                offset,
                &data,
                last,
                token.as_deref(),
                mode,
            )?;
            Ok(Map::new())
        }
        Control::ReadFileChunk {
            path,
            offset,
            len,
            max_bytes,
        } => {
            let (data, total) = files::read_chunk(Path::new(&path), offset, len, max_bytes)?;
            let mut m = one("total_len", total.into());
            m.insert("data_b64".into(), b64_encode(&data).into());
            Ok(m)
        }
        Control::SyncTime { host_unix_ns } => {
            // (try_into: time_t is 32 or 64 bits depending on the libc.)
            let ts = libc::timespec {
                tv_sec: (host_unix_ns / 1_000_000_000)
                    .try_into()
                    .map_err(|_| format!("sync_time: {host_unix_ns} ns is out of range"))?,
                tv_nsec: (host_unix_ns % 1_000_000_000)
                    .try_into()
                    .unwrap_or_default(),
            };
            // SAFETY: clock_settime reads the valid timespec.
            if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
                return Err(format!("sync_time: {}", io::Error::last_os_error()));
            }
            Ok(Map::new())
        }
        Control::Sync => {
            // SAFETY: sync(2) takes no arguments.
            unsafe { libc::sync() };
            Ok(Map::new())
        }
        Control::DropVfsCaches => {
            // SAFETY: as above; dirty pages must be written before they can be dropped.
            unsafe { libc::sync() };
            OpenOptions::new()
                .write(true)
                .open(DROP_CACHES)
                .and_then(|mut f| f.write_all(b"3"))
                .map_err(|e| format!("drop_vfs_caches: {DROP_CACHES}: {e}"))?;
            Ok(Map::new())
        }
        Control::SmparkPark => {
            // Before parking, so no thread of ours is left on a CPU that stops.
            crate::cpus::pin_to_first_online().map_err(|e| {
                format!("smpark park: cannot move the agent to the CPU that stays up: {e}")
            })?;
            let parked = smpark("park", SMPARK_PARK);
            if parked.is_err() {
                let _ = crate::cpus::release();
            }
            parked
        }
        Control::SmparkUnpark => {
            let unparked = smpark("unpark", SMPARK_UNPARK);
            let _ = crate::cpus::release();
            unparked
        }
    }
}

fn signal_workload(signum: i32) -> Result<Map<String, Value>, String> {
    const NONE: &str = "no workload pid recorded yet (workload may not be running)";
    let text = std::fs::read_to_string(WORKLOAD_PID_PATH).map_err(|_| NONE.to_string())?;
    let text = text.trim();
    if text.is_empty() {
        return Err(NONE.into());
    }
    let pid: libc::pid_t = text
        .parse()
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| format!("{WORKLOAD_PID_PATH} holds {text:?}, not a workload pid"))?;
    // SAFETY: plain kill(2).
    if unsafe { libc::kill(pid, signum) } != 0 {
        return Err(format!(
            "signal {signum} to workload pid {pid}: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(one("pid", pid.into()))
}

fn smpark(what: &str, request: libc::c_ulong) -> Result<Map<String, Value>, String> {
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open(SMPARK_DEV)
        .map_err(|e| {
            format!(
            "smpark {what}: {SMPARK_DEV} not available ({e}); module not loaded or single-vCPU bake"
        )
        })?;
    // SAFETY: an argument-less ioctl on the device we opened.
    #[allow(clippy::useless_conversion)]
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), request.try_into().unwrap_or_default()) };
    if rc < 0 {
        return Err(format!(
            "smpark {what}: ioctl on {SMPARK_DEV}: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(Map::new())
}
