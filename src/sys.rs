//! The few system calls std lacks, and the only `unsafe` in the crate.
//!
//! Owns: starting a program the way `posix_spawn` does (`clone` with
//! `CLONE_VM | CLONE_VFORK`: no copy of the server's page tables), with its
//! limits and parent-death signal set in the child, and waiting for it;
//! `poll(2)`, `kill(2)` of a whole process group, `pidfd_open(2)`,
//! `fcntl(2)` to make a pipe non-blocking, raising `RLIMIT_NOFILE`,
//! adopting and reaping the orphans of programs (`prctl`, `waitpid`,
//! `waitid`),
//! `signal(2)` with a handler that only writes the signal's number to a pipe,
//! `shutdown(2)` of a listening socket, `TCP_DEFER_ACCEPT` and
//! `TCP_NODELAY` on it, a peek that sees a connection closed unread, an epoll set (the gate's readers),
//! the allocator's `mallopt(3)`, and close-on-exec for the descriptors the
//! server inherited.
//! Must never: hold state (but the signal pipe's descriptor, which the
//! handler needs, and an epoll set's own descriptor), allocate (but a program's argument arrays and the stack
//! its child runs on before exec, and the list of inherited descriptors, once
//! at start), or expose a raw pointer. Every function
//! here is safe to call and returns `io::Result`; layouts are those of Linux
//! on x86_64 and aarch64 (glibc and musl agree on them).

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io::{self, PipeReader};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::time::Duration;

mod ffi {
    use std::ffi::{c_char, c_int, c_long, c_short, c_void};

    #[repr(C)]
    pub struct PollFd {
        pub fd: c_int,
        pub events: c_short,
        pub revents: c_short,
    }

    /// `siginfo_t` as `waitid` fills it for a child: 128 bytes, `si_pid` at
    /// offset 16 on 64-bit Linux (the union after three ints is 8-aligned).
    #[repr(C)]
    pub struct SigInfo {
        pub signo: c_int,
        pub errno: c_int,
        pub code: c_int,
        pub pad: c_int,
        pub pid: c_int,
        pub rest: [u8; 108],
    }

    /// `struct epoll_event`: packed on x86_64 (12 bytes), naturally
    /// aligned elsewhere (16 bytes), as the kernel's uapi header says.
    #[cfg_attr(target_arch = "x86_64", repr(C, packed))]
    #[cfg_attr(not(target_arch = "x86_64"), repr(C))]
    #[derive(Clone, Copy)]
    pub struct EpollEvent {
        pub events: u32,
        pub data: u64,
    }

    #[repr(C)]
    pub struct RLimit {
        pub cur: u64,
        pub max: u64,
    }

    /// `sigset_t` as glibc lays it out (1024 bits; the kernel reads the first 64).
    #[repr(C)]
    pub struct SigSet(pub [u64; 16]);

