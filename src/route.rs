//! Routes: which program answers which method and path, and how a request
//! path is matched against them.
//!
//! Owns: the route table (immutable once built) and the matching rules:
//! an exact path beats a prefix (`/x/*`), a longer prefix beats a shorter one,
//! `ANY` matches every method, a GET route answers HEAD too; and a route's
//! settings: its program's `Sandbox`, its warm `Worker`, its base
//! environment.
//! Must never: run anything or touch a socket.

use crate::breaker::Breaker;
use crate::http::Method;
use crate::metrics::RouteStats;
use crate::search;
use crate::sys::ChildLimits;
use crate::template::{Arg, Dashes, Missing};
use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodRule {
    Any,
    Only(Method),
}

impl MethodRule {
    pub fn as_str(self) -> &'static str {
        match self {
            MethodRule::Any => "ANY",
            MethodRule::Only(m) => m.as_str(),
        }
    }

    fn allows(self, m: Method) -> bool {
        match self {
            MethodRule::Any => true,
            MethodRule::Only(only) => only == m || (only == Method::Get && m == Method::Head),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRule {
    Exact(String),
    /// `/x/*`, kept as `/x` (`/*` as the empty prefix): matches `/x` and `/x/…`.
    Prefix(String),
}

impl PathRule {
    /// A path as written in the config: visible ASCII (so it needs no
    /// escaping in a log, a label or JSON), no query, at most one `*`, last.
    pub fn parse(pattern: &str) -> Option<PathRule> {
        let visible = |b: u8| b.is_ascii_graphic() && !b"\"\\?#".contains(&b);
        if !pattern.starts_with('/') || !pattern.bytes().all(visible) {
            return None;
        }
        match pattern.strip_suffix("/*") {
            Some(prefix) if !prefix.contains('*') => Some(PathRule::Prefix(prefix.to_owned())),
            Some(_) => None,
            None if pattern.contains('*') => None,
            None => Some(PathRule::Exact(pattern.to_owned())),
        }
    }

    /// For a matching path: (SCRIPT_NAME, PATH_INFO) and how specific the match is.
    fn split<'p>(&self, path: &'p str) -> Option<(&'p str, &'p str, usize)> {
        match self {
            PathRule::Exact(p) => (p == path).then_some((path, "", usize::MAX)),
            PathRule::Prefix(p) => {
                let rest = path.strip_prefix(p.as_str())?;
                (rest.is_empty() || rest.starts_with('/')).then(|| {
                    let (script, info) = path.split_at(p.len());
                    (script, info, p.len())
                })
            }
        }
    }
}

#[derive(Debug)]
pub struct Route {
    pub method: MethodRule,
    pub path: PathRule,
    /// The path as written in the config, for logs and the index.
    pub pattern: String,
    /// Program and arguments as written (for logs and the index).
    pub command: Vec<String>,
    /// The same as templates, filled per request; run directly, never
    /// through a shell.
    pub args: Vec<Arg>,
    /// What a missing `{query.…}`/`{header.…}` becomes.
    pub missing: Missing,
    /// Whether a request's value may begin an argument with `-`.
    pub dashes: Dashes,
    /// Longest filled argument, in bytes (400 beyond it).
    pub max_arg: usize,
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL when a program is stopped.
    pub kill_grace: Duration,
    /// Stop the program when its client leaves.
    pub cancel_on_disconnect: bool,
    pub sandbox: Sandbox,
    /// CGI mode: stdout starts with a header block (RFC 3875 §6).
    pub cgi: bool,
    /// Send stdout to the client as it comes (chunked), not at the end.
    pub stream: bool,
    pub breaker: Breaker,
    pub stats: Arc<RouteStats>,
    /// A warm worker serves the route (`worker = true` or `"http"`).
    pub worker: Option<Worker>,
    /// A framed worker is asked to stop a request whose client left or
    /// whose deadline passed, and kept if it does within this.
    pub cancel_grace: Option<Duration>,
    /// The bearer token a request must carry (`token_env`), if any.
    pub token: Option<Token>,
    /// Added to the clean environment (which holds only PATH otherwise).
    pub env: Vec<(OsString, OsString)>,
    /// Most bytes of stdout kept; beyond it the program is killed and 502 answered.
    pub max_output: usize,
    pub content_type: String,
    /// Put the reason in the body of a 4xx/5xx the server answers for the
    /// route (`explain`): what was missing, how the program failed, the end
    /// of its stderr. Off: the client learns only the status.
    pub explain: bool,
    /// Statuses for a program's exit codes (`exit_status = { 2 = 400 }`):
    /// a program that says the request was bad is not a failing one.
    pub exit_statuses: Vec<(i32, u16)>,
}

impl Route {
    /// The environment of the route's program before any request: PATH and
    /// the route's own variables (what a warm worker starts with).
    pub fn base_environment(&self) -> Vec<(OsString, OsString)> {
        let mut env = vec![(OsString::from("PATH"), search::server_path())];
        env.extend(self.env.iter().cloned());
        env
    }

    /// The status the route gives a program's exit `code`, if it names one.
    pub fn status_for_exit(&self, code: i32) -> Option<u16> {
        self.exit_statuses
            .iter()
            .find(|&&(c, _)| c == code)
            .map(|&(_, status)| status)
    }

    /// Why this route's program cannot run, as far as its files tell before
    /// any request: not in its PATH, not an executable file, or an
    /// interpreter's script that does not exist. None if it can, or if the
    /// name is filled in per request.
    pub fn program_problem(&self) -> Option<String> {
        let program = self.command.first()?;
        if !self.args.first()?.is_literal() {
            return None;
        }
        let env = self.base_environment();
        let dir = self.sandbox.dir.as_deref();
        match search::locate(OsStr::new(program), &env, dir) {
            Err(_) => Some(format!("`{program}` is not in its PATH")),
            Ok(path) if !search::executable(Path::new(&path), dir) => {
                Some(format!("`{program}` is not an executable file"))
            }
            Ok(_) => self.script_problem(program, dir),
        }
    }

    /// An interpreter (`python3`, `sh`, `node`…) whose first argument is
    /// not an option runs that file: if it does not exist, every request
    /// fails. Only this case is checked, as it can raise no false alarm
    /// (any other argument may name a file the program is to make).
    fn script_problem(&self, program: &str, dir: Option<&Path>) -> Option<String> {
        const INTERPRETERS: &str = "python sh bash dash zsh node perl ruby php lua Rscript";
        let name = program.rsplit('/').next().unwrap_or(program);
        let version = |rest: &str| rest.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let interpreter = INTERPRETERS
            .split_whitespace()
            .any(|i| name.strip_prefix(i).is_some_and(version));
        let script = self.command.get(1)?;
        if !interpreter || !self.args.get(1)?.is_literal() || script.starts_with('-') {
            return None;
        }
        let here = dir.unwrap_or(Path::new("."));
        (!here.join(script).exists())
            .then(|| format!("`{script}`, the script `{program}` is to run, does not exist"))
    }

    /// What the route runs, for the start-up lines and the index: its
    /// command, or the server it forwards to.
    pub fn runs(&self) -> String {
        match &self.worker {
            Some(Worker {
                speaks: Speaks::Http {
                    upstream: Some(at), ..
                },
                ..
            }) => format!("http://{at}"),
            _ => self.command.join(" "),
        }
    }

    /// True if `other` is for the same method and path (a reload of it).
    pub fn same_place(&self, other: &Route) -> bool {
        self.method == other.method && self.pattern == other.pattern
    }
}

/// A route's warm worker: how it takes requests, when it starts, and when
/// it is replaced by a fresh one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worker {
    pub speaks: Speaks,
    pub start: Start,
    /// Most time its start may take (an HTTP worker: until its `ready`
    /// probe answers 200), apart from each request's `timeout`.
    pub start_timeout: Duration,
    pub recycle: Recycle,
}

