//! The log: one line per event, as text or JSON, written by a thread of its
//! own to stderr or to a file (reopened on SIGHUP, for logrotate).
//!
//! Owns: a bounded channel of finished lines, the thread that writes them,
//! and the file. Must never: block a caller (a full channel drops the line
//! and counts it), fail loudly (a failed write, a full disk, a closed stderr:
//! the line is dropped), or write a line longer than `MAX_LINE` or one with
//! control characters from the outside world in it.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, SystemTime};

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    /// One JSON object per line.
    Json,
}

/// Longest line written; longer ones are cut and end in `…`.
const MAX_LINE: usize = 4096;
/// Lines waiting for the writer; beyond this they are dropped.
const BACKLOG: usize = 1024;

/// What the writer thread is asked to do, in order.
enum Msg {
    Line(String),
    /// Open the log file anew (it was moved away by logrotate).
    Reopen,
    /// Everything before this is written: say so.
    Flush(SyncSender<()>),
}

struct Logger {
    tx: SyncSender<Msg>,
    quiet: bool,
    format: LogFormat,
    /// True when lines go to a file rather than stderr.
    to_file: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Where lines go.
enum Sink {
    Stderr,
    File { path: PathBuf, file: File },
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) {
        // Locked per line: holding stderr would block anyone else's
        // eprintln! (main's last words) for ever.
        let _ = match self {
            Sink::Stderr => io::stderr().write_all(bytes),
            Sink::File { file, .. } => file.write_all(bytes),
        };
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Starts the writer thread. Before this, and if it cannot start, lines go
/// straight to stderr. Fails only if the log file cannot be opened.
pub fn start(file: Option<&Path>, format: LogFormat, quiet: bool) -> io::Result<()> {
    let sink = match file {
        Some(path) => Sink::File {
            file: open(path).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
            })?,
            path: path.to_path_buf(),
        },
        None => Sink::Stderr,
    };
    let to_file = matches!(sink, Sink::File { .. });
    let (tx, rx) = sync_channel(BACKLOG);
    let spawned = std::thread::Builder::new()
        .name("log".into())
        .stack_size(64 * 1024)
        .spawn(move || write_lines(&rx, sink));
    if spawned.is_ok() {
        let _ = LOGGER.set(Logger {
            tx,
            quiet,
            format,
            to_file,
        });
    }
    Ok(())
}

fn write_lines(rx: &Receiver<Msg>, mut sink: Sink) {
    for msg in rx {
        match msg {
            Msg::Line(line) => sink.write(line.as_bytes()),
            Msg::Flush(done) => {
                let _ = done.try_send(());
            }
            Msg::Reopen => {
                if let Sink::File { path, file } = &mut sink {
                    match open(path) {
                        Ok(new) => *file = new,
                        Err(e) => {
                            let line = format!(
                                "cannot reopen the log file {}: {e}; still writing to the old one\n",
                                path.display()
                            );
                            sink.write(line.as_bytes());
                        }
                    }
                }
            }
        }
    }
}

/// Asks the writer to reopen the log file (after logrotate moved it).
pub fn reopen() {
    if let Some(l) = LOGGER.get() {
        let _ = l.tx.try_send(Msg::Reopen);
    }
}

/// Waits, at most `timeout`, until every line logged so far is written.
pub fn flush(timeout: Duration) {
    if let Some(l) = LOGGER.get() {
        let (done, written) = sync_channel(1);
        if l.tx.try_send(Msg::Flush(done)).is_ok() {
            let _ = written.recv_timeout(timeout);
        }
    }
}

/// Lines dropped because the writer fell behind.
pub fn dropped() -> u64 {
    DROPPED.load(Relaxed)
}

fn json() -> bool {
    LOGGER.get().is_some_and(|l| l.format == LogFormat::Json)
}

/// An event for the operator: start-up, restarts, program failures.
pub fn event(args: fmt::Arguments) {
    let mut line = start_line();
    if json() {
        line.push_str(",\"event\":\"");
        json_text(&mut line, args);
        line.push_str("\"}");
    } else {
        let _ = line.write_fmt(args);
    }
    emit(line);
}

