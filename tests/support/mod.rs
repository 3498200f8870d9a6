//! Test support: starts the real binary on ephemeral ports, talks to it over
//! real sockets with raw bytes, and observes it through its log and /metrics.
//! Every wait is on a condition, with a generous deadline (`DEADLINE`), so a
//! slow machine makes a test slower, never red.

#![allow(dead_code)]
// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest any test waits for anything.
pub const DEADLINE: Duration = Duration::from_secs(120);

pub const BIN: &str = env!("CARGO_BIN_EXE_fiddler_crab");

/// Heavy tests (floods, slow-client swarms) take this so they never run at
/// the same time as each other.
pub fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A directory of its own for one test, removed at the end.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "fiddler-test-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes an executable script and returns its path.
    pub fn script(&self, name: &str, text: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The log the server wrote, line by line, and a way to wait for a line.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    log: Arc<Log>,
    pub dir: TempDir,
}

impl Server {
    /// Starts the binary with `args`, on ephemeral ports unless the args say
    /// otherwise, and waits until it is listening.
    pub fn start(args: &[&str]) -> Server {
        Server::start_in(TempDir::new(), args)
    }

    /// Like `start`, with a config file holding `toml` (passed with -c).
    pub fn with_config(toml: &str, args: &[&str]) -> Server {
        Server::with_config_in(TempDir::new(), toml, args)
    }

    /// Like `with_config`, in a directory the test already holds files in.
    pub fn with_config_in(dir: TempDir, toml: &str, args: &[&str]) -> Server {
        let path = dir.path("fiddler.toml");
        std::fs::write(&path, toml).unwrap();
        let mut all = vec!["-c", path.to_str().unwrap()];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        Server::start_in(dir, &refs)
    }

    pub fn start_in(dir: TempDir, args: &[&str]) -> Server {
        Server::launch(Command::new(BIN), dir, args)
    }