/// How requests reach a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Speaks {
    /// Frames on its stdin and stdout (`worker = true`).
    Frames,
    /// HTTP/1.1 over loopback (`worker = "http"`): a port chosen for it
    /// (`{port}` in its command), or a server someone else runs (`upstream`).
    Http {
        /// The path a GET of which answers 200 once it is ready.
        ready: String,
        upstream: Option<SocketAddr>,
    },
}

/// When a worker starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// With its handler; `/ready` is 503 until it is ready.
    Boot,
    /// At the route's first request.
    FirstRequest,
}

impl Worker {
    pub fn new(speaks: Speaks) -> Worker {
        Worker {
            speaks,
            start: Start::FirstRequest,
            start_timeout: Duration::from_secs(60),
            recycle: Recycle::default(),
        }
    }
}

/// When a worker is replaced by a fresh one although it did nothing wrong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recycle {
    /// After this many answers.
    pub max_requests: Option<u64>,
    /// Once its resident memory (VmRSS) passes this many bytes.
    pub max_memory: Option<u64>,
}

/// Where and as whom a program runs, and its resource limits.
#[derive(Clone, Debug, Default)]
pub struct Sandbox {
    pub limits: ChildLimits,
    pub dir: Option<PathBuf>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// A route's bearer token. Its `Debug` shows nothing of it.
pub struct Token(pub Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// True if `authorization` is `Bearer <this token>`. The bytes are
    /// compared in time that does not depend on where they differ.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(given) = authorization.and_then(|a| a.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let differ = given
            .iter()
            .zip(&self.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(differ) == 0 && given.len() == self.0.len()
    }
}

/// What the table says about one request.
pub enum Match<'a> {
    Run {
        route: &'a Arc<Route>,
        script_name: &'a str,
        path_info: &'a str,
    },
    /// 200 with the list of routes (the demo's `GET /`).
    Index,
    /// No route's path matches: 404.
    NotFound,
    /// The path matches, the method does not: 405 with this `Allow`.
    NotAllowed(String),
    /// OPTIONS with no route of its own: 204 with this `Allow`.
    Options(String),
}

