//! Finding a program: the PATH every program gets (the server's own), and
//! the file a program's name stands for on a PATH.
//!
//! Owns nothing. Must never: run anything, or hand a name to a shell.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Used when the server itself has no PATH.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The PATH every program gets: the server's own.
pub fn server_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into())
}

/// The file to execute for `program`: itself if it names a path (a slash in
/// it), else the first file of that name with an execute bit in the
/// directories of the program's own PATH (glibc's default if it has none).
/// Unlike `execvp`, a file that then cannot be executed is not passed over
/// for the next one, and a file without `#!` is not given to `/bin/sh`: no
/// shell, ever. Relative paths are taken from `dir`, where it will run.
pub fn locate(
    program: &OsStr,
    env: &[(OsString, OsString)],
    dir: Option<&Path>,
) -> io::Result<OsString> {
    if program.as_bytes().contains(&b'/') {
        return Ok(program.to_owned());
    }
    let path = env
        .iter()
        .rfind(|(k, _)| k == "PATH")
        .map_or(OsStr::new("/bin:/usr/bin"), |(_, v)| v.as_os_str());
    for entry in std::env::split_paths(path) {
        let candidate = entry.join(program);
        if executable(&candidate, dir) {
            return Ok(candidate.into_os_string());
        }
    }
    Err(io::Error::new(io::ErrorKind::NotFound, "not in its PATH"))
}

/// True if `path` (taken from `dir` if relative) is a file someone may execute.
pub fn executable(path: &Path, dir: Option<&Path>) -> bool {
    std::fs::metadata(dir.unwrap_or(Path::new(".")).join(path))
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