    unsafe extern "C" {
        pub fn clone(
            child: extern "C" fn(*mut c_void) -> c_int,
            stack: *mut c_void,
            flags: c_int,
            arg: *mut c_void,
            ...
        ) -> c_int;
        pub fn pthread_sigmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
        pub fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
        pub fn getpid() -> c_int;
        pub fn getppid() -> c_int;
        pub fn setpgid(pid: c_int, pgid: c_int) -> c_int;
        pub fn chdir(path: *const c_char) -> c_int;
        pub fn dup2(old: c_int, new: c_int) -> c_int;
        pub fn execve(
            path: *const c_char,
            argv: *const *const c_char,
            envp: *const *const c_char,
        ) -> c_int;
        pub fn _exit(code: c_int) -> !;
        pub fn poll(fds: *mut PollFd, nfds: u64, timeout: c_int) -> c_int;
        pub fn kill(pid: c_int, sig: c_int) -> c_int;
        pub fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
        pub fn syscall(number: c_long, ...) -> c_long;
        pub fn getrlimit(resource: c_int, rlim: *mut RLimit) -> c_int;
        pub fn setrlimit(resource: c_int, rlim: *const RLimit) -> c_int;
        pub fn prctl(option: c_int, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> c_int;
        pub fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
        pub fn waitid(idtype: c_int, id: u32, info: *mut SigInfo, options: c_int) -> c_int;
        pub fn setpriority(which: c_int, who: c_int, prio: c_int) -> c_int;
        /// `handler` is a function's address, or `SIG_DFL` (0); returns the
        /// previous handler, or `SIG_ERR` (all bits set).
        pub fn signal(sig: c_int, handler: usize) -> usize;
        pub fn write(fd: c_int, buf: *const u8, count: usize) -> isize;
        pub fn shutdown(fd: c_int, how: c_int) -> c_int;
        pub fn recv(fd: c_int, buf: *mut u8, len: usize, flags: c_int) -> isize;
        pub fn setsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *const c_int,
            len: u32,
        ) -> c_int;
        pub fn epoll_create1(flags: c_int) -> c_int;
        pub fn epoll_ctl(epfd: c_int, op: c_int, fd: c_int, event: *mut EpollEvent) -> c_int;
        pub fn epoll_wait(
            epfd: c_int,
            events: *mut EpollEvent,
            max: c_int,
            timeout: c_int,
        ) -> c_int;
        pub fn __errno_location() -> *mut c_int;
        pub fn mallopt(param: c_int, value: c_int) -> c_int;
    }
}

pub const POLLIN: i16 = 0x001;
pub const POLLOUT: i16 = 0x004;

/// Peer closed its end (or shut down writing): used to see a client leave.
pub const POLLRDHUP: i16 = 0x2000;

const EPERM: i32 = 1;
pub const EBADF: i32 = 9;
pub const EINVAL: i32 = 22;
pub const ENOTSOCK: i32 = 88;

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGKILL: i32 = 9;
pub const SIGUSR1: i32 = 10;
pub const SIGTERM: i32 = 15;
pub const SIGXCPU: i32 = 24;

const F_GETFL: i32 = 3;
const F_SETFL: i32 = 4;
const O_NONBLOCK: i32 = 0o4000;
const RLIMIT_CPU: i32 = 0;
const RLIMIT_NPROC: i32 = 6;
const RLIMIT_NOFILE: i32 = 7;
const RLIMIT_AS: i32 = 9;
const PRIO_PROCESS: i32 = 0;
const PR_SET_PDEATHSIG: i32 = 1;
const PR_GET_DUMPABLE: i32 = 3;
const PR_SET_DUMPABLE: i32 = 4;
const PR_SET_CHILD_SUBREAPER: i32 = 36;
const WNOHANG: i32 = 1;
const WEXITED: i32 = 4;
const WNOWAIT: i32 = 0x0100_0000;
const P_ALL: i32 = 0;
const SHUT_RDWR: i32 = 2;
const SIG_ERR: usize = usize::MAX;
const SIG_DFL: usize = 0;
const SIG_SETMASK: c_int = 2;
const SIGPIPE: i32 = 13;
const SIGCHLD: c_int = 17;
// The layouts and numbers here are those of Linux on x86_64 and aarch64
// (64-bit; glibc and musl agree on them): the system call numbers differ
// between the two (`SYS_SET_IDS`), every other constant is the same on
// both. Any other target is refused here rather than miscompiled.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!("src/sys.rs is written for Linux on x86_64 or aarch64 only");

// Every hand-written C layout, checked against the C one by size and offset.
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<ffi::PollFd>() == 8);
    assert!(offset_of!(ffi::PollFd, events) == 4 && offset_of!(ffi::PollFd, revents) == 6);
    assert!(size_of::<ffi::SigInfo>() == 128 && offset_of!(ffi::SigInfo, pid) == 16);
    assert!(size_of::<ffi::RLimit>() == 16 && offset_of!(ffi::RLimit, max) == 8);
    assert!(size_of::<ffi::SigSet>() == 128);
    // The kernel's uapi header packs `struct epoll_event` on x86_64 only.
    let packed = cfg!(target_arch = "x86_64");
    assert!(size_of::<ffi::EpollEvent>() == if packed { 12 } else { 16 });
    assert!(offset_of!(ffi::EpollEvent, data) == if packed { 4 } else { 8 });
};

