//! Request bodies as the app will read them: kept in memory up to
//! `--post-buffering` bytes, spooled past it to an unnamed temporary file in
//! `--spool-dir`. Pure Rust: the protocol modules push what they read into a
//! [`BodySink`]; `wsgi::input` reads the finished [`RequestBody`]. Limits
//! (`--max-body-size`), timeouts and framing stay with the callers.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};

/// A complete request body as the app will read it.
#[derive(Debug)]
pub(crate) enum RequestBody {
    /// No body at all (a GET, or a zero Content-Length).
    Empty,
    /// At most `--post-buffering` bytes, held in memory.
    Memory(Bytes),
    /// A larger body, in an unnamed temporary file.
    Spooled(SpooledBody),
}

impl RequestBody {
    /// The body's length in bytes, which CONTENT_LENGTH and `wsgi.input` agree on.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Self::Empty => 0,
            Self::Memory(data) => data.len() as u64,
            Self::Spooled(spooled) => spooled.len,
        }
    }

    /// Whether there is nothing to read, so that the shared empty input will do.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An unlinked temporary file holding a body, and its length. Gone from the
/// file system from the start (O_TMPFILE, or create O_EXCL + unlink at once
/// where O_TMPFILE is not supported), so a SIGKILLed worker leaves nothing
/// behind; the descriptor closes when the request ends.
#[derive(Debug)]
pub(crate) struct SpooledBody {
    file: File,
    len: u64,
}

impl SpooledBody {
    /// The body's length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Read from `offset` into `buf` without a shared file position (pread),
    /// so `&self` suffices and the caller may read with the GIL released.
    /// Returns 0 at or past the end of the body.
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Some(left) = self.len.checked_sub(offset).filter(|&left| left > 0) else {
            return Ok(0);
        };
        let wanted = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        self.file.read_at(&mut buf[..wanted], offset)
    }

    /// Fill all of `buf` from `offset`: the caller asks only for bytes the
    /// body has, so a short file means it was truncated under us.
    pub(crate) fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the spooled request body is shorter than it was written",
                    ))
                }
                Ok(read) => {
                    buf = &mut buf[read..];
                    offset += read as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// Creating or writing the spool file failed (full disk, unwritable folder):
/// the caller answers 503 and logs this, which names the folder.
#[derive(Debug)]
pub(crate) struct SpoolError {
    pub dir: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot spool a request body to {}: {}",
            self.dir.display(),
            self.source
        )
    }
}

impl std::error::Error for SpoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Where a [`BodySink`] is keeping what it has been given so far.
#[derive(Debug)]
enum Held {
    /// Nothing yet.
    Nothing,
    /// One piece, kept as given: the common case costs no copy.
    One(Bytes),
    /// Several pieces, copied together (reserved once when the length is declared).
    Many(BytesMut),
    /// Past `post_buffering`: everything is in the file.
    File(File),
}

/// Collects a body as the I/O side reads it: in memory up to
/// `post_buffering` bytes, then moved to a spool file in `spool_dir` and
/// appended there.
#[derive(Debug)]
// Until the connection rewrite pushes bodies through it, only the tests use it.
pub(crate) struct BodySink {
    held: Held,
    len: u64,
    expected: Option<u64>,
    post_buffering: u64,
    spool_dir: PathBuf,
}

impl BodySink {
    /// `expected`: the declared Content-Length if any (a body declared over
    /// post_buffering goes to a file from the first byte; a declared one
    /// under it gets its memory reserved once).
    pub(crate) fn new(expected: Option<u64>, post_buffering: u64, spool_dir: &Path) -> Self {
        Self {
            held: Held::Nothing,
            len: 0,
            expected,
            post_buffering,
            spool_dir: spool_dir.to_path_buf(),
        }
    }

    /// Add the next piece of the body. Accepts `Bytes` so a single in-memory
    /// piece is kept without a copy; a piece that would take the body past
    /// `post_buffering` first moves what is held to a new spool file.
    pub(crate) fn push(&mut self, data: Bytes) -> Result<(), SpoolError> {
        if data.is_empty() {
            return Ok(());
        }
        let total = self.len + data.len() as u64;
        let declared_large = self.expected.is_some_and(|n| n > self.post_buffering);
        if !matches!(self.held, Held::File(_)) && (total > self.post_buffering || declared_large) {
            self.spill()?;
        }
        match &mut self.held {
            Held::Nothing => self.held = Held::One(data),
            Held::One(first) => {
                let capacity = self
                    .expected
                    .filter(|&n| n >= total)
                    .map_or(total, |n| n)
                    .min(self.post_buffering);
                let mut many = BytesMut::with_capacity(capacity as usize);
                many.extend_from_slice(first);
                many.extend_from_slice(&data);
                self.held = Held::Many(many);
            }
            Held::Many(many) => many.extend_from_slice(&data),
            Held::File(file) => file.write_all(&data).map_err(|source| SpoolError {
                dir: self.spool_dir.clone(),
                source,
            })?,
        }
        self.len = total;
        Ok(())
    }

