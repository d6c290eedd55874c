//! Process titles (`rwsgi: master [app]`, `rwsgi: worker 1 [app]`), so
//! `ps`, `top` and `pgrep` tell the master from its workers.
//!
//! Two places hold a process's name on Linux: the thread's `comm` (15 bytes,
//! what `top` and `ps -o comm` show), set with `prctl(PR_SET_NAME)`; and the
//! argument strings (what `ps aux` and /proc/PID/cmdline show), which live in
//! the process's own memory between `arg_start` and `arg_end` of
//! /proc/self/stat. The title overwrites those in place, NUL-padded and
//! truncated to their length: it never writes past `arg_end` (the
//! environment follows) and moves nothing. CPython copied its arguments at
//! start-up (`sys.argv` is unaffected). Elsewhere than Linux this does nothing.

use std::sync::OnceLock;

/// Longest `comm` the kernel keeps (16 bytes with the NUL).
const COMM_LEN: usize = 15;

/// What the process was called before the first title: (`comm`, the argument strings).
static ORIGINAL: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();

/// Show `title` as this process's name in `ps`, `top` and /proc. Best
/// effort: a process whose argument area cannot be found keeps its
/// arguments (the `comm` is still set).
pub(crate) fn set(title: &str) {
    let bytes: Vec<u8> = title.bytes().filter(|byte| *byte != 0).collect();
    let area = argument_area();
    if let Some((start, end)) = area {
        ORIGINAL.get_or_init(|| {
            let comm = std::fs::read("/proc/self/comm").unwrap_or_default();
            let comm = comm.strip_suffix(b"\n").unwrap_or(&comm).to_vec();
            // SAFETY: the kernel reports [start, end) as this process's
            // argument strings, mapped readable for the process's life.
            let arguments = unsafe { std::slice::from_raw_parts(start as *const u8, end - start) };
            (comm, arguments.to_vec())
        });
    }
    set_comm(&bytes[..comm_prefix(title, COMM_LEN)]);
    if let Some((start, end)) = area {
        // SAFETY: as above, and mapped writable (the initial stack); nothing
        // in the process keeps a pointer into it that a new title breaks.
        let arguments = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
        fill(arguments, &bytes);
    }
}

/// Put back the name the process had before `set` (when `serve()`
/// returns to the Python program that called it).
pub(crate) fn restore() {
    let Some((comm, original)) = ORIGINAL.get() else {
        return;
    };
    set_comm(comm);
    if let Some((start, end)) = argument_area() {
        if end - start == original.len() {
            // SAFETY: the same area `set` read and wrote.
            let arguments =
                unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
            arguments.copy_from_slice(original);
        }
    }
}

/// Copy `title` to the front of `area`, NUL-padded, truncated to leave the
/// last byte NUL (the kernel then reads the arguments as they are).
fn fill(area: &mut [u8], title: &[u8]) {
    let Some(room) = area.len().checked_sub(1) else {
        return;
    };
    let length = title.len().min(room);
    area[..length].copy_from_slice(&title[..length]);
    area[length..].fill(0);
}

/// The longest prefix of `title` of at most `limit` bytes ending on a character boundary.
fn comm_prefix(title: &str, limit: usize) -> usize {
    let clean: String = title.chars().filter(|c| *c != '\0').collect();
    let mut end = clean.len().min(limit);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(target_os = "linux")]
fn set_comm(name: &[u8]) {
    let mut buffer = [0u8; COMM_LEN + 1];
    let length = name.len().min(COMM_LEN);
    buffer[..length].copy_from_slice(&name[..length]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from our buffer.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, buffer.as_ptr());
    }
}

#[cfg(not(target_os = "linux"))]
fn set_comm(_name: &[u8]) {}

/// `[arg_start, arg_end)` of this process, from /proc/self/stat.
fn argument_area() -> Option<(usize, usize)> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_argument_area(&stat)
}

/// Fields 48 and 49 (`arg_start`, `arg_end`) of a /proc/PID/stat line.
/// The command name (field 2) is in parentheses and may hold spaces and
/// parentheses itself, so fields are counted from its last `)`.
fn parse_argument_area(stat: &str) -> Option<(usize, usize)> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_ascii_whitespace().skip(48 - 3);
    let first: usize = fields.next()?.parse().ok()?;
    let last: usize = fields.next()?.parse().ok()?;
    (first > 0 && last > first).then_some((first, last))
}

#[cfg(test)]
mod tests {
    use super::{comm_prefix, fill, parse_argument_area, restore, set};

    #[test]
    fn titles_fit_the_area_and_leave_a_nul_at_its_end() {
        let mut area = *b"python\0-m\0rwsgi\0";
        fill(&mut area, b"rwsgi: master [app]");
        assert_eq!(&area, b"rwsgi: master [\0");
        let mut area = *b"long-area\0";
        fill(&mut area, b"short");
        assert_eq!(&area, b"short\0\0\0\0\0");
        let mut empty: [u8; 0] = [];
        fill(&mut empty, b"title");
    }

    #[test]
    fn comm_is_cut_on_a_character_boundary() {
        assert_eq!(comm_prefix("rwsgi: worker 12 [app]", 15), 15);
        assert_eq!(comm_prefix("short", 15), 5);
        // "é" is two bytes, at bytes 14 and 15.
        assert_eq!(comm_prefix("rwsgi: master é", 15), 14);
    }

    #[test]
    fn reads_the_argument_area_past_an_odd_command_name() {
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[48 - 3] = "140000".into();
        fields[49 - 3] = "140100".into();
        let stat = format!("1234 (we) ird (name) {}\n", fields.join(" "));
        assert_eq!(parse_argument_area(&stat), Some((140_000, 140_100)));
        assert_eq!(parse_argument_area("1234 (short) R 1 2"), None);
        let reversed = stat.replace("140100", "100");
        assert_eq!(parse_argument_area(&reversed), None);
    }

    #[test]
    fn the_title_shows_in_proc_and_is_restored() {
        let before = std::fs::read("/proc/self/cmdline").expect("cmdline");
        let comm_before = std::fs::read_to_string("/proc/self/comm").expect("comm");
        set("rwsgi: test title");
        let cmdline = std::fs::read("/proc/self/cmdline").expect("cmdline");
        let shown = cmdline
            .split(|byte| *byte == 0)
            .next()
            .expect("a first string");
        let expected = &b"rwsgi: test title"[..shown.len().min(17)];
        assert_eq!(shown, expected, "{:?}", String::from_utf8_lossy(&cmdline));
        assert!(
            cmdline.len() <= before.len(),
            "nothing written past arg_end"
        );
        // The test harness names each thread: comm is this thread's.
        restore();
        assert_eq!(
            std::fs::read("/proc/self/cmdline").expect("cmdline"),
            before
        );
        assert_eq!(
            std::fs::read_to_string("/proc/self/comm").expect("comm"),
            comm_before
        );
    }
}
