//! Runs one external program (or serves one request with a warm worker's):
//! body to stdin, stdout to one `Sink` (kept up to a cap, streamed to the
//! client, or read as a worker's frames), a bounded tail of stderr kept, all
//! three pipes served by one `poll` loop so a program that writes before it
//! reads cannot deadlock. At its deadline, past its output cap, or when its
//! client leaves, its whole process group gets SIGTERM, then SIGKILL after
//! the grace period (or a worker is asked to stop the request: `cancel`);
//! when its `Group` ends, its cgroup is killed too.
//!
//! Must never: use a shell, wait past the deadline (plus the grace), keep
//! more than `max_output` + `STDERR_TAIL` bytes, or leave a process it
//! started running when its `Group` is dropped.

use crate::cgi;
use crate::cgroup::Cgroup;
use crate::frames::{self, Frame, Item};
use crate::http::response::Response;
use crate::metrics::Reason;
use crate::route::Sandbox;
use crate::search;
use crate::state::Running;
use crate::stream::Stream;
use crate::sys::{self, POLLIN, POLLOUT, POLLRDHUP, PollFd, SIGKILL, SIGTERM, SIGXCPU, Wait};
use std::ffi::{CString, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Bytes of stderr kept (the last ones) for the log.
pub const STDERR_TAIL: usize = 2048;
/// How often to check for the exit of a program that closed its pipes, on a
/// kernel without pidfd (before Linux 5.3). Never used while idle.
const EXIT_CHECK: Duration = Duration::from_millis(20);

/// What to run and with what.
#[derive(Clone, Copy)]
pub struct Run<'a> {
    pub argv: &'a [OsString],
    /// The whole environment of the program (it inherits nothing).
    pub env: &'a [(OsString, OsString)],
    pub stdin: &'a [u8],
    pub deadline: Instant,
    pub max_output: usize,
    /// Between SIGTERM and SIGKILL when the program is stopped.
    pub kill_grace: Duration,
    /// The client's socket: if the client leaves, the program is stopped.
    pub client: Option<RawFd>,
    pub sandbox: &'a Sandbox,
    /// Where the program is published while it runs, so another thread can
    /// stop it if the caller cannot.
    pub running: &'a Running,
}

/// A program that ran and exited with status 0.
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Tail,
}

/// Why a run gave no usable output. Each maps to one status in the handler.
#[derive(Debug)]
pub enum Failure {
    /// The program could not be started (missing, not executable, …): 502.
    Spawn(io::Error),
    /// It exited with a non-zero code: 502.
    Exit(i32, Tail),
    /// A signal ended it: 502.
    Signal(i32, Tail),
    /// It ran past its deadline and was killed: 504.
    Timeout(Tail),
    /// It wrote more than `max_output` and was killed: 502.
    OutputCap(Tail),
    /// A worker's answer broke the protocol (see `worker.rs`): 502.
    BadFrame(String, Tail),
    /// An HTTP worker could not be reached, or its answer broke HTTP: 502.
    Upstream(String),
    /// A worker that failed rests this long before it may start again: 503.
    Resting(Duration),
    /// Its client left, so it was stopped: no answer.
    ClientGone(Tail),
    /// The pipes to it failed (the server's side): 502.
    Io(io::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            // exec's ENOENT: the file, or the interpreter its #! names.
            Failure::Spawn(e)
                if e.kind() == io::ErrorKind::NotFound && e.raw_os_error().is_some() =>
            {
                f.write_str("could not start: no such file (or no such interpreter on its #! line)")
            }
            Failure::Spawn(e) => write!(f, "could not start: {e}"),
            Failure::Exit(code, _) => write!(f, "exited with code {code}"),
            Failure::Signal(sig, _) => write!(f, "killed by signal {sig}{}", signal_name(*sig)),
            Failure::Timeout(_) => f.write_str("ran past its deadline and was killed"),
            Failure::OutputCap(_) => f.write_str("wrote more than max_output and was killed"),
            Failure::BadFrame(why, _) => write!(f, "broke the worker protocol: {why}"),
            Failure::Upstream(why) => write!(f, "failed over HTTP: {why}"),
            Failure::Resting(left) => write!(
                f,
                "is resting after a failure ({} ms left); not started",
                left.as_millis()
            ),
            Failure::ClientGone(_) => f.write_str("was stopped: its client left"),
            Failure::Io(e) => write!(f, "pipe error: {e}"),
        }
    }
}

