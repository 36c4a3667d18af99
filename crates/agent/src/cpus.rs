//! CPU affinity of the agent's own threads around an smpark park.
//!
//! smpark leaves only the first online CPU running. A thread of ours that last ran on
//! a parked CPU would wake there and never run, and the `smpark_unpark` request would
//! find no thread to read it. So every agent thread moves to the CPU that stays up
//! before parking, and back to every online CPU after.

use std::fs;
use std::io;

const ONLINE: &str = "/sys/devices/system/cpu/online";

/// Parses a kernel CPU list such as `0-3,6`.
pub fn parse_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(lo), Ok(hi)) = (lo.trim().parse::<usize>(), hi.trim().parse::<usize>()) {
            cpus.extend(lo..=hi.min(lo + 4096));
        }
    }
    cpus
}

fn online() -> io::Result<Vec<usize>> {
    let cpus = parse_list(&fs::read_to_string(ONLINE)?);
    if cpus.is_empty() {
        return Err(io::Error::other(format!("{ONLINE} lists no CPU")));
    }
    Ok(cpus)
}

/// Sets the affinity of every thread of this process to `cpus`.
fn set_all(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: `cpu` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    for task in fs::read_dir("/proc/self/task")? {
        let Some(tid) = task?.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // SAFETY: `set` is a valid cpu_set_t of the size passed.
        let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
        // A thread that ended meanwhile is not an error.
        if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH) {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Moves every agent thread to the first online CPU, the one smpark leaves running.
pub fn pin_to_first_online() -> io::Result<()> {
    let cpus = online()?;
    set_all(cpus.get(..1).unwrap_or_default())
}

/// Lets every agent thread run on every online CPU again.
pub fn release() -> io::Result<()> {
    set_all(&online()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_as_the_kernel_writes_them() {
        assert_eq!(parse_list("0\n"), vec![0]);
        assert_eq!(parse_list("0-3\n"), vec![0, 1, 2, 3]);
        assert_eq!(parse_list("0-1,4,6-7"), vec![0, 1, 4, 6, 7]);
        assert_eq!(parse_list(""), Vec::<usize>::new());
        assert_eq!(parse_list("x-y"), Vec::<usize>::new());
    }

    #[test]
    fn pinning_and_release_reach_every_thread() {
        let worker =
            std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(300)));
        pin_to_first_online().unwrap();
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let allowed = |s: &str| {
            s.lines()
                .find(|l| l.starts_with("Cpus_allowed_list:"))
                .map(|l| parse_list(l.split(':').nth(1).unwrap()))
                .unwrap()
        };
        assert_eq!(allowed(&status), vec![online().unwrap()[0]]);
        release().unwrap();
        let status = fs::read_to_string("/proc/self/status").unwrap();
        assert_eq!(allowed(&status), online().unwrap());
        worker.join().unwrap();
    }
}
