//! Cheap clocks for per-request bookkeeping (the head deadline, the `date`
//! header): a few milliseconds of precision is plenty there. On Linux the
//! coarse clocks are a memory read; the precise ones behind `Instant::now`
//! and `SystemTime::now` were 0.75% of a hello-world worker's samples.

#[cfg(target_os = "linux")]
const MONOTONIC: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;
#[cfg(not(target_os = "linux"))]
const MONOTONIC: libc::clockid_t = libc::CLOCK_MONOTONIC;
#[cfg(target_os = "linux")]
const REALTIME: libc::clockid_t = libc::CLOCK_REALTIME_COARSE;
#[cfg(not(target_os = "linux"))]
const REALTIME: libc::clockid_t = libc::CLOCK_REALTIME;

fn read(clock: libc::clockid_t) -> libc::timespec {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call; the clock ids
    // are ones every supported system has, so the call cannot fail.
    unsafe {
        libc::clock_gettime(clock, &raw mut now);
    }
    now
}

/// Milliseconds of a monotonic clock (to within a few milliseconds).
pub(crate) fn monotonic_ms() -> u64 {
    let now = read(MONOTONIC);
    (now.tv_sec as u64) * 1000 + (now.tv_nsec as u64) / 1_000_000
}

/// Whole seconds since the Unix epoch (to within a few milliseconds).
pub(crate) fn unix_seconds() -> u64 {
    read(REALTIME).tv_sec as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn clocks_agree_with_std() {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        assert!(super::unix_seconds().abs_diff(wall) <= 1);
        let before = super::monotonic_ms();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let waited = super::monotonic_ms() - before;
        assert!((20..1000).contains(&waited), "{waited}");
    }
}