    /// Bytes pushed so far, for the caller's `--max-body-size` check.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The body as the app will read it (writes went straight to the file,
    /// so nothing is left to fail here).
    pub(crate) fn finish(self) -> RequestBody {
        crate::counters::received(self.len);
        match self.held {
            Held::Nothing => RequestBody::Empty,
            Held::One(data) => RequestBody::Memory(data),
            Held::Many(many) => RequestBody::Memory(many.freeze()),
            Held::File(file) => RequestBody::Spooled(SpooledBody {
                file,
                len: self.len,
            }),
        }
    }

    /// Create the spool file and move what memory holds into it.
    fn spill(&mut self) -> Result<(), SpoolError> {
        let mut file = create_unnamed(&self.spool_dir).map_err(|source| self.error(source))?;
        let held = std::mem::replace(&mut self.held, Held::Nothing);
        let written = match &held {
            Held::One(data) => file.write_all(data),
            Held::Many(many) => file.write_all(many),
            Held::Nothing | Held::File(_) => Ok(()),
        };
        if let Err(source) = written {
            self.held = held;
            return Err(self.error(source));
        }
        self.held = Held::File(file);
        crate::counters::spooled();
        Ok(())
    }

    fn error(&self, source: io::Error) -> SpoolError {
        SpoolError {
            dir: self.spool_dir.clone(),
            source,
        }
    }
}

/// A read-write file in `dir` that has no name from the start.
fn create_unnamed(dir: &Path) -> io::Result<File> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)
        {
            Ok(file) => return Ok(file),
            // The file system (or a kernel before 3.11, which reads the flag
            // as O_DIRECTORY) does not support O_TMPFILE: fall back.
            Err(error) if !tmpfile_unsupported(&error) => return Err(error),
            Err(_) => {}
        }
    }
    create_then_unlink(dir)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn tmpfile_unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
    )
}