impl Failure {
    /// What broke; None when nothing did (the client left).
    pub fn reason(&self) -> Option<Reason> {
        Some(match self {
            Failure::Spawn(_) => Reason::Spawn,
            Failure::Exit(..) => Reason::Exit,
            Failure::Signal(..) => Reason::Signal,
            Failure::Timeout(_) => Reason::Timeout,
            Failure::OutputCap(_) => Reason::OutputCap,
            Failure::Io(_) => Reason::Pipe,
            Failure::BadFrame(..) => Reason::Protocol,
            Failure::Upstream(_) => Reason::Upstream,
            Failure::ClientGone(_) | Failure::Resting(_) => return None,
        })
    }

    /// The same failure, with `tail` as the stderr it keeps.
    fn with_stderr(self, tail: Tail) -> Failure {
        match self {
            Failure::Exit(code, _) => Failure::Exit(code, tail),
            Failure::Signal(sig, _) => Failure::Signal(sig, tail),
            Failure::Timeout(_) => Failure::Timeout(tail),
            Failure::OutputCap(_) => Failure::OutputCap(tail),
            Failure::BadFrame(why, _) => Failure::BadFrame(why, tail),
            Failure::ClientGone(_) => Failure::ClientGone(tail),
            other @ (Failure::Spawn(_)
            | Failure::Io(_)
            | Failure::Upstream(_)
            | Failure::Resting(_)) => other,
        }
    }

    /// The status to answer with; None when there is nobody to answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            // Past its deadline, or past its CPU-seconds limit (SIGXCPU).
            Failure::Timeout(_) | Failure::Signal(SIGXCPU, _) => Some(504),
            Failure::ClientGone(_) => None,
            Failure::Resting(_) => Some(503),
            Failure::Spawn(_)
            | Failure::Exit(..)
            | Failure::Signal(..)
            | Failure::OutputCap(_)
            | Failure::BadFrame(..)
            | Failure::Upstream(_)
            | Failure::Io(_) => Some(502),
        }
    }

    /// A breakdown of the program rather than an answer about the request:
    /// what counts against a route's circuit breaker.
    pub fn is_breakdown(&self) -> bool {
        matches!(
            self,
            Failure::Spawn(_)
                | Failure::Signal(..)
                | Failure::Timeout(_)
                | Failure::Io(_)
                | Failure::BadFrame(..)
                | Failure::Upstream(_)
        )
    }

    pub fn stderr(&self) -> &[u8] {
        match self {
            Failure::Exit(_, t)
            | Failure::Signal(_, t)
            | Failure::Timeout(t)
            | Failure::OutputCap(t)
            | Failure::BadFrame(_, t)
            | Failure::ClientGone(t) => t.as_bytes(),
            Failure::Spawn(_) | Failure::Io(_) | Failure::Upstream(_) | Failure::Resting(_) => &[],
        }
    }
}

/// The last `STDERR_TAIL` bytes a program wrote to stderr.
#[derive(Debug, Default)]
pub struct Tail {
    buf: Vec<u8>,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        let excess = self.buf.len().saturating_sub(STDERR_TAIL);
        self.buf.drain(..excess);
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Where a program's stdout goes, which also says what ends a run.
pub enum Sink<'s, 'c> {
    /// Kept whole, until the program exits (a program per request).
    Collect,
    /// Sent to the client as it comes, until the program exits.
    Stream(&'s mut Stream<'c>),
    /// One whole answer frame (a warm worker, which goes on running).
    Frame,
    /// A warm worker's streamed answer: its head frame, pieces of its body,
    /// then its end mark.
    Frames(Streamed<'s, 'c>),
}

/// What ends a framed worker's answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ends {
    /// Its one frame (`Sink::Frame`).
    AtFrame,
    /// Its end mark, after its head and pieces (`Sink::Frames`).
    AtEndMark,
}