pub struct Routes {
    pub list: Vec<Arc<Route>>,
    /// Serve the route list at `GET /` when no route claims it.
    pub index: bool,
}

impl Routes {
    pub fn find<'a>(&'a self, method: Method, path: &'a str) -> Match<'a> {
        if path == "*" {
            return Match::Options(allow_header(Method::ALL.into_iter()));
        }
        let best = self
            .list
            .iter()
            .filter_map(|r| r.path.split(path).map(|(s, i, rank)| (r, s, i, rank)))
            .max_by_key(|&(_, _, _, rank)| rank);
        let Some((_, _, _, rank)) = best else {
            return self.fallback(method, path);
        };
        let same_rank = || {
            self.list
                .iter()
                .filter_map(|r| r.path.split(path).map(|(s, i, k)| (r, s, i, k)))
                .filter(move |&(_, _, _, k)| k == rank)
        };
        // A route for this very method wins over one for ANY, wherever
        // each is listed.
        let specific =
            same_rank().find(|(r, ..)| r.method != MethodRule::Any && r.method.allows(method));
        if let Some((route, script_name, path_info, _)) =
            specific.or_else(|| same_rank().find(|(r, ..)| r.method.allows(method)))
        {
            return Match::Run {
                route,
                script_name,
                path_info,
            };
        }
        let allowed = Method::ALL
            .into_iter()
            .filter(|&m| m == Method::Options || same_rank().any(|(r, ..)| r.method.allows(m)));
        if method == Method::Options {
            Match::Options(allow_header(allowed))
        } else {
            Match::NotAllowed(allow_header(allowed))
        }
    }

    fn fallback(&self, method: Method, path: &str) -> Match<'_> {
        match (self.index && path == "/", method) {
            (true, Method::Get | Method::Head) => Match::Index,
            (true, Method::Options) => Match::Options("GET, HEAD, OPTIONS".into()),
            (true, _) => Match::NotAllowed("GET, HEAD, OPTIONS".into()),
            (false, _) => Match::NotFound,
        }
    }

    /// These routes, each keeping the counters of the route in `old` with
    /// the same method and path (a reload must not reset them).
    pub fn carry_over(mut self, old: &Routes) -> Routes {
        for route in &mut self.list {
            let same = old
                .list
                .iter()
                .find(|o| o.same_place(route))
                .map(|o| Arc::clone(&o.stats));
            if let (Some(stats), Some(route)) = (same, Arc::get_mut(route)) {
                route.stats = stats;
            }
        }
        self
    }

    /// The index page: one line per route.
    pub fn index_text(&self) -> String {
        let mut text = String::from("fiddler_crab routes:\n");
        for r in &self.list {
            let method = r.method.as_str();
            text.push_str(&format!("{method} {} -> {}\n", r.pattern, r.runs()));
        }
        text
    }
}

