//! Work of the daemon that may take longer when the machine is busy, so that requests do
//! not wait for it: writing a window's clearing files (seconds of CPU for ten million
//! transfers, on the same cores as the pipeline). Only for work that holds no lock the
//! commit path needs for more than a moment: a low-priority thread preempted while holding
//! the sequencer lock would stop every commit (tried with checkpoints: worse).

// One libc call on this thread's own id.
#![allow(unsafe_code)]

/// The nice value of background work (the pipeline's threads stay at 0).
pub const BACKGROUND_NICE: i32 = 10;

/// Runs `work` on a thread of its own at `BACKGROUND_NICE` and waits for it. Where no
/// thread can be started, or the system refuses the lower priority, the work runs anyway
/// at the normal priority.
pub fn run<R: Send>(name: &str, work: impl FnOnce() -> R + Send) -> R {
    let work = parking_lot::Mutex::new(Some(work));
    let spawned = std::thread::scope(|scope| {
        let handle = std::thread::Builder::new().name(name.into()).spawn_scoped(scope, || {
            lower_this_thread();
            work.lock().take().map(|work| work())
        });
        // A panic in the work is a panic here too (the daemon's hook ends the process).
        handle.ok().map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    match (spawned.flatten(), work.into_inner()) {
        (Some(result), _) => result,
        (None, Some(work)) => {
            tracing::warn!(name, "no thread for background work; running it at normal priority");
            work()
        }
        (None, None) => unreachable!("the work ran and returned its result"),
    }
}

fn lower_this_thread() {
    // On Linux a thread's nice value is its own: PRIO_PROCESS with the thread's id (0 is
    // the calling thread for setpriority).
    // SAFETY: setpriority reads only its integer arguments.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower a background thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current_nice() -> i32 {
        // SAFETY: getpriority reads only its integer arguments (0: the calling thread).
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[test]
    fn background_work_runs_at_a_lower_priority_and_returns_its_result() {
        let before = current_nice();
        let (result, nice) = run("test-background", || (21 * 2, current_nice()));
        assert_eq!(result, 42);
        assert_eq!(nice, BACKGROUND_NICE.max(before), "the work's thread is niced");
        assert_eq!(current_nice(), before, "the caller's thread keeps its priority");
    }
}