/// A framed worker's streamed answer, as it comes: the head and pieces go to
/// the client (or, without a stream — HTTP/1.0, HEAD —, are kept whole).
pub struct Streamed<'s, 'c> {
    pub stream: Option<&'s mut Stream<'c>>,
    /// The request's id: only its end mark ends the answer.
    pub id: u64,
    /// The route's, for a head without a `Content-Type`.
    pub content_type: &'s str,
    head_seen: bool,
    kept: Vec<u8>,
}

impl<'s, 'c> Streamed<'s, 'c> {
    pub fn new(stream: Option<&'s mut Stream<'c>>, id: u64, content_type: &'s str) -> Self {
        Streamed {
            stream,
            id,
            content_type,
            head_seen: false,
            kept: Vec::new(),
        }
    }

    /// One frame: the head (a CGI header block, which the stream sends as
    /// its status and fields), or a piece of the body.
    fn frame(&mut self, bytes: &[u8], sent: &mut usize, max: usize) -> Result<(), Failure> {
        let tail = Tail::default;
        if !self.head_seen {
            self.head_seen = true;
            if let Some(s) = self.stream.as_deref_mut() {
                let (status, fields) = match cgi::parse(bytes) {
                    Ok(cgi::Reply::Document {
                        status,
                        content_type,
                        headers,
                        ..
                    }) => (status, {
                        let ct = content_type.unwrap_or_else(|| self.content_type.to_owned());
                        let mut all = vec![("Content-Type".to_owned(), ct)];
                        all.extend(headers);
                        all
                    }),
                    Ok(cgi::Reply::LocalRedirect(_)) => {
                        return Err(Failure::BadFrame(
                            "a streamed answer cannot redirect".into(),
                            tail(),
                        ));
                    }
                    Err(e) => return Err(Failure::BadFrame(format!("its head: {e}"), tail())),
                };
                let pairs: Vec<(&str, &str)> = fields
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                s.begin(status, Response::chunked_head(status, &pairs));
            } else {
                self.kept.extend_from_slice(bytes);
            }
            return Ok(());
        }
        *sent += bytes.len();
        if *sent > max {
            return Err(Failure::OutputCap(tail()));
        }
        match self.stream.as_deref_mut() {
            Some(s) => s.push(bytes).map_err(|_| Failure::ClientGone(tail())),
            None => {
                self.kept.extend_from_slice(bytes);
                Ok(())
            }
        }
    }
}

/// What the sink made of the output so far.
enum Taken {
    More,
    /// The answer is whole: its bytes (none if it was streamed).
    Done(Vec<u8>),
}

impl<'c> Sink<'_, 'c> {
    fn stream(&mut self) -> Option<&mut Stream<'c>> {
        match self {
            Sink::Stream(s) => Some(s),
            Sink::Frames(f) => f.stream.as_deref_mut(),
            Sink::Collect | Sink::Frame => None,
        }
    }

    /// Takes what stdout gave so far (`out`; `sent` bytes of it already
    /// went to the client): keeps it, streams it, or finds the frame's end.
    fn take(&mut self, out: &mut Vec<u8>, sent: &mut usize, max: usize) -> Result<Taken, Failure> {
        let tail = Tail::default;
        match self {
            Sink::Frame => match frames::answer(out, max) {
                Frame::Partial => Ok(Taken::More),
                Frame::Whole(body) => {
                    out.drain(..body.start);
                    Ok(Taken::Done(std::mem::take(out)))
                }
                Frame::TooLong => Err(Failure::OutputCap(tail())),
                Frame::Bad(why) => Err(Failure::BadFrame(why, tail())),
            },
            Sink::Frames(f) => loop {
                match frames::item(out, max) {
                    Item::Partial => return Ok(Taken::More),
                    Item::Frame(range) => {
                        f.frame(out.get(range.clone()).unwrap_or_default(), sent, max)?;
                        out.drain(..range.end);
                    }
                    Item::End(id, n) if id == f.id && f.head_seen => {
                        out.drain(..n);
                        if !out.is_empty() {
                            return Err(Failure::BadFrame("it wrote after its end".into(), tail()));
                        }
                        return Ok(Taken::Done(std::mem::take(&mut f.kept)));
                    }
                    Item::End(..) => {
                        return Err(Failure::BadFrame(
                            "an end that is not its request's".into(),
                            tail(),
                        ));
                    }
                    Item::TooLong => return Err(Failure::OutputCap(tail())),
                    Item::Bad(why) => return Err(Failure::BadFrame(why, tail())),
                }
            },
            _ if *sent + out.len() > max => Err(Failure::OutputCap(tail())),
            Sink::Collect => Ok(Taken::More),
            Sink::Stream(s) => {
                *sent += out.len();
                s.push(out).map_err(|_| Failure::ClientGone(tail()))?;
                out.clear();
                Ok(Taken::More)
            }
        }
    }
}

