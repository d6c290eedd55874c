//! A file's precompressed siblings (`FILE.br`, `FILE.zst`, `FILE.gz`):
//! which exist, and which to try for a client. Whether they exist is
//! asked on every request (a file with siblings is sent with `Vary`), and
//! three `stat` calls were a tenth of a 4 KiB file's cost, so the answer is
//! kept for a second per file, as nginx's `open_file_cache_valid` would: a
//! sibling added is seen within a second; one removed is skipped at open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::encoding::{self, Coding};
use super::resolve::Folder;
use crate::clock;

/// How long an answer is kept, in milliseconds.
const FRESH_MS: u64 = 1000;
/// Files remembered at most (then forgotten all at once).
const REMEMBERED: usize = 4096;

/// The siblings of one file that were regular files when looked up.
pub(super) struct Siblings {
    present: [bool; 3],
    /// At least one exists: answers get `Vary: Accept-Encoding`.
    pub any: bool,
    base: PathBuf,
}

/// A worker's recent sibling lookups.
#[derive(Default)]
pub(super) struct SiblingCache {
    seen: Mutex<HashMap<PathBuf, ([bool; 3], u64)>>,
}

impl SiblingCache {
    /// The siblings of `path` that are regular files (and, when
    /// `confined_to` is given, resolve inside that folder).
    pub(super) fn find(&self, path: &Path, confined_to: Option<&Folder>) -> Siblings {
        let now = clock::monotonic_ms();
        let cached = self
            .seen
            .lock()
            .get(path)
            .filter(|(_, at)| now.saturating_sub(*at) < FRESH_MS)
            .map(|(present, _)| *present);
        let present = cached.unwrap_or_else(|| {
            let present = look_up(path, confined_to);
            let mut seen = self.seen.lock();
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
            seen.insert(path.to_path_buf(), (present, now));
            present
        });
        Siblings {
            present,
            any: present.iter().any(|&present| present),
            base: path.to_path_buf(),
        }
    }
}

fn look_up(path: &Path, confined_to: Option<&Folder>) -> [bool; 3] {
    let mut present = [false; 3];
    for coding in Coding::ALL {
        let sibling = with_suffix(path, coding.suffix());
        present[coding as usize] = std::fs::metadata(&sibling)
            .is_ok_and(|metadata| metadata.is_file())
            && confined_to.is_none_or(|folder| folder.contains_real(&sibling));
    }
    present
}

impl Siblings {
    /// The siblings `accept` allows, best first, as paths to try.
    pub(super) fn candidates(&self, accept: Option<&[u8]>) -> Vec<(Coding, PathBuf)> {
        if !self.any {
            return Vec::new();
        }
        encoding::acceptable(accept)
            .into_iter()
            .filter(|coding| self.present[*coding as usize])
            .map(|coding| (coding, with_suffix(&self.base, coding.suffix())))
            .collect()
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
