//! The master's table of worker processes: which position each fills, its
//! board entry, its code generation, whether it is ready or being retired;
//! and each position's respawn backoff. Old and new processes of a position
//! live side by side during a reload or a recycling.

use std::time::{Duration, Instant};

use crate::board::{Board, Slot};

/// A worker that dies sooner than this after its start counts as failing to boot.
const QUICK_DEATH: Duration = Duration::from_secs(2);
/// Longest wait between respawns of a worker that keeps dying at start.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One worker process.
#[derive(Debug)]
pub(crate) struct WorkerProc {
    /// Its position, 1-based.
    pub id: usize,
    pub entry: usize,
    /// Known once the intermediate process has written it to the board.
    pub pid: Option<i32>,
    pub generation: u64,
    pub started: Instant,
    /// It has accepted connections (sticky).
    pub ready: bool,
    /// Since when it has been told to retire; it is then no longer counted.
    pub retired: Option<Instant>,
    /// Whether the SIGTERM that retires it has been sent (it needs the pid).
    pub told: bool,
    /// When `--max-lifetime` (with its jitter) says it is due.
    pub due: Option<Instant>,
    /// When it was ordered, in seconds since the epoch (for the stats).
    pub spawned_at: u64,
}

/// A position's respawn state.
#[derive(Debug)]
pub(crate) struct Position {
    quick_deaths: u32,
    pub respawn_at: Instant,
    /// Processes started for this position (uWSGI's `respawn_count`).
    pub spawns: u64,
}

/// Every worker process and position.
pub(crate) struct Fleet {
    pub workers: Vec<WorkerProc>,
    pub positions: Vec<Position>,
    free_entries: Vec<usize>,
}

impl Fleet {
    /// `workers` positions, each to be filled at once; `entries` board entries.
    pub(crate) fn new(workers: usize, entries: usize) -> Self {
        let now = Instant::now();
        Self {
            workers: Vec::new(),
            positions: (0..workers)
                .map(|_| Position {
                    quick_deaths: 0,
                    respawn_at: now,
                    spawns: 0,
                })
                .collect(),
            // Popped from the end: lower entries first.
            free_entries: (0..entries).rev().collect(),
        }
    }

    /// A blank board entry for a new process, if any is left.
    pub(crate) fn take_entry(&mut self, board: &Board) -> Option<usize> {
        let entry = self.free_entries.pop()?;
        if let Some(slot) = board.slot(entry) {
            slot.reset();
        }
        Some(entry)
    }

    /// Give back an entry whose process will never run (a failed fork).
    pub(crate) fn give_back(&mut self, entry: usize) {
        self.free_entries.push(entry);
    }

    /// Add one position at the end (SIGTTIN).
    pub(crate) fn add_position(&mut self) {
        self.positions.push(Position {
            quick_deaths: 0,
            respawn_at: Instant::now(),
            spawns: 0,
        });
    }

    /// Workers not being retired.
    pub(crate) fn active(&self) -> impl Iterator<Item = &WorkerProc> {
        self.workers
            .iter()
            .filter(|worker| worker.retired.is_none())
    }

    /// Whether position `id` has a worker that is not being retired.
    pub(crate) fn is_filled(&self, id: usize) -> bool {
        self.active().any(|worker| worker.id == id)
    }

    /// Learn the pids the intermediate processes wrote to the board.
    pub(crate) fn learn_pids(&mut self, board: &Board) {
        for worker in self.workers.iter_mut().filter(|w| w.pid.is_none()) {
            let pid = board.slot(worker.entry).map_or(0, Slot::pid);
            if pid > 0 {
                worker.pid = Some(pid);
            }
        }
    }

    /// Take the worker `pid` out of the table, freeing its entry.
    pub(crate) fn remove(&mut self, pid: i32, board: &Board) -> Option<WorkerProc> {
        self.learn_pids(board);
        let index = self.workers.iter().position(|w| w.pid == Some(pid))?;
        let worker = self.workers.swap_remove(index);
        if let Some(slot) = board.slot(worker.entry) {
            slot.clear();
        }
        self.free_entries.push(worker.entry);
        Some(worker)
    }

    /// Schedule the respawn of position `id` after an unexpected death,
    /// backing off when its workers keep dying young.
    pub(crate) fn back_off(&mut self, id: usize, lived: Duration) {
        let Some(position) = self.positions.get_mut(id.wrapping_sub(1)) else {
            return;
        };
        if lived < QUICK_DEATH {
            position.quick_deaths += 1;
            let backoff = Duration::from_millis(100)
                .saturating_mul(1 << position.quick_deaths.min(10))
                .min(MAX_BACKOFF);
            position.respawn_at = Instant::now()
                + if position.quick_deaths == 1 {
                    Duration::ZERO
                } else {
                    backoff
                };
        } else {
            position.quick_deaths = 0;
            position.respawn_at = Instant::now();
        }
    }
}

/// A small pseudo-random source for jitter (no dependency): xorshift, seeded
/// from the clock and the pid.
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        #[allow(clippy::cast_possible_truncation)] // any bits make a seed
        let seed = (nanos as u64) ^ (u64::from(std::process::id()) << 32) | 1;
        Self(seed)
    }

    /// A number from 0 to `most`, inclusive.
    pub(crate) fn upto(&mut self, most: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        if most == u64::MAX {
            x
        } else {
            x % (most + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Fleet, Jitter};
    use std::time::Duration;

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let mut jitter = Jitter::new();
        let draws: Vec<u64> = (0..200).map(|_| jitter.upto(10)).collect();
        assert!(draws.iter().all(|&draw| draw <= 10));
        assert!(draws.iter().any(|&draw| draw != draws[0]));
        assert_eq!(jitter.upto(0), 0);
    }

    #[test]
    fn backoff_grows_only_for_quick_deaths() {
        let mut fleet = Fleet::new(1, 4);
        let start = fleet.positions[0].respawn_at;
        fleet.back_off(1, Duration::ZERO);
        let first = fleet.positions[0].respawn_at;
        fleet.back_off(1, Duration::ZERO);
        let second = fleet.positions[0].respawn_at;
        assert!(second.duration_since(start) >= Duration::from_millis(400));
        assert!(first.duration_since(start) < Duration::from_millis(100));
        fleet.back_off(1, Duration::from_secs(60));
        assert!(fleet.positions[0].respawn_at < second);
        fleet.back_off(9, Duration::ZERO); // no such position: nothing happens
    }
}
