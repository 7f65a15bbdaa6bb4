//! Thread placement for `citypulse bench-kafka --load-core N`. The embedded broker and the
//! bench's own producers are load, not citypulse: with `--load-core` they run on core N and
//! every thread of citypulse's on the other cores the process may use, as when the broker is
//! another machine (or tansu on loopback, pinned apart). Without it, everything shares the
//! cores the process was started with (`taskset`).
//!
//! Linux only: threads are found in `/proc/self/task` and placed with `sched_setaffinity`,
//! and a thread inherits its creator's placement, so each side's later threads stay on it.

use std::collections::BTreeSet;
use std::io;

/// Cores this process may run on.
pub fn allowed_cores() -> io::Result<Vec<usize>> {
    thread_cores(0)
}

/// Cores thread `tid` may run on (0: the calling thread).
fn thread_cores(tid: i32) -> io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, and the kernel writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    if unsafe { libc::sched_getaffinity(tid, size, &mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&core| unsafe { libc::CPU_ISSET(core, &set) })
        .collect())
}

/// Restrict thread `tid` to `cores`.
fn pin(tid: i32, cores: &[usize]) -> io::Result<()> {
    // SAFETY: as in `thread_cores`; CPU_SET is given cores below CPU_SETSIZE.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &core in cores.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        unsafe { libc::CPU_SET(core, &mut set) };
    }
    let size = std::mem::size_of::<libc::cpu_set_t>();
    if unsafe { libc::sched_setaffinity(tid, size, &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The threads of this process now.
fn thread_ids() -> io::Result<BTreeSet<i32>> {
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        if let Some(tid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
            ids.insert(tid);
        }
    }
    Ok(ids)
}

/// User + system CPU seconds of thread `tid` (`/proc/self/task/TID/stat`, 100 Hz ticks);
/// `None` once it has exited.
fn thread_cpu_seconds(tid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// One core set aside for the load; the rest of the allowed cores for citypulse.
#[derive(Debug)]
pub struct LoadCore {
    core: usize,
    citypulse_cores: Vec<usize>,
}

impl LoadCore {
    /// Moves every thread of the process now to the allowed cores other than `core`, so the
    /// threads they start stay there too. Fails if `core` is not allowed or is the only one.
    pub fn reserve(core: usize) -> io::Result<LoadCore> {
        let allowed = allowed_cores()?;
        let citypulse_cores: Vec<usize> = allowed.iter().copied().filter(|&c| c != core).collect();
        if !allowed.contains(&core) || citypulse_cores.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--load-core {core} needs core {core} and at least one other among the \
                     cores this process may use, {allowed:?}"
                ),
            ));
        }
        for tid in thread_ids()? {
            pin(tid, &citypulse_cores)?;
        }
        Ok(LoadCore {
            core,
            citypulse_cores,
        })
    }

    pub fn core(&self) -> usize {
        self.core
    }

    pub fn citypulse_cores(&self) -> &[usize] {
        &self.citypulse_cores
    }

    /// Runs `start`, which creates load (the broker, a producer), and moves the threads it
    /// started to the load core. Any other thread started meanwhile would move too, so call
    /// it while citypulse starts none (before the pipeline, or once it runs).
    pub fn start_load<T>(&self, start: impl FnOnce() -> T) -> io::Result<T> {
        let before = thread_ids()?;
        let load = start();
        for tid in thread_ids()?.difference(&before) {
            pin(*tid, &[self.core])?;
        }
        Ok(load)
    }

    /// CPU seconds used so far by the live threads on the load core: those moved there and
    /// the ones they started. A load thread that has exited no longer counts.
    pub fn load_cpu_seconds(&self) -> f64 {
        thread_ids()
            .unwrap_or_default()
            .into_iter()
            .filter(|&tid| thread_cores(tid).is_ok_and(|cores| cores == [self.core]))
            .filter_map(thread_cpu_seconds)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn threads_started_as_load_run_on_the_load_core_and_others_stay_off_it() {
        let allowed = allowed_cores().unwrap();
        if allowed.len() < 2 {
            eprintln!("SKIPPED: one core allowed ({allowed:?}); a load core needs two");
            return;
        }
        let load_core = *allowed.last().unwrap();
        let placement = LoadCore::reserve(load_core).unwrap();
        assert!(!placement.citypulse_cores().contains(&load_core));
        assert_eq!(thread_cores(0).unwrap(), placement.citypulse_cores());

        // A load thread that burns CPU until told to stop, and tells its cores.
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (cores_tx, cores_rx) = mpsc::channel();
        let load = placement
            .start_load(|| {
                std::thread::spawn(move || {
                    // Pinning happens just after the spawn returns: wait for it.
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    cores_tx.send(thread_cores(0).unwrap()).unwrap();
                    while stop_rx.try_recv().is_err() {
                        std::hint::black_box((0..1000u64).sum::<u64>());
                    }
                })
            })
            .unwrap();
        assert_eq!(cores_rx.recv().unwrap(), [load_core]);
        let other = std::thread::spawn(|| thread_cores(0).unwrap())
            .join()
            .unwrap();
        assert_eq!(
            other,
            placement.citypulse_cores(),
            "other threads inherit citypulse's"
        );

        std::thread::sleep(std::time::Duration::from_millis(300));
        let load_cpu = placement.load_cpu_seconds();
        stop_tx.send(()).unwrap();
        load.join().unwrap();
        assert!(
            load_cpu >= 0.1,
            "the busy load thread is counted: {load_cpu} CPU-s"
        );
        // Give every thread of the test process its cores back for the other tests.
        for tid in thread_ids().unwrap() {
            let _ = pin(tid, &allowed);
        }
    }

    #[test]
    fn a_load_core_must_leave_citypulse_a_core() {
        let allowed = allowed_cores().unwrap();
        if allowed.len() == 1 {
            assert!(LoadCore::reserve(allowed[0]).is_err());
        }
        assert!(LoadCore::reserve(libc::CPU_SETSIZE as usize + 1).is_err());
    }
}
