//! A cgroup (v2) per program, so that nothing a program starts outlives its
//! request, however it detaches (`setsid`, a double fork, `nohup`): when the
//! program's `Group` ends, its whole cgroup is killed (`cgroup.kill`). A
//! process group cannot promise that (a program may leave it), and the
//! subreaper only adopts, it cannot tell whose descendant is whose; a cgroup
//! knows, so with several handlers only the finished program's are killed.
//!
//! Owns: the cgroup the server makes for its programs, `fiddler_crab-PID`
//! under its own, and one child cgroup per program in it; at exit, all of
//! them. Must never: move the server itself, or touch a cgroup it did not
//! make (but those of a server of the same name that died: `init` ends
//! them).
//!
//! Where there is no writable cgroup v2 (a container without delegation,
//! an unprivileged user without `Delegate=yes`), there are none: the
//! process group and the subreaper alone bound a program, and `init` says
//! so, once, in the log.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Where the programs' cgroups are made (None: nowhere, see above).
static BASE: OnceLock<Option<PathBuf>> = OnceLock::new();
const PREFIX: &str = "fiddler_crab-";

/// Makes the server's cgroup for programs, and ends those left by servers
/// that died. Err says why programs will have none.
pub fn init() -> Result<(), String> {
    let made = make_base();
    let result = made.as_ref().map(|_| ()).map_err(Clone::clone);
    let _ = BASE.set(made.ok());
    result
}

fn make_base() -> Result<PathBuf, String> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT … " - " FSTYPE …
    let mount = mounts
        .lines()
        .find(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|t| t.starts_with("cgroup2 "))
        })
        .and_then(|l| l.split(' ').nth(4))
        .ok_or("no cgroup v2 is mounted")?;
    let own = fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("the server is in no cgroup v2")?;
    let parent = Path::new(mount).join(own.trim_start_matches('/'));
    end_leftovers(&parent);
    let base = parent.join(format!("{PREFIX}{}", std::process::id()));
    fs::create_dir(&base).map_err(|e| format!("cannot make the cgroup {}: {e}", base.display()))?;
    if !base.join("cgroup.kill").exists() {
        let _ = fs::remove_dir(&base);
        return Err("cgroup.kill needs Linux 5.14".into());
    }
    Ok(base)
}

/// Ends the programs of servers that died without ending them.
fn end_leftovers(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix(PREFIX));
        if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
            end(&entry.path());
        }
    }
}

/// Kills every process in the cgroup at `dir` and those below it, waits
/// (briefly) until they are gone, and removes the cgroups.
fn end(dir: &Path) {
    let _ = fs::write(dir.join("cgroup.kill"), "1");
    let by = Instant::now() + Duration::from_secs(2);
    while populated(dir) && Instant::now() < by {
        std::thread::sleep(Duration::from_millis(1));
    }
    if let Ok(children) = fs::read_dir(dir) {
        for child in children.flatten().filter(|c| c.path().is_dir()) {
            let _ = fs::remove_dir(child.path());
        }
    }
    let _ = fs::remove_dir(dir);
}

fn populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .map(|events| events.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// At exit: ends every program's cgroup, and the server's.
pub fn end_all() {
    if let Some(Some(base)) = BASE.get() {
        end(base);
    }
}

/// One program's cgroup: the program moves itself into it before it execs
/// (writing to `procs`), so all it starts is in it too; dropped, every
/// process in it is killed and it is removed.
pub struct Cgroup {
    dir: PathBuf,
    /// Its `cgroup.procs`, open for the program to write "0" to.
    pub procs: File,
}

impl Cgroup {
    /// A new cgroup for a program, if the server has somewhere to make it.
    pub fn new() -> Option<Cgroup> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = BASE.get()?.as_ref()?;
        let dir = base.join(NEXT.fetch_add(1, Relaxed).to_string());
        fs::create_dir(&dir).ok()?;
        match OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
        {
            Ok(procs) => Some(Cgroup { dir, procs }),
            Err(_) => {
                let _ = fs::remove_dir(&dir);
                None
            }
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        end(&self.dir);
    }
}