fn allow_header(methods: impl Iterator<Item = Method>) -> String {
    methods.map(Method::as_str).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: MethodRule, pattern: &str) -> Arc<Route> {
        Arc::new(Route {
            method,
            path: PathRule::parse(pattern).unwrap(),
            pattern: pattern.into(),
            command: vec![pattern.into()],
            args: vec![],
            missing: Missing::Reject,
            dashes: Dashes::Refuse,
            max_arg: 1,
            timeout: Duration::from_secs(1),
            kill_grace: Duration::from_secs(1),
            cancel_on_disconnect: true,
            sandbox: Sandbox::default(),
            cgi: false,
            stream: false,
            breaker: Breaker::new(0, Duration::ZERO),
            stats: Arc::default(),
            worker: None,
            cancel_grace: None,
            token: None,
            env: vec![],
            max_output: 1,
            content_type: String::new(),
            explain: false,
            exit_statuses: vec![],
        })
    }

    fn run(routes: &Routes, m: Method, path: &str) -> Option<(String, String, String)> {
        match routes.find(m, path) {
            Match::Run {
                route,
                script_name,
                path_info,
            } => Some((route.pattern.clone(), script_name.into(), path_info.into())),
            _ => None,
        }
    }

    /// The path decides first (an exact path over a prefix, a longer
    /// prefix over a shorter one); among the routes of that path, one for
    /// the request's own method wins over one for ANY, wherever each is.
    #[test]
    fn precedence() {
        use MethodRule::{Any, Only};
        let routes = Routes {
            list: vec![
                route(Any, "/x"),
                route(Only(Method::Get), "/x"),
                route(Any, "/p/*"),
                route(Only(Method::Post), "/p/q"),
            ],
            index: false,
        };
        let method_of = |m: Method, path: &str| match routes.find(m, path) {
            Match::Run { route, .. } => Some(route.method),
            _ => None,
        };
        assert_eq!(method_of(Method::Get, "/x"), Some(Only(Method::Get)));
        assert_eq!(method_of(Method::Head, "/x"), Some(Only(Method::Get)));
        assert_eq!(method_of(Method::Post, "/x"), Some(Any));
        assert_eq!(method_of(Method::Post, "/p/q"), Some(Only(Method::Post)));
        assert_eq!(method_of(Method::Get, "/p/r"), Some(Any));
        assert!(matches!(
            routes.find(Method::Get, "/p/q"),
            Match::NotAllowed(_)
        ));
    }

    #[test]
    fn matching() {
        let routes = Routes {
            list: vec![
                route(MethodRule::Only(Method::Post), "/echo"),
                route(MethodRule::Only(Method::Get), "/x/*"),
                route(MethodRule::Only(Method::Get), "/x/y/*"),
                route(MethodRule::Any, "/any"),
            ],
            index: false,
        };
        let t = |p: &str, s: &str, i: &str| Some((p.to_string(), s.to_string(), i.to_string()));
        assert_eq!(run(&routes, Method::Post, "/echo"), t("/echo", "/echo", ""));
        assert_eq!(run(&routes, Method::Get, "/x"), t("/x/*", "/x", ""));
        assert_eq!(
            run(&routes, Method::Head, "/x/a/b"),
            t("/x/*", "/x", "/a/b")
        );
        assert_eq!(
            run(&routes, Method::Get, "/x/y/z"),
            t("/x/y/*", "/x/y", "/z")
        );
        assert_eq!(run(&routes, Method::Delete, "/any"), t("/any", "/any", ""));
        assert!(matches!(routes.find(Method::Get, "/xy"), Match::NotFound));
        assert!(matches!(
            routes.find(Method::Get, "/echo/"),
            Match::NotFound
        ));
        match routes.find(Method::Get, "/echo") {
            Match::NotAllowed(allow) => assert_eq!(allow, "POST, OPTIONS"),
            _ => panic!("expected 405"),
        }
        match routes.find(Method::Options, "/x/q") {
            Match::Options(allow) => assert_eq!(allow, "GET, HEAD, OPTIONS"),
            _ => panic!("expected OPTIONS"),
        }
        let t = Token(b"s3cret".to_vec());
        assert!(t.admits(Some(b"Bearer s3cret")));
        for wrong in [
            &b"Bearer s3cre"[..],
            b"Bearer s3cret!",
            b"bearer s3cret",
            b"s3cret",
            b"",
        ] {
            assert!(!t.admits(Some(wrong)), "{wrong:?}");
        }
        assert!(!t.admits(None));
        assert_eq!(format!("{t:?}"), "Token(…)");
        assert!(PathRule::parse("/a*").is_none());
        assert!(PathRule::parse("/a b").is_none());
        assert!(PathRule::parse("/a\"").is_none());
        assert!(PathRule::parse("/é").is_none());
        assert!(PathRule::parse("a").is_none());
        assert_eq!(PathRule::parse("/*"), Some(PathRule::Prefix(String::new())));
    }
}
