//! The log: one line per event on stderr, written by a thread of its own.
//!
//! Owns: a bounded channel of finished lines and the thread that writes them.
//! Must never: block a caller (a full channel drops the line and counts it),
//! fail loudly (a failed write is dropped), or write a line longer than
//! `MAX_LINE` or one with control characters from the outside world in it.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::SystemTime;

/// Longest line written; longer ones are cut and end in `…`.
const MAX_LINE: usize = 4096;
/// Lines waiting for the writer; beyond this they are dropped.
const BACKLOG: usize = 1024;

struct Logger {
    tx: SyncSender<String>,
    quiet: AtomicBool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Starts the writer thread. Before this, and if it cannot start, lines go
/// straight to stderr.
pub fn start(quiet: bool) {
    let (tx, rx) = sync_channel::<String>(BACKLOG);
    let spawned = std::thread::Builder::new()
        .name("log".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            // Locked per line: holding stderr would block anyone else's
            // eprintln! (main's last words) for ever.
            for line in rx {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        });
    if spawned.is_ok() {
        let _ = LOGGER.set(Logger {
            tx,
            quiet: AtomicBool::new(quiet),
        });
    }
}

/// Lines dropped because the writer fell behind.
pub fn dropped() -> u64 {
    DROPPED.load(Relaxed)
}

/// An event for the operator: start-up, restarts, program failures.
pub fn event(args: fmt::Arguments) {
    emit(args);
}

/// One access-log line (silent with `--quiet`).
pub fn access(args: fmt::Arguments) {
    if LOGGER.get().is_some_and(|l| l.quiet.load(Relaxed)) {
        return;
    }
    emit(args);
}

fn emit(args: fmt::Arguments) {
    let mut line = String::with_capacity(128);
    write_time(&mut line, SystemTime::now());
    line.push(' ');
    let _ = line.write_fmt(args);
    if line.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line.push('\n');
    match LOGGER.get() {
        Some(logger) => {
            if logger.tx.try_send(line).is_err() {
                DROPPED.fetch_add(1, Relaxed);
            }
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Bytes from the outside world (paths, stderr of programs), made safe for one
/// log line: printable ASCII stays, everything else becomes `\xNN`.
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for &b in self.0 {
            if (0x20..0x7f).contains(&b) && b != b'\\' {
                f.write_char(char::from(b))?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// `2026-11-23T10:04:05.123Z`: UTC, millisecond precision.
fn write_time(out: &mut String, now: SystemTime) {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let (y, mo, d, h, mi, s) = crate::http::response::civil(since.as_secs());
    let _ = write!(
        out,
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        since.subsec_millis()
    );
}