/// The portable way: a fresh name created with O_EXCL, unlinked at once.
/// Between the two calls a SIGKILL would leave the file behind; the name
/// says who made it (`.rwsgi-body-PID-N`) so an operator knows it is litter.
fn create_then_unlink(dir: &Path) -> io::Result<File> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".rwsgi-body-{}-{n}", std::process::id()));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => {
                std::fs::remove_file(&path)?;
                return Ok(file);
            }
            // Left by an earlier process with our PID: try the next number.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// A fresh, empty directory removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "rwsgi-body-test-{}-{name}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir(&path).unwrap();
            Self(path)
        }

        fn entries(&self) -> usize {
            std::fs::read_dir(&self.0).unwrap().count()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn push_in_pieces(sink: &mut BodySink, data: &[u8], piece: usize) {
        for chunk in data.chunks(piece) {
            sink.push(Bytes::copy_from_slice(chunk)).unwrap();
        }
    }

    fn read_all(body: &SpooledBody) -> Vec<u8> {
        let mut out = vec![0; body.len() as usize];
        body.read_exact_at(&mut out, 0).unwrap();
        out
    }

    /// The spool file has no directory entry: the fd link says so.
    fn assert_unnamed(body: &SpooledBody, dir: &Dir) {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", body.file.as_raw_fd())).unwrap();
        let link = link.to_string_lossy();
        assert!(link.ends_with("(deleted)") || link.contains("/#"), "{link}");
        assert_eq!(dir.entries(), 0, "a directory entry remains in {link}");
    }

    #[test]
    fn empty_body_is_empty() {
        let dir = Dir::new("empty");
        let mut sink = BodySink::new(None, 10, &dir.0);
        sink.push(Bytes::new()).unwrap();
        let body = sink.finish();
        assert!(matches!(body, RequestBody::Empty));
        assert!(body.is_empty());
    }

    #[test]
    fn small_body_stays_in_memory() {
        let dir = Dir::new("small");
        let data = pattern(1000);
        let mut sink = BodySink::new(Some(1000), 1000, &dir.0);
        push_in_pieces(&mut sink, &data, 300);
        assert_eq!(sink.len(), 1000);
        match sink.finish() {
            RequestBody::Memory(held) => assert_eq!(held, data),
            other => panic!("{other:?}"),
        }
        assert_eq!(dir.entries(), 0);
    }

    #[test]
    fn a_single_piece_is_kept_without_a_copy() {
        let dir = Dir::new("single");
        let data = Bytes::from(pattern(500));
        let mut sink = BodySink::new(None, 1000, &dir.0);
        sink.push(data.clone()).unwrap();
        match sink.finish() {
            RequestBody::Memory(held) => assert_eq!(held.as_ptr(), data.as_ptr()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn body_crossing_the_threshold_moves_to_a_file() {
        let dir = Dir::new("cross");
        let data = pattern(10_000);
        let mut sink = BodySink::new(None, 4096, &dir.0);
        push_in_pieces(&mut sink, &data[..4096], 1000);
        assert!(
            matches!(sink.held, Held::Many(_)),
            "at the limit it stays in memory"
        );
        push_in_pieces(&mut sink, &data[4096..], 1000);
        assert!(matches!(sink.held, Held::File(_)));
        assert_eq!(sink.len(), 10_000);
        let RequestBody::Spooled(body) = sink.finish() else {
            panic!("not spooled");
        };
        assert_eq!(body.len(), 10_000);
        assert_unnamed(&body, &dir);
        assert_eq!(read_all(&body), data);
    }

    #[test]
    fn declared_large_goes_to_a_file_from_the_start() {
        let dir = Dir::new("declared");
        let data = pattern(5000);
        let mut sink = BodySink::new(Some(5000), 4096, &dir.0);
        sink.push(Bytes::copy_from_slice(&data[..10])).unwrap();
        assert!(matches!(sink.held, Held::File(_)));
        sink.push(Bytes::copy_from_slice(&data[10..])).unwrap();
        let RequestBody::Spooled(body) = sink.finish() else {
            panic!("not spooled");
        };
        assert_unnamed(&body, &dir);
        assert_eq!(read_all(&body), data);
    }

    #[test]
    fn zero_post_buffering_spools_every_non_empty_body() {
        let dir = Dir::new("zero");
        let mut sink = BodySink::new(None, 0, &dir.0);
        sink.push(Bytes::from_static(b"x")).unwrap();
        assert!(matches!(sink.finish(), RequestBody::Spooled(_)));
    }

    #[test]
    fn read_at_reads_back_every_byte() {
        let dir = Dir::new("read-at");
        let data = pattern(300_000);
        let mut sink = BodySink::new(None, 1024, &dir.0);
        push_in_pieces(&mut sink, &data, 65_536);
        let RequestBody::Spooled(body) = sink.finish() else {
            panic!("not spooled");
        };
        for offset in [0_u64, 1, 4095, 65_536, 299_999] {
            let mut buf = [0_u8; 7000];
            let read = body.read_at(&mut buf, offset).unwrap();
            let end = (offset as usize + read).min(data.len());
            assert!(read > 0);
            assert_eq!(&buf[..read], &data[offset as usize..end]);
        }
        let mut buf = [0_u8; 10];
        assert_eq!(body.read_at(&mut buf, 300_000).unwrap(), 0);
        assert_eq!(body.read_at(&mut buf, 400_000).unwrap(), 0);
        assert!(body.read_exact_at(&mut buf, 299_995).is_err());
    }

    #[test]
    fn the_fallback_file_is_unnamed_too() {
        let dir = Dir::new("fallback");
        let mut file = create_then_unlink(&dir.0).unwrap();
        file.write_all(b"abc").unwrap();
        let body = SpooledBody { file, len: 3 };
        assert_unnamed(&body, &dir);
        assert_eq!(read_all(&body), b"abc");
    }

    #[test]
    fn a_missing_spool_dir_names_the_dir() {
        let dir = Dir::new("missing");
        let gone = dir.0.join("gone");
        let mut sink = BodySink::new(None, 4, &gone);
        sink.push(Bytes::from_static(b"abc")).unwrap();
        let error = sink.push(Bytes::from_static(b"def")).unwrap_err();
        assert_eq!(error.dir, gone);
        assert_eq!(error.source.kind(), io::ErrorKind::NotFound);
        let message = error.to_string();
        assert!(
            message.starts_with("cannot spool a request body to "),
            "{message}"
        );
        assert!(message.contains(&*gone.to_string_lossy()), "{message}");
        // what it held is still there: nothing is lost before the caller's 503
        assert_eq!(sink.len(), 3);
    }

    #[test]
    fn a_spool_dir_that_is_a_file_names_the_dir() {
        let dir = Dir::new("not-dir");
        let file = dir.0.join("file");
        std::fs::write(&file, b"").unwrap();
        let mut sink = BodySink::new(Some(100), 4, &file);
        let error = sink.push(Bytes::from_static(b"abcdef")).unwrap_err();
        assert_eq!(error.dir, file);
        assert!(error.to_string().contains(&*file.to_string_lossy()));
    }

    #[test]
    fn an_unwritable_spool_dir_names_the_dir() {
        // Root ignores mode bits, so read-only comes from the mount: /proc is one.
        let dir = Path::new("/proc/self");
        let mut sink = BodySink::new(None, 0, dir);
        let error = sink.push(Bytes::from_static(b"a")).unwrap_err();
        assert_eq!(error.dir, dir);
        assert!(error.to_string().contains("/proc/self"), "{error}");
    }
}