    /// Starts the binary with at most `fds` open files (soft and hard limit).
    pub fn with_fd_limit(fds: u32, args: &[&str]) -> Server {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("ulimit -n {fds} && exec \"$0\" \"$@\""), BIN]);
        Server::launch(cmd, TempDir::new(), args)
    }

    /// Starts the binary, with `args`, where it finds no cgroup to make
    /// (an empty tmpfs over /sys/fs/cgroup, in a mount namespace of its
    /// own: needs root), as an unprivileged user or a container would.
    pub fn without_cgroups(dir: TempDir, args: &[&str]) -> Server {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "sh",
            "-c",
            "mount -t tmpfs none /sys/fs/cgroup && exec \"$0\" \"$@\"",
            BIN,
        ]);
        Server::launch(cmd, dir, args)
    }

    /// Starts the binary with descriptor 7 open (on /dev/null), as a
    /// careless parent would leave it.
    pub fn with_inherited_fd(args: &[&str]) -> Server {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exec 7</dev/null && exec \"$0\" \"$@\"", BIN]);
        Server::launch(cmd, TempDir::new(), args)
    }

    fn launch(mut cmd: Command, dir: TempDir, args: &[&str]) -> Server {
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--admin") {
            cmd.args(["--admin", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.env("FIDDLER_TEST_SECRET", "must-not-leak");
        let mut child = cmd.spawn().expect("start the server");
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("FIDDLER_TEST_LOG").is_some() {
                    eprintln!("server: {line}");
                }
                sink.lines.lock().unwrap().push(line);
                sink.grew.notify_all();
            }
            sink.lines.lock().unwrap().push("<exit>".into());
            sink.grew.notify_all();
        });
        let mut server = Server {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            admin: None,
            log,
            dir,
        };
        let line = server.wait_log(|l| l.contains("listening on ") || l == "<exit>");
        assert!(
            line != "<exit>",
            "server exited at start: {:?}",
            server.log_lines()
        );
        server.addr = after(&line, "listening on ").parse().unwrap();
        if !args.contains(&"off") {
            let line = server.wait_log(|l| l.contains("admin on "));
            server.admin = Some(after(&line, "admin on ").parse().unwrap());
        }
        server
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lines.lock().unwrap().clone()
    }

    /// Waits for a log line that satisfies `pred` and returns it.
    pub fn wait_log(&self, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return l.clone();
            }
            let left = DEADLINE.checked_sub(start.elapsed()).unwrap_or_else(|| {
                panic!("no such log line within {DEADLINE:?}; log: {:#?}", *lines)
            });
            lines = self.log.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.set_write_timeout(Some(DEADLINE)).unwrap();
        s
    }

    /// Sends raw bytes on a new connection and reads until the server closes.
    pub fn raw(&self, request: &[u8]) -> Reply {
        let mut s = self.connect();
        s.write_all(request).unwrap();
        read_reply(&mut s)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.raw(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
    }

    /// Sends a POST of `body` on a new connection and returns it, unread.
    pub fn send_post(&self, path: &str, body: &str) -> TcpStream {
        let mut c = self.connect();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        c.write_all(req.as_bytes()).unwrap();
        c
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Reply {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.raw(&req)
    }

    /// A GET of `path` on the admin endpoint.
    pub fn admin_get(&self, path: &str) -> Reply {
        let admin = self.admin.expect("admin endpoint");
        let mut s = TcpStream::connect(admin).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        read_reply(&mut s)
    }

    /// The value of one /metrics sample, e.g. `fiddler_queue_depth` or
    /// `fiddler_dropped_total{reason="queue_full"}`; None if it is not shown
    /// (counters by route and status appear once they are not zero).
    pub fn sample(&self, sample: &str) -> Option<u64> {
        let reply = self.admin_get("/metrics");
        assert_eq!(reply.status, 200);
        let text = String::from_utf8(reply.body).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
            .map(|v| v.parse().unwrap())
    }

    /// The value of one /metrics sample, which must be shown.
    pub fn metric(&self, sample: &str) -> u64 {
        self.sample(sample)
            .unwrap_or_else(|| panic!("no sample {sample} in /metrics"))
    }

    /// Waits until `/metrics` shows `sample` satisfying `pred` (the server
    /// offers no push: it looks every 5 ms).
    pub fn wait_metric(&self, sample: &str, pred: impl Fn(u64) -> bool) -> u64 {
        wait_for(Duration::from_millis(5), || {
            let v = self.metric(sample);
            if pred(v) {
                Ok(v)
            } else {
                Err(format!("{sample} stayed at {v}"))
            }
        })
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the server a signal by name (`TERM`, `INT`, `HUP`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the server to exit (its stderr closes) and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        self.wait_log(|l| l == "<exit>");
        self.child.wait().unwrap().code()
    }

    /// Kills the server outright (SIGKILL), as a crash or the OOM killer would.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The word after `marker` in a log line, text or JSON.
fn after(line: &str, marker: &str) -> String {
    line.split(marker)
        .nth(1)
        .unwrap()
        .split(|c: char| c.is_whitespace() || c == '"')
        .next()
        .unwrap()
        .to_owned()
}

/// A parsed answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Every byte received, 100 Continue included.
    pub raw: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads until the server closes and parses the final response.
pub fn read_reply(s: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset && !raw.is_empty() => {}
        Err(e) => panic!("reading the reply: {e} (got {} bytes)", raw.len()),
    }
    parse_reply(raw)
}

pub fn parse_reply(raw: Vec<u8>) -> Reply {
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut start = 0;
    // Skip interim 1xx answers.
    while text[start..].starts_with("HTTP/1.1 1") {
        start += text[start..].find("\r\n\r\n").expect("end of interim head") + 4;
    }
    let end = start
        + text[start..]
            .find("\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {text:?}"));
    let mut lines = text[start..end].split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_owned(), v.to_owned())
        })
        .collect();
    let body = raw[end + 4..].to_vec();
    Reply {
        status,
        headers,
        body,
        raw,
    }
}

/// Reads one answer from a connection that stays open (`keep_alive`): its
/// head, then the `Content-Length` bytes it announces.
pub fn read_one(s: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            other => panic!(
                "reading a head: {other:?} after {:?}",
                String::from_utf8_lossy(&raw)
            ),
        }
    }
    let len: usize = parse_reply(raw.clone())
        .header("Content-Length")
        .map_or(0, |l| l.parse().unwrap());
    let at = raw.len();
    raw.resize(at + len, 0);
    s.read_exact(&mut raw[at..]).unwrap();
    parse_reply(raw)
}

/// Reads whatever a connection yields until it closes: the bytes, or the
/// error that ended it. For connections the server should close unread.
pub fn read_all(s: &mut TcpStream) -> (Vec<u8>, Option<ErrorKind>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Some(e.kind())),
        }
    }
}

/// Looks again and again, every `every`, until `look` finds what is waited
/// for (`Ok`): for what offers nothing to wait on (a file, a process, a
/// state only /metrics or /ready shows). Past `DEADLINE` it fails with what
/// the last look saw (`Err`).
pub fn wait_for<T>(every: Duration, look: impl FnMut() -> Result<T, String>) -> T {
    wait_within(DEADLINE, every, look)
}

