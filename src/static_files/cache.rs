//! Small files kept in memory, each answer revalidated by one `stat`: a
//! 4 KiB static file cost `open`, `fstat`, `pread` and `close` on every
//! request (a fifth of the worker's CPU under load); a cached one costs the
//! `stat` that proves it unchanged (same device, inode, size, modification
//! and change times), so an edited file is served new at once. Files up to
//! `SMALL` bytes are cached, `HELD` bytes at most per worker (then the
//! cache starts over); larger files are opened and sent with `sendfile`.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use parking_lot::Mutex;

use super::resolve::{self, Entry};

/// Files up to this size are read whole (and kept); they go out with the head.
pub(super) const SMALL: u64 = 64 * 1024;
/// Bytes of file content a worker keeps at most.
const HELD: usize = 16 << 20;

/// A file's bytes: in memory (small), or open to be streamed.
pub(super) enum Source {
    Memory(Bytes),
    File(File),
}

/// What is at a path.
// Short-lived and moved once per request: boxing would cost an allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Loaded {
    File(Source, Metadata),
    /// Nothing, or a folder.
    Absent,
    /// A fifo, socket or device: never served.
    Unservable,
}

/// What proves a cached copy current.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(metadata: &Metadata) -> Self {
        Self {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.len(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

#[derive(Default)]
struct Held {
    files: HashMap<PathBuf, (Identity, Bytes)>,
    bytes: usize,
}

/// A worker's small files.
#[derive(Default)]
pub(super) struct ContentCache {
    held: Mutex<Held>,
}

impl ContentCache {
    /// The file at `path` (links followed), from memory when the copy there
    /// is current.
    pub(super) fn load(&self, path: &Path) -> Loaded {
        let Ok(metadata) = std::fs::metadata(path) else {
            return Loaded::Absent;
        };
        if metadata.is_dir() {
            return Loaded::Absent;
        }
        if !metadata.is_file() {
            return Loaded::Unservable;
        }
        if metadata.len() <= SMALL {
            let identity = Identity::of(&metadata);
            let held = self.held.lock();
            if let Some((_, content)) = held.files.get(path).filter(|(id, _)| *id == identity) {
                return Loaded::File(Source::Memory(content.clone()), metadata);
            }
        }
        match resolve::open_regular(path) {
            Entry::File(file, metadata) if metadata.len() <= SMALL => {
                let mut content = vec![0u8; metadata.len() as usize];
                if file.read_exact_at(&mut content, 0).is_err() {
                    return Loaded::File(Source::File(file), metadata);
                }
                let content = Bytes::from(content);
                self.keep(path, Identity::of(&metadata), content.clone());
                Loaded::File(Source::Memory(content), metadata)
            }
            Entry::File(file, metadata) => Loaded::File(Source::File(file), metadata),
            Entry::Absent => Loaded::Absent,
            Entry::Unservable => Loaded::Unservable,
        }
    }

    fn keep(&self, path: &Path, identity: Identity, content: Bytes) {
        let mut held = self.held.lock();
        if held.bytes + content.len() > HELD {
            held.files.clear();
            held.bytes = 0;
        }
        held.bytes += content.len();
        if let Some((_, old)) = held.files.insert(path.to_path_buf(), (identity, content)) {
            held.bytes -= old.len();
        }
    }
}