/// Starts the program and runs it to its end. Blocks the calling thread until
/// then, never past `run.deadline` (plus `kill_grace`). Its stdout goes
/// where `sink` says.
pub fn run(run: &Run, sink: Sink) -> Result<Output, Failure> {
    let mut group = spawn(run, run.running, Stdio::Request)?;
    let mut scratch = vec![0u8; SCRATCH];
    let result = group.serve(run, &mut scratch, sink);
    if let Err(Failure::Timeout(_) | Failure::OutputCap(_) | Failure::ClientGone(_)) = &result {
        group.stop(run.kill_grace, &mut scratch);
    }
    result
}

/// Bytes read from a pipe at a time.
pub const SCRATCH: usize = 64 * 1024;

/// Where a program's stdin, stdout and stderr go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdio {
    /// A program per request: stdin the body (a pipe, or /dev/null if
    /// there is none); stdout and stderr pipes.
    Request,
    /// A framed worker: stdin a pipe kept open for request after request.
    Frames,
    /// An HTTP worker, which talks over a socket: stdin /dev/null, stdout
    /// and stderr the server's own stderr, so a worker that logs much can
    /// never block on a pipe nobody reads between requests.
    ServerLog,
}

/// Starts the program in a process group of its own, with the limits of its
/// sandbox, its standard streams as `stdio` says.
pub fn spawn<'r>(run: &Run, running: &'r Running, stdio: Stdio) -> Result<Group<'r>, Failure> {
    let invalid = || Failure::Spawn(io::Error::from(io::ErrorKind::InvalidInput));
    let c_string = |bytes: Vec<u8>| CString::new(bytes).map_err(|_| invalid());
    let Some(program) = run.argv.first() else {
        return Err(invalid());
    };
    let argv = run
        .argv
        .iter()
        .map(|a| c_string(a.as_bytes().to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    // A name given twice (a route's `env` over the server's PATH or a CGI
    // variable) keeps its last value.
    let env = run
        .env
        .iter()
        .enumerate()
        .filter(|&(i, (k, _))| !run.env.iter().skip(i + 1).any(|(later, _)| later == k))
        .map(|(_, (k, v))| c_string([k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<Result<Vec<_>, _>>()?;
    let sandbox = run.sandbox;
    let path = search::locate(program, run.env, sandbox.dir.as_deref()).map_err(Failure::Spawn)?;
    let path = c_string(path.into_vec())?;
    let dir = match &sandbox.dir {
        Some(d) => Some(c_string(d.as_os_str().as_bytes().to_vec())?),
        None => None,
    };
    let io = |e| Failure::Spawn(e);
    let (stdin, feed): (OwnedFd, _) = match stdio {
        Stdio::Request if !run.stdin.is_empty() => pipe().map_err(io)?,
        Stdio::Frames => pipe().map_err(io)?,
        Stdio::Request | Stdio::ServerLog => (File::open("/dev/null").map_err(io)?.into(), None),
    };
    let (stdout_r, stdout_w) = output(stdio).map_err(io)?;
    let (stderr_r, stderr_w) = output(stdio).map_err(io)?;
    let cgroup = Cgroup::new();
    let program = sys::Program {
        path: &path,
        argv: &argv,
        env: &env,
        stdio: [stdin.as_fd(), stdout_w.as_fd(), stderr_w.as_fd()],
        dir: dir.as_deref(),
        uid: sandbox.uid,
        gid: sandbox.gid,
        limits: sandbox.limits,
        cgroup: cgroup.as_ref().map(|c| c.procs.as_fd()),
    };
    // Registered before any other thread can reap orphans: held across the
    // spawn, the lock leaves no moment where the child is not known.
    let pid = {
        let mut owned = owned();
        let pid = sys::spawn(&program).map_err(Failure::Spawn)?;
        owned.push(pid);
        pid
    };
    // The child's ends are closed here: its exit then closes our reads.
    drop((stdin, stdout_w, stderr_w));
    let mut group = Group::new(pid, running, stdio, feed, stdout_r, stderr_r);
    group.cgroup = cgroup;
    let pipes = [
        fd_of(&group.stdin),
        fd_of(&group.stdout),
        fd_of(&group.stderr),
    ];
    for fd in pipes.into_iter().flatten() {
        sys::set_nonblocking(&fd).map_err(Failure::Io)?;
    }
    group
        .published
        .start(group.pid, run.deadline + run.kill_grace);
    Ok(group)
}

/// A pipe: the child's end (read), ours (write).
fn pipe() -> io::Result<(OwnedFd, Option<PipeWriter>)> {
    let (r, w) = io::pipe()?;
    Ok((r.into(), Some(w)))
}

/// Where an output of the child goes: a pipe (ours to read, the child's to
/// write), or a copy of the server's stderr.
fn output(stdio: Stdio) -> io::Result<(Option<PipeReader>, OwnedFd)> {
    match stdio {
        Stdio::Request | Stdio::Frames => {
            let (r, w) = io::pipe()?;
            Ok((Some(r), w.into()))
        }
        Stdio::ServerLog => Ok((None, io::stderr().as_fd().try_clone_to_owned()?)),
    }
}

/// The pids of the programs `Group`s own (and reap themselves), so that
/// reaping orphans never takes one of them from under its owner.
static OWNED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn owned() -> MutexGuard<'static, Vec<u32>> {
    OWNED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running program, its pipes, and the promise that its group is killed
/// and reaped when this is dropped, whatever happened before.
pub struct Group<'a> {
    /// The program's pid, which is its group's id too.
    pid: u32,
    published: &'a Running,
    /// How it was started: a framed worker's stdin stays open for its next
    /// request, and its exit never ends a run well.
    stdio: Stdio,
    stdin: Option<PipeWriter>,
    stdout: Option<PipeReader>,
    stderr: Option<PipeReader>,
    exit: Option<OwnedFd>,
    status: Option<ExitStatus>,
    /// Stdout not yet taken by a sink: what a stopped request left.
    out: Vec<u8>,
    /// The last request was written whole to stdin (a cancel may follow it).
    fed_all: bool,
    /// Its cgroup, if the server makes them: ended with the group.
    cgroup: Option<Cgroup>,
}

impl<'a> Group<'a> {
    fn new(
        pid: u32,
        published: &'a Running,
        stdio: Stdio,
        stdin: Option<PipeWriter>,
        stdout: Option<PipeReader>,
        stderr: Option<PipeReader>,
    ) -> Group<'a> {
        Group {
            pid,
            published,
            stdio,
            stdin,
            stdout,
            stderr,
            exit: sys::pidfd_open(pid).ok(),
            status: None,
            out: Vec::new(),
            fed_all: false,
            cgroup: None,
        }
    }

    /// The process id of the program (and so the id of its group).
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Publishes the program as running until `end` (then the watchdog may
    /// kill it), or (`None`) as idle.
    pub fn publish(&self, end: Option<Instant>) {
        match end {
            Some(end) => self.published.start(self.pid, end),
            None => self.published.end(self.pid),
        }
    }

    /// How the program ended, if it has (its group may still hold others).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.exited_now();
        self.status
    }

    /// Serves one run: feeds `run.stdin`, gives stdout to `sink` and keeps a
    /// tail of stderr, until the program exits or, for a worker, until its
    /// sink has one whole answer (the worker then goes on running).
    pub fn serve(
        &mut self,
        run: &Run,
        scratch: &mut [u8],
        mut sink: Sink,
    ) -> Result<Output, Failure> {
        self.published
            .start(self.pid, run.deadline + run.kill_grace);
        let mut written = 0;
        // What a cancelled request left is the cancel's, never the next's.
        self.fed_all = false;
        let mut stdout = std::mem::take(&mut self.out);
        let mut stderr = Tail::default();
        // Bytes of stdout sent on (streaming) so far, for the output cap.
        let mut sent = 0;
        // The client is watched for leaving, and written to when streaming.
        let client = sink.stream().map(|s| s.fd()).or(run.client);
        // A pipe takes a request at once, most often: no poll first.
        self.feed(run.stdin, &mut written);
        self.fed_all = written >= run.stdin.len();
        loop {
            let closed = self.stdout.is_none() && self.stderr.is_none();
            if self.status.is_some() || (closed && self.exited_now()) {
                // Exited: what it wrote is in the pipes already. Take what is
                // there without waiting for stragglers of its group.
                self.drain(&mut stdout, &mut stderr, scratch)?;
                match sink.take(&mut stdout, &mut sent, run.max_output) {
                    Ok(Taken::Done(answer)) => {
                        return Ok(Output {
                            stdout: answer,
                            stderr,
                        });
                    }
                    Ok(Taken::More) => break,
                    Err(failure) => return Err(failure.with_stderr(stderr)),
                }
            }
            let Some(left) = run
                .deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                self.out = stdout;
                return Err(Failure::Timeout(stderr));
            };
            let (stdin, out, err, exit) = (
                fd_of(&self.stdin),
                fd_of(&self.stdout),
                fd_of(&self.stderr),
                fd_of(&self.exit),
            );
            // poll(2) skips entries whose descriptor is negative.
            // A worker's stdin stays open once its request is written: poll
            // it only while bytes are left, or poll returns at once, forever.
            let stdin = stdin.filter(|_| written < run.stdin.len());
            let wants_out = sink.stream().is_some_and(|s| s.wants_write());
            let mut fds = [
                (stdin, POLLOUT),
                (out, POLLIN),
                (err, POLLIN),
                (exit, POLLIN),
                (client, POLLRDHUP | if wants_out { POLLOUT } else { 0 }),
            ]
            .map(|(fd, events)| PollFd::new(fd.unwrap_or(-1), events));
            let timeout = if exit.is_none() && closed {
                left.min(EXIT_CHECK)
            } else {
                left
            };
            sys::poll(&mut fds, Some(timeout)).map_err(Failure::Io)?;
            let [stdin_ready, out_ready, err_ready, exit_ready, _] =
                fds.each_ref().map(PollFd::ready);
            let [.., client_poll] = &fds;
            let client_events = client_poll.revents();
            let flushed = match sink.stream() {
                Some(s) if client_events & POLLOUT != 0 => s.flush(),
                _ => Ok(()),
            };
            // POLLRDHUP, POLLHUP or POLLERR: the client closed or reset.
            if client_events & !POLLOUT != 0 || flushed.is_err() {
                self.out = stdout;
                return Err(Failure::ClientGone(stderr));
            }
            if stdin_ready {
                self.feed(run.stdin, &mut written);
                self.fed_all = written >= run.stdin.len();
            }
            if out_ready {
                read_some(&mut self.stdout, scratch, |b| stdout.extend_from_slice(b))
                    .map_err(Failure::Io)?;
                match sink.take(&mut stdout, &mut sent, run.max_output) {
                    Ok(Taken::More) => {}
                    Ok(Taken::Done(answer)) => {
                        self.published.end(self.pid);
                        return Ok(Output {
                            stdout: answer,
                            stderr,
                        });
                    }
                    Err(Failure::ClientGone(_)) => {
                        self.out = stdout;
                        return Err(Failure::ClientGone(stderr));
                    }
                    Err(failure) => return Err(failure.with_stderr(stderr)),
                }
            }
            if err_ready {
                read_some(&mut self.stderr, scratch, |b| stderr.push(b)).map_err(Failure::Io)?;
            }
            if exit_ready {
                self.exited_now();
            }
        }
        let status = self
            .status
            .ok_or_else(|| Failure::Io(io::Error::other("no exit status")))?;
        match (status.code(), status.signal()) {
            // A worker that exited mid-answer has not answered, whatever its
            // exit code.
            (Some(0), _) if self.stdio == Stdio::Frames => Err(Failure::Exit(0, stderr)),
            (Some(0), _) => Ok(Output { stdout, stderr }),
            (Some(code), _) => Err(Failure::Exit(code, stderr)),
            (None, Some(sig)) => Err(Failure::Signal(sig, stderr)),
            (None, None) => Err(Failure::Exit(-1, stderr)),
        }
    }

    /// Writes what stdin can take now; closes it when all is written (if
    /// a program per request: a worker's stays open for the next one) or the
    /// program stopped reading (EPIPE is the program's choice, not an error).
    fn feed(&mut self, body: &[u8], written: &mut usize) {
        let Some(pipe) = self.stdin.as_mut() else {
            return;
        };
        loop {
            let rest = body.get(*written..).unwrap_or_default();
            if rest.is_empty() {
                if self.stdio == Stdio::Request {
                    self.stdin = None;
                }
                return;
            }
            match pipe.write(rest) {
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.stdin = None;
                    return;
                }
            }
        }
    }

    /// Reads whatever stdout and stderr hold now, without waiting for more.
    fn drain(
        &mut self,
        stdout: &mut Vec<u8>,
        stderr: &mut Tail,
        scratch: &mut [u8],
    ) -> Result<(), Failure> {
        read_some(&mut self.stdout, scratch, |b| stdout.extend_from_slice(b))
            .map_err(Failure::Io)?;
        read_some(&mut self.stderr, scratch, |b| stderr.push(b)).map_err(Failure::Io)
    }

    /// Asks a worker to stop request `id` (`cancel ID` on its stdin) and
    /// waits up to `grace` for that request's end (`ends`: its one frame,
    /// which may have been on its way already, or its end mark). What came of the request is dropped. True if it
    /// ended, and nothing followed: the worker can take the next request.
    pub fn cancel(
        &mut self,
        id: u64,
        grace: Duration,
        ends: Ends,
        run: &Run,
        scratch: &mut [u8],
    ) -> bool {
        let until = Instant::now() + grace;
        // Written whole even if the request ends first: a worker skips a
        // cancel of a request that has ended, but half a line would be
        // garbage before the next request.
        let mut line = format!("cancel {id}\n").into_bytes();
        // A request not yet written whole cannot be followed by a line.
        let Some(mut stdin) = self.stdin.take().filter(|_| self.fed_all) else {
            return false;
        };
        let mut ended = false;
        loop {
            if !line.is_empty() {
                match stdin.write(&line) {
                    Ok(n) => {
                        line.drain(..n.min(line.len()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return false,
                }
            }
            while !ended {
                match frames::item(&self.out, run.max_output) {
                    Item::Frame(range) => {
                        self.out.drain(..range.end);
                        // A one-frame answer ends the request; a piece does not.
                        ended = ends == Ends::AtFrame;
                    }
                    Item::End(done, n) if done == id => {
                        self.out.drain(..n);
                        ended = true;
                    }
                    Item::Partial => break,
                    Item::End(..) | Item::TooLong | Item::Bad(_) => return false,
                }
            }
            if ended && line.is_empty() {
                break;
            }
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                return false;
            };
            let mut fds = [
                (fd_of(&self.stdout).filter(|_| !ended), POLLIN),
                (fd_of(&self.stderr), POLLIN),
                (
                    Some(stdin.as_raw_fd()).filter(|_| !line.is_empty()),
                    POLLOUT,
                ),
            ]
            .map(|(fd, events)| PollFd::new(fd.unwrap_or(-1), events));
            if sys::poll(&mut fds, Some(left)).is_err() || (!ended && self.stdout.is_none()) {
                return false;
            }
            let out = &mut self.out;
            if !ended && read_some(&mut self.stdout, scratch, |b| out.extend_from_slice(b)).is_err()
            {
                return false;
            }
            let _ = read_some(&mut self.stderr, scratch, |_| {});
        }
        self.stdin = Some(stdin);
        line.is_empty() && self.out.is_empty() && !self.exited_now()
    }

    /// Asks the group to stop (SIGTERM) and waits up to `grace` for the
    /// program to exit, reading and dropping its output meanwhile so a full
    /// pipe cannot keep it from exiting. Drop then kills what is left.
    pub fn stop(&mut self, grace: Duration, scratch: &mut [u8]) {
        let _ = sys::kill_group(self.pid, SIGTERM);
        let until = Instant::now() + grace;
        while !self.exited_now() {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                return;
            };
            let mut fds = [fd_of(&self.stdout), fd_of(&self.stderr), fd_of(&self.exit)]
                .map(|fd| PollFd::new(fd.unwrap_or(-1), POLLIN));
            let wait = if self.exit.is_some() {
                left
            } else {
                left.min(EXIT_CHECK)
            };
            if sys::poll(&mut fds, Some(wait)).is_err() {
                return;
            }
            let _ = read_some(&mut self.stdout, scratch, |_| {});
            let _ = read_some(&mut self.stderr, scratch, |_| {});
        }
    }

    /// True if the program has exited (and records how), without blocking.
    fn exited_now(&mut self) -> bool {
        if self.status.is_none() {
            self.status = sys::wait(self.pid, Wait::IfEnded).ok().flatten();
        }
        self.status.is_some()
    }
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        // Unpublished before it is reaped, so its number is never signalled
        // once the kernel could give it to another process.
        self.published.end(self.pid);
        // The group may hold stragglers even after the leader exited (a
        // daemonised grandchild): kill them all. ESRCH means none are left.
        let pgid = self.pid;
        let _ = sys::kill_group(pgid, SIGKILL);
        // And whatever left the group (setsid, a double fork): its cgroup
        // holds it still. Killed and gone before the orphans are reaped.
        drop(self.cgroup.take());
        if self.status.is_none() {
            let _ = sys::wait(self.pid, Wait::UntilEnded);
        }
        // Orphans of the group are ours (we are their subreaper): wait until
        // they are gone, then reap any that left the group and already ended
        // (but never another `Group`'s program).
        sys::reap_group(pgid);
        let mut owned = owned();
        owned.retain(|&pid| pid != pgid);
        sys::reap_orphans(|pid| owned.contains(&pid));
    }
}