/// `wait_for` with a deadline of its own, for what is already done and
/// only has to show (a process killed before its request was answered):
/// a broken promise then fails in seconds, not in `DEADLINE`.
pub fn wait_within<T>(
    deadline: Duration,
    every: Duration,
    mut look: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match look() {
            Ok(found) => return found,
            Err(seen) => assert!(start.elapsed() < deadline, "{seen}"),
        }
        std::thread::sleep(every);
    }
}

/// Programs that the test controls: each run connects to this socket, says
/// it started, and waits until the test releases it.
pub struct Control {
    pub socket: PathBuf,
    started: Receiver<UnixStream>,
}

/// A started program, held until `release`.
pub struct Held(UnixStream);

impl Held {
    /// Waits until the held program has ended (its end of the socket closed).
    pub fn wait_gone(mut self) {
        let mut rest = Vec::new();
        self.0
            .read_to_end(&mut rest)
            .expect("the held program to end within the deadline");
    }

    pub fn release(mut self) {
        self.0.write_all(b"go").unwrap();
        let _ = self.0.shutdown(Shutdown::Write);
    }
}

impl Control {
    pub fn new(dir: &Path) -> Control {
        let socket = dir.join("control.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let (tx, started) = channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                stream.set_read_timeout(Some(DEADLINE)).unwrap();
                let mut hello = [0u8; 8];
                if stream.read_exact(&mut hello).is_ok() && tx.send(stream).is_err() {
                    break;
                }
            }
        });
        Control { socket, started }
    }

    /// Waits until a program has started and holds it.
    pub fn wait_started(&self) -> Held {
        Held(
            self.started
                .recv_timeout(DEADLINE)
                .expect("a held program to start"),
        )
    }

    /// A held program that started since the last look, if any (no wait).
    pub fn try_started(&self) -> Option<Held> {
        self.started.try_recv().ok().map(Held)
    }

    /// The route command of a held program: it records each start in
    /// `starts`, takes a lock to prove it is alone (writing `overlap` if not),
    /// waits for release, then echoes its stdin.
    pub fn program(&self, dir: &TempDir) -> String {
        let script = dir.script(
            "held.py",
            &format!(
                r#"#!/usr/bin/env python3
import fcntl, os, socket, sys
d = {dir:?}
with open(os.path.join(d, "starts"), "a") as f:
    f.write("start\n")
lock = open(os.path.join(d, "lock"), "w")
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    open(os.path.join(d, "overlap"), "a").write("overlap\n")
s = socket.socket(socket.AF_UNIX)
s.connect({sock:?})
s.sendall(b"started!")
s.recv(2)
sys.stdout.buffer.write(sys.stdin.buffer.read())
"#,
                dir = dir.0.to_str().unwrap(),
                sock = self.socket.to_str().unwrap(),
            ),
        );
        format!("python3 {script}")
    }
}

/// How many times a `Control::program` started.
pub fn starts(dir: &TempDir) -> usize {
    std::fs::read_to_string(dir.path("starts")).map_or(0, |s| s.lines().count())
}

/// True if two held programs ever ran at once.
pub fn overlapped(dir: &TempDir) -> bool {
    dir.path("overlap").exists()
}

/// A server with a held route (`POST /held`, a `Control::program`) and
/// `GET /ok`, plus `args`.
pub fn held_server(dir: TempDir, control: &Control, args: &[&str]) -> Server {
    let program = control.program(&dir);
    let route = format!("POST /held={program}");
    let mut all = vec!["--route", &route, "--route", "GET /ok=echo ok"];
    all.extend_from_slice(args);
    Server::start_in(dir, &all)
}

/// A server whose first request (with `body`) runs and is held: the server,
/// its control, that request's client, and the held program.
pub fn busy(args: &[&str], body: &str) -> (Server, Control, TcpStream, Held) {
    let dir = TempDir::new();
    let control = Control::new(&dir.0);
    let s = held_server(dir, &control, args);
    let client = s.send_post("/held", body);
    let held = control.wait_started();
    (s, control, client, held)
}

/// Reads from `s` until `text` has arrived; returns all that came.
pub fn read_until(s: &mut TcpStream, text: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(text) {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before {text:?}: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The body of a chunked answer, de-chunked; None if it has no last chunk
/// (an answer cut short) or is no chunked body.
pub fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).ok()?, 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}