/// A start-up event (where it listens): logged, and also written to stderr
/// when the log goes to a file, so whoever started the server sees it.
pub fn announce(args: fmt::Arguments) {
    if LOGGER.get().is_some_and(|l| l.to_file) {
        let _ = writeln!(io::stderr(), "fiddler_crab: {args}");
    }
    event(args);
}

/// One answered request, for the access log.
pub struct Access<'a> {
    pub id: u64,
    pub peer: SocketAddr,
    pub method: &'a str,
    /// The request target as sent (only its first 256 bytes are logged).
    pub target: &'a [u8],
    pub status: u16,
    pub bytes: usize,
    /// From accept to the answer handed to the writer.
    pub total: Duration,
    /// For a program's answer: time in the queue, and the program's run time.
    pub waited: Option<Duration>,
    pub ran: Option<Duration>,
}

/// One access-log line (silent with `--quiet`): time, id, peer, method,
/// target, status, bytes, total, queue wait and run time.
pub fn access(a: &Access) {
    if LOGGER.get().is_some_and(|l| l.quiet) {
        return;
    }
    let target = Escaped(a.target.get(..256).unwrap_or(a.target));
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis());
    let mut line = start_line();
    if json() {
        let opt = |n: Option<u128>| n.map_or("null".into(), |n| n.to_string());
        let _ = write!(
            line,
            ",\"id\":{},\"peer\":\"{}\",\"method\":\"{}\",\"target\":\"",
            a.id, a.peer, a.method
        );
        json_text(&mut line, format_args!("{target}"));
        let _ = write!(
            line,
            "\",\"status\":{},\"bytes\":{},\"ms\":{},\"wait_ms\":{},\"run_ms\":{}}}",
            a.status,
            a.bytes,
            a.total.as_millis(),
            opt(ms(a.waited)),
            opt(ms(a.ran)),
        );
    } else {
        let opt = |n: Option<u128>| n.map_or("-".into(), |n| format!("{n}ms"));
        let _ = write!(
            line,
            "{} {} {} {target} {} {} {}ms wait={} run={}",
            a.id,
            a.peer,
            a.method,
            a.status,
            a.bytes,
            a.total.as_millis(),
            opt(ms(a.waited)),
            opt(ms(a.ran)),
        );
    }
    emit(line);
}

/// A line begun with its time: `2026-…Z ` as text, `{"time":"2026-…Z"` as JSON.
fn start_line() -> String {
    let mut line = String::with_capacity(160);
    if json() {
        line.push_str("{\"time\":\"");
        write_time(&mut line, SystemTime::now());
        line.push('"');
    } else {
        write_time(&mut line, SystemTime::now());
        line.push(' ');
    }
    line
}

fn emit(mut line: String) {
    // JSON lines are bounded as they are written (`json_text`).
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
            if logger.tx.try_send(Msg::Line(line)).is_err() {
                DROPPED.fetch_add(1, Relaxed);
            }
        }
        None => {
            let _ = io::stderr().write_all(line.as_bytes());
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

/// Writes `args` into a JSON string in `out`: quotes, backslashes and
/// control characters escaped, and cut with `…` (never inside an escape)
/// where the line would pass `MAX_LINE`.
fn json_text(out: &mut String, args: fmt::Arguments) {
    let mut text = JsonText { out, cut: false };
    let _ = text.write_fmt(args);
    if text.cut {
        text.out.push('…');
    }
}

struct JsonText<'a> {
    out: &'a mut String,
    cut: bool,
}

impl fmt::Write for JsonText<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut buf = [0u8; 4];
        for c in s.chars() {
            let escaped;
            let piece = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                c if u32::from(c) < 0x20 => {
                    escaped = format!("\\u{:04x}", u32::from(c));
                    &escaped
                }
                c => c.encode_utf8(&mut buf),
            };
            if self.cut || self.out.len() + piece.len() > MAX_LINE {
                self.cut = true;
                return Ok(());
            }
            self.out.push_str(piece);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_escapes_what_json_needs_and_never_cuts_an_escape() {
        let mut s = String::new();
        json_text(&mut s, format_args!("a\"b\\c\n\u{1}é"));
        assert_eq!(s, "a\\\"b\\\\c\\u000a\\u0001é");
        let mut long = "x".repeat(MAX_LINE - 1);
        json_text(&mut long, format_args!("\\"));
        assert_eq!(long, format!("{}…", "x".repeat(MAX_LINE - 1)));
    }
}