/// The reason behind the signals a program most often dies of.
fn signal_name(sig: i32) -> &'static str {
    match sig {
        6 => " (SIGABRT)",
        9 => " (SIGKILL: out of memory, or killed)",
        11 => " (SIGSEGV: a crash, or over its memory limit)",
        15 => " (SIGTERM)",
        SIGXCPU => " (SIGXCPU: over its CPU-seconds limit)",
        _ => "",
    }
}

fn fd_of(pipe: &Option<impl AsRawFd>) -> Option<RawFd> {
    pipe.as_ref().map(AsRawFd::as_raw_fd)
}

/// Reads from a non-blocking pipe until it would block; at end of file the
/// pipe is closed (set to `None`). Reads at most 16 chunks at a time so one
/// stream cannot starve the other.
fn read_some<R: Read>(
    pipe: &mut Option<R>,
    scratch: &mut [u8],
    mut sink: impl FnMut(&[u8]),
) -> io::Result<()> {
    let Some(r) = pipe.as_mut() else {
        return Ok(());
    };
    for _ in 0..16 {
        match r.read(scratch) {
            Ok(0) => {
                *pipe = None;
                return Ok(());
            }
            Ok(n) => {
                sink(scratch.get(..n).unwrap_or_default());
                // Less than asked for: the pipe is empty now.
                if n < scratch.len() {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