/// The signals `forward_signals` may take over: a child puts them (and
/// SIGPIPE, which std ignores) back to their default before it execs.
const FORWARDABLE: [i32; 4] = [SIGHUP, SIGINT, SIGTERM, SIGUSR1];
const CLONE_VM: c_int = 0x100;
const CLONE_VFORK: c_int = 0x4000;
const F_SETFD: i32 = 2;
/// The raw system calls that change a process's ids: glibc's wrappers would
/// also change them in every thread of the server (which shares memory
/// with the child until it execs).
#[cfg(target_arch = "x86_64")]
const SYS_SET_IDS: [i64; 3] = [116, 106, 105]; // setgroups, setgid, setuid
#[cfg(target_arch = "aarch64")]
const SYS_SET_IDS: [i64; 3] = [159, 144, 146];
/// Bytes of stack for a child between clone and exec.
const CHILD_STACK: usize = 64 * 1024;
/// `pidfd_open` has the same number on every Linux architecture (the unified table).
const SYS_PIDFD_OPEN: i64 = 434;

/// One entry of a poll set: which descriptor, which events, which happened.
#[repr(transparent)]
pub struct PollFd(ffi::PollFd);

impl PollFd {
    pub fn new(fd: RawFd, events: i16) -> PollFd {
        PollFd(ffi::PollFd {
            fd,
            events,
            revents: 0,
        })
    }

    /// The events that happened, after `poll`.
    pub fn revents(&self) -> i16 {
        self.0.revents
    }

    /// True if the descriptor is readable, or closed, or in error: a read will not block.
    pub fn ready(&self) -> bool {
        self.0.revents != 0
    }
}

/// Waits until one of `fds` is ready or `timeout` passes (`None`: no timeout).
/// Returns how many are ready; an interrupted wait returns 0.
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = match timeout {
        None => -1,
        // Round up so a deadline 0.3 ms away does not spin with a 0 ms timeout.
        Some(t) => i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
    };
    // SAFETY: `PollFd` is `repr(transparent)` over `ffi::PollFd`, which is
    // `repr(C)` with the kernel's `struct pollfd` layout; the pointer and the
    // length come from one live, exclusively borrowed slice.
    let n = unsafe { ffi::poll(fds.as_mut_ptr().cast(), fds.len() as u64, ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Sends `signal` to every process in the group `pgid` (a child started with
/// `process_group(0)` leads a group whose id is its pid).
pub fn kill_group(pgid: u32, signal: i32) -> io::Result<()> {
    let pgid = i32::try_from(pgid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if pgid <= 1 {
        // kill(-1) would signal every process we may signal; kill(0) our own group.
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill takes plain integers; a negative pid names a process group.
    if unsafe { ffi::kill(-pgid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A descriptor that becomes readable when the process `pid` exits (Linux 5.3+).
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: the syscall takes a pid and flags (0) and returns a new
    // descriptor or -1; it reads and writes no memory of ours.
    let fd = unsafe {
        ffi::syscall(
            SYS_PIDFD_OPEN,
            pid as std::ffi::c_long,
            0 as std::ffi::c_long,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An epoll set: the descriptors it watches cost nothing to wait on; a
/// look at it costs what is ready, not what is watched.
pub struct Epoll {
    fd: OwnedFd,
}

const EPOLLIN: u32 = 0x001;
const EPOLLOUT: u32 = 0x004;
const EPOLLONESHOT: u32 = 1 << 30;

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        const EPOLL_CLOEXEC: c_int = 0o2_000_000;
        // SAFETY: epoll_create1 takes a flag and returns a new descriptor or -1.
        let fd = unsafe { ffi::epoll_create1(EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll {
            // SAFETY: the kernel just returned this descriptor; nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `fd` for reading, and for writing too if `write`: for one
    /// report (`EPOLLONESHOT`), then it is disarmed until `modify`. The
    /// kernel forgets it when the socket closes.
    pub fn add(&self, fd: RawFd, write: bool) -> io::Result<()> {
        self.ctl(1, fd, write)
    }

    /// Arms `fd`, watched already, again: for reading, and writing if `write`.
    pub fn modify(&self, fd: RawFd, write: bool) -> io::Result<()> {
        self.ctl(3, fd, write)
    }

    fn ctl(&self, op: c_int, fd: RawFd, write: bool) -> io::Result<()> {
        let mut event = ffi::EpollEvent {
            events: EPOLLONESHOT | if write { EPOLLIN | EPOLLOUT } else { EPOLLIN },
            data: u64::try_from(fd).unwrap_or(0),
        };
        // SAFETY: epoll_ctl reads one event from `event`, which lives across
        // the call; both descriptors are plain integers to the kernel.
        if unsafe { ffi::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The descriptors ready now (without waiting), into `ready`.
    pub fn ready(&self, ready: &mut Vec<RawFd>) {
        ready.clear();
        let mut events = [ffi::EpollEvent { events: 0, data: 0 }; 64];
        let max = c_int::try_from(events.len()).unwrap_or(c_int::MAX);
        // SAFETY: epoll_wait writes at most `max` events into `events`, a
        // buffer of that many; timeout 0 returns at once.
        let n = unsafe { ffi::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, 0) };
        let n = usize::try_from(n).unwrap_or(0);
        ready.extend(
            events
                .iter()
                .take(n)
                .filter_map(|e| RawFd::try_from(e.data).ok()),
        );
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Makes a pipe or socket descriptor non-blocking.
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL takes no third argument and only reads the descriptor's flags.
    let flags = unsafe { ffi::fcntl(fd, F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL takes an int argument; the borrow keeps `fd` open.
    if unsafe { ffi::fcntl(fd, F_SETFL, flags | O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the soft limit on open files to the hard limit, so the configured
/// bounds (readers, queue, writers) are not cut short by a default of 1024.
/// Returns the soft limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = ffi::RLimit { cur: 0, max: 0 };
    // SAFETY: `lim` is a valid, writable `struct rlimit` for the call's duration.
    if unsafe { ffi::getrlimit(RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.cur < lim.max {
        let raised = ffi::RLimit {
            cur: lim.max,
            max: lim.max,
        };
        // SAFETY: `raised` is a valid `struct rlimit`, only read by the call.
        if unsafe { ffi::setrlimit(RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(raised.cur);
    }
    Ok(lim.cur)
}

/// Marks every descriptor above stderr that this process inherited as
/// close-on-exec, so that programs get 0, 1 and 2 and nothing else (std
/// opens the server's own descriptors close-on-exec already). Call it
/// first, before other threads start.
pub fn close_inherited_on_exec() -> io::Result<()> {
    const F_GETFD: c_int = 1;
    const F_SETFD: c_int = 2;
    const FD_CLOEXEC: c_int = 1;
    let fds: Vec<c_int> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD and F_SETFD take and return plain integers; a
        // descriptor closed meanwhile (the listing's own) fails with EBADF.
        unsafe {
            let flags = ffi::fcntl(fd, F_GETFD);
            if flags >= 0 {
                ffi::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// Large buffers (request bodies, program output, answers) are mapped, and
/// unmapped when freed, always: glibc would otherwise raise its threshold
/// for mapping after the first large free, and then keep freed buffers in
/// its heaps, so the process's memory grew past the caps that count them.
pub fn return_large_frees() {
    /// glibc's `M_MMAP_THRESHOLD` (musl has no such knob and always maps).
    const M_MMAP_THRESHOLD: c_int = -3;
    // SAFETY: mallopt takes two integers and touches only the allocator's
    // settings; it is called once, at start, before any large allocation.
    unsafe { ffi::mallopt(M_MMAP_THRESHOLD, 128 * 1024) };
}

/// Makes this process the reaper of its programs' orphans: a grandchild whose
/// parent died becomes our child, so it can be killed with its group and
/// reaped instead of running on unseen.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument; the unused
    // ones are zero as prctl(2) asks.
    if unsafe { ffi::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for every child of ours in process group `pgid` to end (after the
/// group was killed). Returns at once if we have none there.
pub fn reap_group(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid, writable int for the call's duration.
        let r = unsafe { ffi::waitpid(-pgid, &mut status, 0) };
        if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return; // ECHILD: none left
        }
    }
}

/// Reaps the children that have already ended and are not `owned` (orphans
/// adopted from a program that left its group). Stops at the first ended
/// child that is owned: its owner reaps it, and the rest wait for the next
/// call. Never blocks.
pub fn reap_orphans(owned: impl Fn(u32) -> bool) {
    loop {
        let mut info = ffi::SigInfo {
            signo: 0,
            errno: 0,
            code: 0,
            pad: 0,
            pid: 0,
            rest: [0; 108],
        };
        // SAFETY: `info` is a valid, writable `siginfo_t` (128 bytes);
        // WNOWAIT leaves the child as it is, WNOHANG returns at once.
        let r = unsafe { ffi::waitid(P_ALL, 0, &mut info, WEXITED | WNOHANG | WNOWAIT) };
        let Ok(pid) = u32::try_from(info.pid) else {
            return;
        };
        if r != 0 || pid == 0 || owned(pid) {
            return;
        }
        let mut status = 0;
        // SAFETY: `status` is a valid, writable int; the pid is a child
        // that has ended, so the call does not wait.
        unsafe { ffi::waitpid(info.pid, &mut status, WNOHANG) };
    }
}

/// Limits a program gets before it starts (each `None` leaves the server's own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChildLimits {
    /// Address space in bytes (RLIMIT_AS).
    pub memory: Option<u64>,
    /// CPU seconds (RLIMIT_CPU): SIGXCPU at the limit, SIGKILL a second later.
    pub cpu: Option<u64>,
    /// Open files (RLIMIT_NOFILE).
    pub open_files: Option<u64>,
    /// Processes of the program's user (RLIMIT_NPROC).
    pub processes: Option<u64>,
    /// Scheduling niceness, -20..=19.
    pub nice: Option<i32>,
}

/// A program to start, everything prepared: the child, which shares the
/// server's memory until it execs, only reads this and makes system calls.
pub struct Program<'a> {
    /// The file to execute (a name without a slash is not searched for).
    pub path: &'a CStr,
    pub argv: &'a [CString],
    /// The whole environment, `NAME=VALUE` each.
    pub env: &'a [CString],
    /// Become stdin, stdout and stderr.
    pub stdio: [BorrowedFd<'a>; 3],
    pub dir: Option<&'a CStr>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub limits: ChildLimits,
    /// A cgroup's `cgroup.procs`: the child moves itself there first.
    pub cgroup: Option<BorrowedFd<'a>>,
}

/// What the child reads (all of it set before the clone) and the one thing
/// it writes: the errno of the step that failed.
struct ChildArgs<'a> {
    program: &'a Program<'a>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    parent: c_int,
    error: AtomicI32,
}

/// Starts `program` in a process group of its own, with its limits, its
/// ids, its directory and a parent-death signal (SIGKILL: if the server
/// dies, so does the program). Returns its pid once it has exec'd; an error
/// if it could not (the errno of the step that failed, the child reaped).
pub fn spawn(program: &Program) -> io::Result<u32> {
    let nulled = |strings: &[CString]| -> Vec<*const c_char> {
        strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let args = ChildArgs {
        program,
        argv: nulled(program.argv),
        envp: nulled(program.env),
        // SAFETY: getpid takes nothing and cannot fail.
        parent: unsafe { ffi::getpid() },
        error: AtomicI32::new(0),
    };
    let mut stack = vec![0u8; CHILD_STACK];
    // The stack grows down: the child starts at its 16-byte aligned top.
    let top = stack.as_mut_ptr().wrapping_add(CHILD_STACK);
    let top = top.wrapping_sub(top as usize % 16);
    // SAFETY: PR_GET_DUMPABLE takes no argument (the rest are zero).
    let dumpable = unsafe { ffi::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) };
    let all = ffi::SigSet([u64::MAX; 16]);
    let mut old = ffi::SigSet([0; 16]);
    // SAFETY: both sets are valid `sigset_t`s for the call. With every
    // signal blocked (glibc keeps its own two, 32 and 33, which the server
    // never gets: it neither cancels threads nor calls glibc's setuid), no
    // handler of the server runs in the child before it has put the
    // default ones back.
    if unsafe { ffi::pthread_sigmask(SIG_SETMASK, &all, &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `child` only reads `args` (alive, unchanged, on this thread's
    // stack: CLONE_VFORK suspends this thread until the child has exec'd or
    // exited), writes only its atomic `error`, runs on `stack` (alive until
    // then too) and makes only async-signal-safe system calls: no lock, no
    // allocation, nothing that touches the server's threads.
    let pid = unsafe {
        ffi::clone(
            child,
            top.cast(),
            CLONE_VM | CLONE_VFORK | SIGCHLD,
            (&args as *const ChildArgs).cast_mut().cast(),
        )
    };
    let cloned = io::Error::last_os_error();
    // SAFETY: `old` is the mask saved above, only read.
    unsafe { ffi::pthread_sigmask(SIG_SETMASK, &old, std::ptr::null_mut()) };
    drop(stack);
    if dumpable >= 0 && (program.uid.is_some() || program.gid.is_some()) {
        // The child changed its ids while it shared the server's memory,
        // and the kernel marked that memory not dumpable: undo it, or the
        // server would leave no core dump and its /proc files would be
        // root's alone.
        // SAFETY: PR_SET_DUMPABLE takes one integer; the rest are zero.
        unsafe { ffi::prctl(PR_SET_DUMPABLE, dumpable as u64, 0, 0, 0) };
    }
    let pid = u32::try_from(pid).map_err(|_| cloned)?;
    match args.error.load(Relaxed) {
        0 => Ok(pid),
        errno => {
            let _ = wait(pid, Wait::UntilEnded);
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// The child, between clone and exec, in the order of std's `Command`
/// (whose `pre_exec` hook set the death signal and limits last): default
/// signal handlers back, its cgroup, stdio, ids, directory, group, the death signal
/// (after the ids: changing them clears it), limits, an empty signal mask,
/// exec. On failure, the errno goes to the parent and the child exits 127.
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `ChildArgs` the suspended parent keeps alive.
    let args = unsafe { &*arg.cast::<ChildArgs>().cast_const() };
    let program = args.program;
    let check = |r: c_int| {
        if r < 0 {
            child_failed(args, &io::Error::last_os_error());
        }
    };
    // Every call below is an async-signal-safe system call wrapper, given
    // integers or pointers into `args`, which stay valid until exec.
    // Still blocked: no handler of the server's can run from here on.
    for sig in FORWARDABLE.into_iter().chain([SIGPIPE]) {
        // SAFETY: SIG_DFL (0) is no function to call: only the default action.
        unsafe { ffi::signal(sig, SIG_DFL) };
    }
    // Into its cgroup before anything else, while it still has the
    // server's ids: all it will ever start is in there too.
    if let Some(procs) = program.cgroup {
        // SAFETY: writes one byte from a static string to a descriptor
        // `args` keeps open.
        check(unsafe { ffi::write(procs.as_raw_fd(), b"0".as_ptr(), 1) } as c_int);
    }
    for (target, fd) in (0..).zip(&program.stdio) {
        let fd = fd.as_raw_fd();
        // dup2 onto itself would keep close-on-exec: clear it instead.
        // SAFETY: both take descriptors (`args` keeps `fd` open) and integers.
        check(unsafe {
            if fd == target {
                ffi::fcntl(fd, F_SETFD, 0)
            } else {
                ffi::dup2(fd, target)
            }
        });
    }
    set_ids(args, &check);
    if let Some(dir) = program.dir {
        // SAFETY: `dir` is a NUL-terminated string in `args`, only read.
        check(unsafe { ffi::chdir(dir.as_ptr()) });
    }
    // SAFETY: setpgid and prctl(PR_SET_PDEATHSIG) take integers only.
    check(unsafe { ffi::setpgid(0, 0) });
    // SAFETY: as above.
    check(unsafe { ffi::prctl(PR_SET_PDEATHSIG, SIGKILL as u64, 0, 0, 0) });
    // The server may have died before the line above: no signal then.
    // SAFETY: getppid takes nothing and reads nothing of ours.
    if unsafe { ffi::getppid() } != args.parent {
        // SAFETY: _exit ends the child at once, running nothing of the server's.
        unsafe { ffi::_exit(127) };
    }
    if let Err(e) = apply_limits(program.limits) {
        child_failed(args, &e);
    }
    // SAFETY: as above.
    unsafe {
        check(ffi::sigprocmask(
            SIG_SETMASK,
            &ffi::SigSet([0; 16]),
            std::ptr::null_mut(),
        ));
        ffi::execve(
            program.path.as_ptr(),
            args.argv.as_ptr(),
            args.envp.as_ptr(),
        );
    }
    child_failed(args, &io::Error::last_os_error())
}

/// The child's groups, group and user, by raw system calls (see
/// `SYS_SET_IDS`): the supplementary groups are dropped when a user is set,
/// as std does (without CAP_SETGID that fails, EPERM, and they stay, as in std).
fn set_ids(args: &ChildArgs, check: &impl Fn(c_int)) {
    let program = args.program;
    let [setgroups, setgid, setuid] = SYS_SET_IDS;
    if program.uid.is_some() {
        // SAFETY: setgroups(0, NULL) reads no list.
        let r = unsafe { ffi::syscall(setgroups, 0 as std::ffi::c_long, 0 as std::ffi::c_long) };
        if r != 0 && io::Error::last_os_error().raw_os_error() != Some(EPERM) {
            child_failed(args, &io::Error::last_os_error());
        }
    }
    if let Some(gid) = program.gid {
        // SAFETY: setgid takes an integer.
        check(unsafe { ffi::syscall(setgid, std::ffi::c_long::from(gid)) } as c_int);
    }
    if let Some(uid) = program.uid {
        // SAFETY: setuid takes an integer.
        check(unsafe { ffi::syscall(setuid, std::ffi::c_long::from(uid)) } as c_int);
    }
}

/// Tells the parent what failed, and ends the child.
fn child_failed(args: &ChildArgs, e: &io::Error) -> ! {
    args.error
        .store(e.raw_os_error().unwrap_or(EINVAL).max(1), Relaxed);
    // SAFETY: _exit ends this process (the child) at once, running nothing
    // of the server's (no atexit handlers, no buffers flushed).
    unsafe { ffi::_exit(127) }
}

/// Sets `limits` on this process (the child, before exec).
fn apply_limits(limits: ChildLimits) -> io::Result<()> {
    let set = |resource: i32, soft: u64, hard: u64| -> io::Result<()> {
        let lim = ffi::RLimit {
            cur: soft,
            max: hard,
        };
        // SAFETY: `lim` is a valid `struct rlimit`, only read by the call.
        if unsafe { ffi::setrlimit(resource, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    if let Some(bytes) = limits.memory {
        set(RLIMIT_AS, bytes, bytes)?;
    }
    if let Some(secs) = limits.cpu {
        set(RLIMIT_CPU, secs, secs.saturating_add(1))?;
    }
    if let Some(n) = limits.open_files {
        set(RLIMIT_NOFILE, n, n)?;
    }
    if let Some(n) = limits.processes {
        set(RLIMIT_NPROC, n, n)?;
    }
    if let Some(nice) = limits.nice {
        // SAFETY: setpriority takes plain integers; who = 0 is this process.
        if unsafe { ffi::setpriority(PRIO_PROCESS, 0, nice) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// How `wait` waits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Until the child has ended.
    UntilEnded,
    /// Not at all: None if it has not ended yet.
    IfEnded,
}

/// The exit status of our child `pid`, once it has ended (see `Wait`).
pub fn wait(pid: u32, how: Wait) -> io::Result<Option<ExitStatus>> {
    let pid = i32::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut status = 0;
    loop {
        let options = match how {
            Wait::UntilEnded => 0,
            Wait::IfEnded => WNOHANG,
        };
        // SAFETY: `status` is a valid, writable int for the call's duration.
        let r = unsafe { ffi::waitpid(pid, &mut status, options) };
        if r > 0 {
            return Ok(Some(ExitStatus::from_raw(status)));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The write end of the signal pipe, for `on_signal` (-1 until set).
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

/// The signal handler: writes the signal's number, one byte, to the pipe.
/// Nothing else: write(2) is async-signal-safe, and errno is kept as it was.
extern "C" fn on_signal(sig: i32) {
    let fd = SIGNAL_PIPE.load(Relaxed);
    if fd < 0 {
        return;
    }
    let byte = u8::try_from(sig).unwrap_or(0);
    // SAFETY: `__errno_location` returns this thread's errno, valid for the
    // thread's life; `byte` lives across the one-byte write; a full pipe
    // (non-blocking) fails the write harmlessly.
    unsafe {
        let errno = ffi::__errno_location();
        let saved = *errno;
        ffi::write(fd, &byte, 1);
        *errno = saved;
    }
}

/// Makes each of `signals` write its number to a pipe instead of its default
/// action, and returns the pipe's read end: a thread reads one byte per
/// signal. Call once; the write end stays open for the life of the process.
/// Only the `FORWARDABLE` ones may be forwarded.
pub fn forward_signals(signals: &[i32]) -> io::Result<PipeReader> {
    if !signals.iter().all(|s| FORWARDABLE.contains(s)) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let (reader, writer) = std::io::pipe()?;
    set_nonblocking(&writer)?;
    SIGNAL_PIPE.store(writer.into_raw_fd(), Relaxed);
    for &sig in signals {
        // SAFETY: `on_signal` is an `extern "C" fn(c_int)` that only calls
        // async-signal-safe functions; the glibc and musl `signal` give it
        // BSD semantics (stays installed, interrupted calls restart).
        if unsafe { ffi::signal(sig, on_signal as extern "C" fn(c_int) as usize) } == SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(reader)
}

/// Tunes a listening socket: the kernel holds each new connection until its
/// first bytes (or its close) arrive, for up to about `seconds`
/// (TCP_DEFER_ACCEPT: one that stays silent costs the server nothing
/// meanwhile), and the connections it accepts send without delay
/// (TCP_NODELAY, which they inherit: no call per connection).
pub fn tune_listener(listener: &impl AsRawFd, seconds: u32) -> io::Result<()> {
    const TCP_NODELAY: c_int = 1;
    const TCP_DEFER_ACCEPT: c_int = 9;
    let seconds = c_int::try_from(seconds).unwrap_or(c_int::MAX);
    for (option, value) in [(TCP_DEFER_ACCEPT, seconds), (TCP_NODELAY, 1)] {
        const IPPROTO_TCP: c_int = 6;
        // SAFETY: setsockopt reads `len` (4) bytes at `value`, a live c_int;
        // the descriptor is kept open by the borrow.
        let done = unsafe { ffi::setsockopt(listener.as_raw_fd(), IPPROTO_TCP, option, &value, 4) };
        if done != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// True if the peer closed the connection without sending a byte: a look
/// that neither blocks nor takes anything (MSG_PEEK | MSG_DONTWAIT).
pub fn closed_unread(socket: &impl AsRawFd) -> bool {
    const MSG_PEEK: c_int = 0x2;
    const MSG_DONTWAIT: c_int = 0x40;
    let mut byte = 0u8;
    // SAFETY: recv writes at most `len` (1) byte into `byte`, which lives
    // across the call; the descriptor is kept open by the borrow.
    let n = unsafe { ffi::recv(socket.as_raw_fd(), &mut byte, 1, MSG_PEEK | MSG_DONTWAIT) };
    n == 0
}

/// Shuts a listening socket down: a thread blocked in `accept` on it wakes
/// with an error, and the kernel refuses new connections to it.
pub fn shutdown(socket: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: shutdown takes a descriptor (kept open by the borrow) and a flag.
    if unsafe { ffi::shutdown(socket.as_raw_fd(), SHUT_RDWR) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
