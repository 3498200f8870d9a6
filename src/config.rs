//! The configuration: defaults, then the file (`-c FILE`), then flags on top.
//!
//! Owns: every setting's name, default, range and meaning, and the help text.
//! Must never: exit, print, or panic. Every problem becomes a `ConfigError`
//! naming where it is (file and line, or flag) and what is wrong; `main`
//! prints it and exits with code 2.

use crate::breaker::Breaker;
use crate::cidr::Cidr;
use crate::http::Method;
use crate::immune::Policy;
use crate::light::{self, Thresholds};
use crate::log::LogFormat;
use crate::route::{MethodRule, PathRule, Route, Routes, Sandbox, Token};
use crate::route::{Recycle, Speaks, Start, Worker};
use crate::spelling::nearest;
use crate::template::{Arg, Dashes, Missing};
use crate::toml::{self, Table, Value};
use crate::transport::{Acceptor, TlsFile};
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// What `--on-full` says to do with a connection when the queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFull {
    /// Accept and close at once, reading nothing.
    Close,
    /// Accept, answer 503 with `Retry-After` unread (the gate writes it and
    /// drains the request that follows), close.
    ServiceUnavailable,
    /// Stop accepting until there is room; the kernel's backlog holds the rest.
    Backlog,
}

/// Most handlers a server may have: more than one is a deliberate choice
/// for a machine with room for a few programs at once.
pub const MAX_HANDLERS: u64 = 4;

/// How many handlers run programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handlers {
    /// This many, always.
    Fixed(usize),
    /// This many while the traffic light is green, one otherwise.
    Auto(usize),
}

impl Handlers {
    /// Handlers to start.
    pub fn count(self) -> usize {
        match self {
            Handlers::Fixed(n) | Handlers::Auto(n) => n,
        }
    }
}

pub struct Config {
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub queue: usize,
    pub on_full: OnFull,
    pub max_reading: usize,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// How long a connection waits for its next request (None: closed after
    /// each answer).
    pub keep_alive: Option<Duration>,
    pub max_body: u64,
    /// Most bytes of request bodies held at once, read or being read.
    pub body_memory: usize,
    pub answer_memory: usize,
    pub pace: Duration,
    /// After SIGTERM: how long held requests have to finish.
    pub drain_timeout: Duration,
    /// After SIGTERM, serve on this long with /ready 503 before draining.
    pub drain_delay: Duration,
    pub quiet: bool,
    pub log_format: LogFormat,
    /// Where the log goes (stderr if none); reopened on SIGHUP.
    pub log_file: Option<PathBuf>,
    /// Peers that may connect (empty: all).
    pub allow: Vec<Cidr>,
    /// Peers that may use the admin port (empty: all).
    pub admin_allow: Vec<Cidr>,
    pub immune: Policy,
    /// When the traffic light turns yellow and red (none: no light).
    pub light: Thresholds,
    pub handlers: Handlers,
    /// Serve TLS with this certificate (`tls_cert`, `tls_key`).
    pub tls: Option<Arc<Acceptor>>,
    pub handshake_timeout: Duration,
    pub routes: Routes,
    /// What is allowed but likely a mistake, for the log and `--check`.
    pub warnings: Vec<String>,
}

/// What the command line asks for.
pub enum Command {
    Run(Box<Config>),
    /// `--check`: validate the config and look for each route's program.
    Check(Box<Config>),
    Help,
    Version,
}

/// Where a setting came from, for error messages.
#[derive(Clone, Debug)]
pub enum Origin {
    File { path: PathBuf, line: usize },
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Flag(flag) => f.write_str(flag),
        }
    }
}

#[derive(Debug)]
pub struct ConfigError {
    pub origin: Option<Origin>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.origin {
            Some(origin) => write!(f, "{origin}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn fail<T>(origin: &Origin, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        origin: Some(origin.clone()),
        message: message.into(),
    })
}

const HELP: &str = "\
fiddler_crab: runs one program per HTTP request, one at a time, with a bounded queue.

usage: fiddler_crab [-c FILE] [OPTIONS] [--route 'METHOD PATH=COMMAND ARG…']…

  -c FILE                 config file (TOML subset); flags override it
  --listen ADDR           where to serve                     [127.0.0.1:8080]
  --admin ADDR|off        /health /ready /metrics /status    [127.0.0.1:8081]
  --queue N               most requests held, running included          [64]
  --on-full close|503|backlog   what a connection gets when full     [close]
  --timeout SECS          a program's deadline (504 after it)           [60]
  --max-reading N         most connections still sending a request     [256]
  --read-timeout SECS     the whole request must arrive within it       [10]
  --keep-alive SECS       keep a connection this long for its next
                          request (0: close after each answer)           [0]
  --max-body BYTES        largest request body (413 beyond it)      [1 MiB]
  --pace MS               pause of the handler between two programs      [0]
  --tls-cert FILE --tls-key FILE   serve HTTPS (PEM chain and key; a build
                          with --features https); reloaded on SIGHUP
  --handlers N|auto       programs at once, 1 to 4; auto: max_handlers
                          while the traffic light is green, else 1       [1]
  --drain-timeout SECS    after SIGTERM, time to finish held requests   [30]
  --drain-delay SECS      after SIGTERM, serve on this long with /ready
                          503 (for a load balancer to notice) first      [0]
  --log-file PATH         log here instead of stderr (reopened on SIGHUP)
  --log-format text|json  one line of text, or one JSON object, per event
  --route 'METHOD PATH=COMMAND ARG…'   a route; METHOD may be ANY; a PATH
                          ending in /* is a prefix; COMMAND is split on
                          whitespace and never given to a shell
  --cgi 'METHOD PATH=PROGRAM ARG…'     the same, for a CGI/1.1 program
  --worker 'METHOD PATH=PROGRAM ARG…'  the same, for a warm worker (README)
  --worker-http 'METHOD PATH=PROGRAM ARG… {port}'  the same, for a program
                          that serves HTTP on the port it is given
  --quiet                 no access log
  --explain               put the reason of a 4xx/5xx the server answers in
                          its body (a program's exit, its stderr's end)
  --check                 read the config, look for each route's program
                          (and an interpreter's script), and exit: 0 all
                          good, 1 a program cannot run, 2 a bad config
                          (FILE:LINE: what is wrong)
  --version, --help

Signals: SIGTERM or SIGINT drains (no new connection, held requests finish
within drain-timeout, then exit 0), a second one exits at once; SIGHUP
reopens the log file and reloads the routes from the config file.

With no route at all it serves a demo: POST /echo runs cat, GET / lists routes.
The config file's keys (README.md says what each does):";

const DEMO: &str = r#"
[[route]]
method = "POST"
path = "/echo"
command = ["cat"]
"#;

/// A route as read, before the global timeout is known.
struct RouteDraft {
    origin: Origin,
    route: Route,
    timeout: Option<Duration>,
    /// Where `max_output` was set (the route's own place if it was not).
    max_output_origin: Origin,
    explain: Option<bool>,
}

struct Builder {
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    queue: usize,
    on_full: OnFull,
    timeout: Duration,
    max_reading: usize,
    read_timeout: Duration,
    write_timeout: Duration,
    keep_alive: Option<Duration>,
    max_body: u64,
    body_memory: usize,
    /// Where `max_body` or `body_memory` was last set, for the error if they disagree.
    body_origin: Option<Origin>,
    answer_memory: usize,
    pace: Duration,
    drain_timeout: Duration,
    drain_delay: Duration,
    quiet: bool,
    log_format: LogFormat,
    log_file: Option<PathBuf>,
    allow: Vec<Cidr>,
    admin_allow: Vec<Cidr>,
    immune: Policy,
    light: Thresholds,
    handlers: Option<u64>,
    /// Where `handlers` was last set, for the error if `auto` has no traffic
    /// light to follow.
    handlers_origin: Option<Origin>,
    max_handlers: u64,
    tls_cert: Option<(PathBuf, Origin)>,
    tls_key: Option<(PathBuf, Origin)>,
    handshake_timeout: Duration,
    routes: Vec<RouteDraft>,
    warnings: Vec<String>,
    /// The default of the routes' `explain`.
    explain: bool,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 8081))),
            queue: 64,
            on_full: OnFull::Close,
            timeout: Duration::from_secs(60),
            max_reading: 256,
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            keep_alive: None,
            max_body: MIB,
            body_memory: 32 * MIB as usize,
            body_origin: None,
            answer_memory: 32 * MIB as usize,
            pace: Duration::ZERO,
            drain_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            quiet: false,
            log_format: LogFormat::Text,
            log_file: None,
            allow: Vec::new(),
            admin_allow: Vec::new(),
            immune: Policy {
                ban_after: 10,
                window: Duration::from_secs(60),
                ban_for: Duration::from_secs(60),
                // A proxy on the same host must never be banned: that would
                // ban everyone behind it.
                trusted: ["127.0.0.0/8", "::1"]
                    .iter()
                    .filter_map(|c| Cidr::parse(c))
                    .collect(),
            },
            light: Thresholds::default(),
            handlers: Some(1),
            handlers_origin: None,
            max_handlers: 2,
            tls_cert: None,
            tls_key: None,
            handshake_timeout: Duration::from_secs(5),
            routes: Vec::new(),
            warnings: Vec::new(),
            explain: false,
        }
    }
}

/// A value as given: typed from the file, or a string from a flag.
#[derive(Clone, Copy)]
enum Input<'a> {
    Toml(&'a Value),
    Flag(&'a str),
}

impl Input<'_> {
    fn string(self, origin: &Origin) -> Result<String, ConfigError> {
        match self {
            Input::Toml(Value::String(s)) => Ok(s.clone()),
            Input::Flag(s) => Ok(s.to_owned()),
            Input::Toml(v) => fail(origin, format!("expected a string, found {}", v.kind())),
        }
    }

    fn integer(self, origin: &Origin) -> Result<u64, ConfigError> {
        match self {
            Input::Toml(Value::Integer(n)) => u64::try_from(*n)
                .or_else(|_| fail(origin, format!("expected a number ≥ 0, found {n}"))),
            Input::Flag(s) => s
                .trim()
                .parse()
                .or_else(|_| fail(origin, format!("expected a whole number, found `{s}`"))),
            Input::Toml(v) => fail(origin, format!("expected an integer, found {}", v.kind())),
        }
    }

    fn boolean(self, origin: &Origin) -> Result<bool, ConfigError> {
        match self {
            Input::Toml(Value::Boolean(b)) => Ok(*b),
            Input::Flag("true") => Ok(true),
            Input::Flag("false") => Ok(false),
            Input::Flag(s) => fail(origin, format!("expected true or false, found `{s}`")),
            Input::Toml(v) => fail(
                origin,
                format!("expected true or false, found {}", v.kind()),
            ),
        }
    }

    fn strings(self, origin: &Origin) -> Result<Vec<String>, ConfigError> {
        match self {
            Input::Toml(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => fail(origin, format!("expected strings, found {}", other.kind())),
                })
                .collect(),
            Input::Flag(s) => Ok(s.split_whitespace().map(str::to_owned).collect()),
            Input::Toml(v) => fail(
                origin,
                format!("expected an array of strings, found {}", v.kind()),
            ),
        }
    }

    /// A number ≥ 0 that may have a fraction, in hundredths: `4` is 400,
    /// `"3.5"` is 350 (the config format has no floats).
    fn hundredths(self, origin: &Origin) -> Result<u64, ConfigError> {
        let n = match self {
            Input::Toml(Value::Integer(n)) => {
                u64::try_from(*n).ok().and_then(|n| n.checked_mul(100))
            }
            Input::Toml(Value::String(s)) => light::hundredths(s),
            Input::Flag(s) => light::hundredths(s),
            Input::Toml(v) => {
                return fail(origin, format!("expected a number, found {}", v.kind()));
            }
        };
        n.ok_or(())
            .or_else(|()| fail(origin, "expected a number ≥ 0 like 4 or \"3.5\""))
    }

    /// A whole number in `lo..=hi`.
    fn count(self, origin: &Origin, lo: u64, hi: u64) -> Result<u64, ConfigError> {
        let n = self.integer(origin)?;
        if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            fail(origin, format!("{n} is out of range {lo}..={hi}"))
        }
    }

    fn seconds(self, origin: &Origin) -> Result<Duration, ConfigError> {
        self.count(origin, 1, 7 * 24 * 3600)
            .map(Duration::from_secs)
    }

    /// Bytes: an integer, or a string like `"8M"` / `"512K"` / `"1G"` (powers of 1024).
    fn bytes(self, origin: &Origin, lo: u64, hi: u64) -> Result<u64, ConfigError> {
        let text = match self {
            Input::Toml(Value::String(s)) => Some(s.as_str()),
            Input::Flag(s) => Some(s),
            Input::Toml(_) => None,
        };
        let n = match text {
            Some(s) => parse_bytes(s).ok_or(()).or_else(|()| {
                fail(
                    origin,
                    format!("expected bytes like 1048576 or 1M, found `{s}`"),
                )
            })?,
            None => self.integer(origin)?,
        };
        if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            fail(origin, format!("{n} bytes is out of range {lo}..={hi}"))
        }
    }
}

fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let scale = match unit.trim().trim_end_matches(['i', 'B', 'b']) {
        "" => 1,
        "k" | "K" => KIB,
        "m" | "M" => MIB,
        "g" | "G" => 1024 * MIB,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// `127.0.0.1:8080`, `[::]:8080`, or `localhost:8080` (no other name is
/// looked up: a server's address should not depend on DNS at start-up).
fn address(s: &str, origin: &Origin) -> Result<SocketAddr, ConfigError> {
    let local = s
        .strip_prefix("localhost:")
        .map(|port| format!("127.0.0.1:{port}"));
    match local.as_deref().unwrap_or(s).parse() {
        Ok(addr) => Ok(addr),
        Err(_) => fail(
            origin,
            format!("`{s}` is not an address like 127.0.0.1:8080 or [::]:8080"),
        ),
    }
}

/// The global settings, as the file names them (flags are these with - for
/// _), for --help and suggestions: `Builder::set` decides what is known.
const SETTINGS: &str = "
  listen admin queue on_full timeout max_reading read_timeout write_timeout
  keep_alive max_body body_memory answer_memory pace drain_timeout drain_delay quiet
  explain log_format log_file allow admin_allow trusted ban_after ban_window
  ban_seconds memory_yellow memory_red load_yellow load_red handlers
  max_handlers tls_cert tls_key handshake_timeout";

/// A route's settings, for --help and suggestions: `route_from_table`
/// decides.
const ROUTE_SETTINGS: &str = "
  method path command ready upstream start start_timeout cancel_grace timeout
  max_output content_type explain exit_status missing max_arg allow_options
  kill_grace cancel_on_disconnect cgi stream breaker_failures
  breaker_cooldown token_env worker max_requests max_memory memory cpu
  open_files processes nice dir uid gid env";

/// The options that take a value.
const VALUE_FLAGS: &str = "\
    -c --config --listen --admin --queue --on-full --timeout --max-reading \
    --read-timeout --keep-alive --max-body --pace --route --cgi --drain-timeout --drain-delay \
    --log-file --log-format --handlers --tls-cert --tls-key --worker --worker-http";

/// The options that take none.
const BARE_FLAGS: &str = "-h --help -V --version --quiet --explain --check";

/// --help: the options, then the keys of the config file.
pub fn help() -> String {
    format!("{HELP}{SETTINGS}\nand in each [[route]] table:{ROUTE_SETTINGS}\n")
}

/// "unknown setting `queu` (did you mean `queue`?)".
fn unknown(what: &str, word: &str, known: &str) -> String {
    match nearest(word, known) {
        Some(near) => format!("unknown {what} `{word}` (did you mean `{near}`?)"),
        None => format!("unknown {what} `{word}`"),
    }
}

impl Builder {
    /// Sets one global key. Names are the file's (`max_reading`); flags map onto them.
    fn set(&mut self, key: &str, v: Input, origin: &Origin) -> Result<(), ConfigError> {
        const BIG: u64 = 1_000_000;
        match key {
            "listen" => self.listen = address(&v.string(origin)?, origin)?,
            "admin" => {
                let s = v.string(origin)?;
                self.admin = if s == "off" {
                    None
                } else {
                    Some(address(&s, origin)?)
                };
            }
            "queue" => self.queue = v.count(origin, 1, BIG)? as usize,
            "on_full" => {
                self.on_full = match v.string(origin)?.as_str() {
                    "close" => OnFull::Close,
                    "503" => OnFull::ServiceUnavailable,
                    "backlog" => OnFull::Backlog,
                    other => {
                        return fail(
                            origin,
                            format!("expected close, 503 or backlog, found `{other}`"),
                        );
                    }
                }
            }
            "timeout" => self.timeout = v.seconds(origin)?,
            "max_reading" => self.max_reading = v.count(origin, 1, BIG)? as usize,
            "read_timeout" => self.read_timeout = v.seconds(origin)?,
            "write_timeout" => self.write_timeout = v.seconds(origin)?,
            "keep_alive" => {
                let secs = v.count(origin, 0, 3600)?;
                self.keep_alive = (secs > 0).then(|| Duration::from_secs(secs));
            }
            "max_body" => {
                self.max_body = v.bytes(origin, 0, 64 * 1024 * MIB)?;
                self.body_origin = Some(origin.clone());
            }
            "body_memory" => {
                self.body_memory = v.bytes(origin, MIB, 64 * 1024 * MIB)? as usize;
                self.body_origin = Some(origin.clone());
            }
            "answer_memory" => self.answer_memory = v.bytes(origin, MIB, 64 * 1024 * MIB)? as usize,
            "pace" => self.pace = Duration::from_millis(v.count(origin, 0, 3_600_000)?),
            "drain_timeout" => self.drain_timeout = v.seconds(origin)?,
            "drain_delay" => self.drain_delay = Duration::from_secs(v.count(origin, 0, 3600)?),
            "quiet" => self.quiet = v.boolean(origin)?,
            "explain" => self.explain = v.boolean(origin)?,
            "log_format" => {
                self.log_format = match v.string(origin)?.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    other => {
                        return fail(origin, format!("expected text or json, found `{other}`"));
                    }
                }
            }
            "log_file" => self.log_file = Some(PathBuf::from(v.string(origin)?)),
            "allow" => self.allow = ranges(v, origin)?,
            "admin_allow" => self.admin_allow = ranges(v, origin)?,
            "trusted" => self.immune.trusted = ranges(v, origin)?,
            "ban_after" => self.immune.ban_after = v.count(origin, 0, 1_000_000)? as u32,
            "ban_window" => self.immune.window = v.seconds(origin)?,
            "ban_seconds" => self.immune.ban_for = v.seconds(origin)?,
            "memory_yellow" => self.light.memory_yellow = Some(v.bytes(origin, 0, u64::MAX)?),
            "memory_red" => self.light.memory_red = Some(v.bytes(origin, 0, u64::MAX)?),
            "load_yellow" => self.light.load_yellow = Some(v.hundredths(origin)?),
            "load_red" => self.light.load_red = Some(v.hundredths(origin)?),
            "handlers" => {
                self.handlers_origin = Some(origin.clone());
                self.handlers = match v {
                    Input::Toml(Value::String(s)) if s == "auto" => None,
                    Input::Flag("auto") => None,
                    _ => Some(v.count(origin, 1, MAX_HANDLERS)?),
                }
            }
            "max_handlers" => self.max_handlers = v.count(origin, 2, MAX_HANDLERS)?,
            "tls_cert" => self.tls_cert = Some((v.string(origin)?.into(), origin.clone())),
            "tls_key" => self.tls_key = Some((v.string(origin)?.into(), origin.clone())),
            "handshake_timeout" => self.handshake_timeout = v.seconds(origin)?,
            _ => return fail(origin, unknown("setting", key, SETTINGS)),
        }
        Ok(())
    }

    fn load_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: None,
            message: format!("{}: cannot read the config file: {e}", path.display()),
        })?;
        self.load_text(&text, path)
    }

    fn load_text(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let at = |line| Origin::File {
            path: path.to_path_buf(),
            line,
        };
        let root = toml::parse(text).or_else(|e| fail(&at(e.line), e.message))?;
        for entry in &root.entries {
            let origin = at(entry.line);
            match (&entry.value, entry.key.as_str()) {
                (Value::Tables(tables), "route") => {
                    for table in tables {
                        let draft = route_from_table(table, &at)?;
                        self.add_route(draft)?;
                    }
                }
                (_, "route") => return fail(&origin, "routes are written as [[route]] tables"),
                (value, key) => self.set(key, Input::Toml(value), &origin)?,
            }
        }
        Ok(())
    }

    /// Adds a route. One with the method and path of a route of the file
    /// replaces it if it comes from a flag (flags override the file), and
    /// is refused otherwise: two in one place are a mistake.
    fn add_route(&mut self, draft: RouteDraft) -> Result<(), ConfigError> {
        let same = |d: &RouteDraft| {
            d.route.method == draft.route.method && d.route.path == draft.route.path
        };
        match self.routes.iter_mut().find(|d| same(d)) {
            Some(existing)
                if matches!(draft.origin, Origin::Flag(_))
                    && !matches!(existing.origin, Origin::Flag(_)) =>
            {
                *existing = draft;
            }
            Some(existing) => {
                return fail(
                    &draft.origin,
                    format!(
                        "`{} {}` is routed twice: here and at {}",
                        draft.route.method.as_str(),
                        draft.route.pattern,
                        existing.origin
                    ),
                );
            }
            None => self.routes.push(draft),
        }
        Ok(())
    }

    fn finish(self) -> Result<Config, ConfigError> {
        let index = self.routes.is_empty();
        let mut drafts = self.routes;
        if index {
            let demo = PathBuf::from("(demo)");
            let mut b = Builder::default();
            b.load_text(DEMO, &demo)?;
            drafts = b.routes;
        }
        let handlers = match self.handlers {
            Some(n) => Handlers::Fixed(n as usize),
            None if self.light.enabled() => Handlers::Auto(self.max_handlers as usize),
            None => {
                return Err(ConfigError {
                    origin: self.handlers_origin,
                    message: "handlers = \"auto\" follows the traffic light: set memory_yellow, \
                              memory_red, load_yellow or load_red"
                        .into(),
                });
            }
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (None, None) => None,
            (Some((cert, cert_origin)), Some((key, key_origin))) => {
                if self.on_full == OnFull::ServiceUnavailable {
                    return fail(
                        &cert_origin,
                        "on_full = 503 cannot be used with TLS (its 503 is written before any handshake, in plain HTTP): use close or backlog",
                    );
                }
                let acceptor = Acceptor::load(&cert, &key).or_else(|(file, e)| match file {
                    TlsFile::Cert => fail(&cert_origin, e),
                    TlsFile::Key => fail(&key_origin, e),
                })?;
                Some(Arc::new(acceptor))
            }
            (Some((_, origin)), None) | (None, Some((_, origin))) => {
                return fail(&origin, "tls_cert and tls_key go together");
            }
        };
        if self.max_body > self.body_memory as u64 {
            return Err(ConfigError {
                origin: self.body_origin,
                message: format!(
                    "max_body ({}) is larger than body_memory ({}): a body that size could never be read",
                    self.max_body, self.body_memory
                ),
            });
        }
        let mut list = Vec::with_capacity(drafts.len());
        for d in drafts {
            if d.route.max_output > self.answer_memory {
                return fail(
                    &d.max_output_origin,
                    format!(
                        "max_output ({}) is larger than answer_memory ({}): its answer could never be sent",
                        d.route.max_output, self.answer_memory
                    ),
                );
            }
            let mut route = d.route;
            route.timeout = d.timeout.unwrap_or(self.timeout);
            route.explain = d.explain.unwrap_or(self.explain);
            list.push(Arc::new(route));
        }
        Ok(Config {
            listen: self.listen,
            admin: self.admin,
            queue: self.queue,
            on_full: self.on_full,
            max_reading: self.max_reading,
            read_timeout: self.read_timeout,
            write_timeout: self.write_timeout,
            keep_alive: self.keep_alive,
            max_body: self.max_body,
            body_memory: self.body_memory,
            answer_memory: self.answer_memory,
            pace: self.pace,
            drain_timeout: self.drain_timeout,
            drain_delay: self.drain_delay,
            quiet: self.quiet,
            log_format: self.log_format,
            log_file: self.log_file,
            allow: self.allow,
            admin_allow: self.admin_allow,
            immune: self.immune,
            light: self.light,
            handlers,
            tls,
            handshake_timeout: self.handshake_timeout,
            routes: Routes { list, index },
            warnings: self.warnings,
        })
    }
}

/// A list of address ranges (`allow`, `trusted`).
fn ranges(v: Input, origin: &Origin) -> Result<Vec<Cidr>, ConfigError> {
    v.strings(origin)?
        .iter()
        .map(|s| {
            Cidr::parse(s).ok_or(()).or_else(|()| {
                fail(
                    origin,
                    format!("`{s}` is not an address or a range like 10.0.0.0/8"),
                )
            })
        })
        .collect()
}

/// The bearer token a route requires, from the server's environment.
fn token(name: &str, origin: &Origin) -> Result<Token, ConfigError> {
    match std::env::var_os(name) {
        Some(v) if !v.is_empty() => Ok(Token(v.into_encoded_bytes())),
        _ => fail(
            origin,
            format!("token_env: the variable `{name}` is not set, or empty"),
        ),
    }
}

fn method_rule(s: &str, origin: &Origin) -> Result<MethodRule, ConfigError> {
    if s.eq_ignore_ascii_case("ANY") {
        return Ok(MethodRule::Any);
    }
    match Method::from_token(s.to_ascii_uppercase().as_bytes()) {
        Some(m) => Ok(MethodRule::Only(m)),
        None => fail(
            origin,
            format!("unknown method `{s}` (GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH or ANY)"),
        ),
    }
}

fn path_rule(s: &str, origin: &Origin) -> Result<PathRule, ConfigError> {
    PathRule::parse(s).ok_or(()).or_else(|()| {
        fail(
            origin,
            format!(
                "path `{s}` must start with /, be visible ASCII without \" \\ ? #, and may only end in /* (a prefix)"
            ),
        )
    })
}

/// The command's arguments as templates (placeholders checked here, once).
/// (Empty only for a route with an `upstream`: `route_from_table` says so.)
fn command(argv: &[String], origin: &Origin) -> Result<Vec<Arg>, ConfigError> {
    if argv.iter().any(|a| a.contains('\0')) {
        return fail(origin, "the command holds a NUL byte");
    }
    argv.iter()
        .map(|a| Arg::parse(a).or_else(|e| fail(origin, e)))
        .collect()
}

/// `exit_status = { 2 = 400, 3 = 422 }`: exit codes (1–255) and the 4xx
/// or 5xx status each gets.
fn exit_statuses(v: &Input, origin: &Origin) -> Result<Vec<(i32, u16)>, ConfigError> {
    let expected = "expected a table of exit codes and statuses, like { 2 = 400, 3 = 422 }";
    let Input::Toml(Value::Table(table)) = v else {
        return fail(origin, expected);
    };
    table
        .entries
        .iter()
        .map(|e| {
            let code = e.key.parse::<i32>().ok().filter(|c| (1..=255).contains(c));
            let status = match e.value {
                Value::Integer(s) => u16::try_from(s).ok().filter(|s| (400..=599).contains(s)),
                _ => None,
            };
            match (code, status) {
                (Some(code), Some(status)) => Ok((code, status)),
                _ => fail(
                    origin,
                    format!(
                        "`{} = …`: {expected}; codes 1 to 255, statuses 400 to 599",
                        e.key
                    ),
                ),
            }
        })
        .collect()
}

/// `NAME=VALUE` sets a variable; a bare `NAME` passes the server's own value on.
fn env_entry(s: &str, origin: &Origin) -> Result<Option<(OsString, OsString)>, ConfigError> {
    let (name, value) = match s.split_once('=') {
        Some((n, v)) => (n, Some(OsString::from(v))),
        None => (s, None),
    };
    if name.is_empty() || name.contains('\0') || s.contains('\0') {
        return fail(origin, format!("`{s}` is not NAME=VALUE or NAME"));
    }
    let value = value.or_else(|| std::env::var_os(name));
    Ok(value.map(|v| (OsString::from(name), v)))
}

fn new_route(
    method: MethodRule,
    pattern: String,
    argv: Vec<String>,
    origin: &Origin,
) -> Result<Route, ConfigError> {
    Ok(Route {
        method,
        path: path_rule(&pattern, origin)?,
        pattern,
        args: command(&argv, origin)?,
        command: argv,
        missing: Missing::Reject,
        dashes: Dashes::Refuse,
        max_arg: 4 * KIB as usize,
        timeout: Duration::ZERO,
        kill_grace: Duration::from_secs(2),
        cancel_on_disconnect: true,
        sandbox: Sandbox::default(),
        cgi: false,
        stream: false,
        breaker: Breaker::new(0, Duration::ZERO),
        stats: Arc::default(),
        worker: None,
        cancel_grace: None,
        token: None,
        env: Vec::new(),
        max_output: 16 * MIB as usize,
        content_type: "text/plain; charset=utf-8".into(),
        explain: false,
        exit_statuses: Vec::new(),
    })
}

fn route_from_table(
    table: &Table,
    at: &impl Fn(usize) -> Origin,
) -> Result<RouteDraft, ConfigError> {
    let origin = at(table.line);
    let get = |key: &str| table.get(key).map(|e| (Input::Toml(&e.value), at(e.line)));
    let method = match get("method") {
        Some((v, o)) => method_rule(&v.string(&o)?, &o)?,
        None => MethodRule::Any,
    };
    let Some((path, path_origin)) = get("path") else {
        return fail(&origin, "this [[route]] has no `path`");
    };
    let pattern = path.string(&path_origin)?;
    // Every key is known before the command is looked for: a misspelt
    // `comand` is reported as unknown, not as a missing command.
    let mut route = new_route(method, pattern, Vec::new(), &path_origin)?;
    let (mut timeout, mut explain) = (None, None);
    let mut max_output_origin = None;
    let (mut breaker_failures, mut breaker_cooldown) = (0, Duration::from_secs(30));
    let (mut speaks, mut recycle) = (None, Recycle::default());
    let (mut ready, mut upstream) = (None, None);
    let (mut start, mut start_timeout) = (None, None);
    for entry in &table.entries {
        let (v, o) = (Input::Toml(&entry.value), at(entry.line));
        match entry.key.as_str() {
            "method" | "path" | "command" => {}
            "ready" => {
                let path = v.string(&o)?;
                if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
                    return fail(&o, format!("`{path}` is not a path like /health"));
                }
                ready = Some(path);
            }
            "upstream" => upstream = Some(upstream_address(&v.string(&o)?, &o)?),
            "start" => {
                start = Some(match v.string(&o)?.as_str() {
                    "boot" => Start::Boot,
                    "first-request" => Start::FirstRequest,
                    other => {
                        return fail(
                            &o,
                            format!("expected boot or first-request, found `{other}`"),
                        );
                    }
                });
            }
            "start_timeout" => start_timeout = Some(v.seconds(&o)?),
            "cancel_grace" => {
                route.cancel_grace = Some(Duration::from_secs(v.count(&o, 0, 600)?));
            }
            "timeout" => timeout = Some(v.seconds(&o)?),
            "max_output" => {
                route.max_output = v.bytes(&o, 0, 64 * 1024 * MIB)? as usize;
                max_output_origin = Some(o);
            }
            "content_type" => {
                route.content_type = v.string(&o)?;
                if route.content_type.contains(char::is_control) {
                    return fail(&o, "a Content-Type cannot hold control characters");
                }
            }
            "explain" => explain = Some(v.boolean(&o)?),
            "exit_status" => route.exit_statuses = exit_statuses(&v, &o)?,
            "missing" => {
                route.missing = match v.string(&o)?.as_str() {
                    "reject" => Missing::Reject,
                    "empty" => Missing::Empty,
                    other => return fail(&o, format!("expected reject or empty, found `{other}`")),
                }
            }
            "max_arg" => route.max_arg = v.bytes(&o, 1, 16 * MIB)? as usize,
            "allow_options" => {
                route.dashes = match v.boolean(&o)? {
                    true => Dashes::Allow,
                    false => Dashes::Refuse,
                }
            }
            "kill_grace" => route.kill_grace = Duration::from_secs(v.count(&o, 0, 600)?),
            "cancel_on_disconnect" => route.cancel_on_disconnect = v.boolean(&o)?,
            "cgi" => route.cgi = v.boolean(&o)?,
            "stream" => route.stream = v.boolean(&o)?,
            "breaker_failures" => breaker_failures = v.count(&o, 0, 1_000_000)? as u32,
            "breaker_cooldown" => breaker_cooldown = v.seconds(&o)?,
            "token_env" => route.token = Some(token(&v.string(&o)?, &o)?),
            "worker" => {
                speaks = match v {
                    Input::Toml(Value::String(s)) if s == "http" => Some(Speaks::Http {
                        ready: String::new(),
                        upstream: None,
                    }),
                    Input::Toml(Value::Boolean(b)) => b.then_some(Speaks::Frames),
                    _ => return fail(&o, "expected true, false or \"http\""),
                }
            }
            "max_requests" => recycle.max_requests = Some(v.count(&o, 1, u64::MAX)?),
            "max_memory" => recycle.max_memory = Some(v.bytes(&o, MIB, u64::MAX)?),
            "memory" => route.sandbox.limits.memory = Some(v.bytes(&o, MIB, u64::MAX)?),
            "cpu" => route.sandbox.limits.cpu = Some(v.count(&o, 1, 7 * 24 * 3600)?),
            "open_files" => route.sandbox.limits.open_files = Some(v.count(&o, 3, 1 << 20)?),
            "processes" => route.sandbox.limits.processes = Some(v.count(&o, 1, 1 << 22)?),
            "nice" => {
                let n = match v {
                    Input::Toml(Value::Integer(n)) if (-20..=19).contains(n) => *n,
                    _ => return fail(&o, "expected a niceness from -20 to 19"),
                };
                route.sandbox.limits.nice = i32::try_from(n).ok();
            }
            "dir" => route.sandbox.dir = Some(PathBuf::from(v.string(&o)?)),
            "uid" => route.sandbox.uid = u32::try_from(v.count(&o, 0, u64::from(u32::MAX))?).ok(),
            "gid" => route.sandbox.gid = u32::try_from(v.count(&o, 0, u64::from(u32::MAX))?).ok(),
            "env" => {
                for s in v.strings(&o)? {
                    route.env.extend(env_entry(&s, &o)?);
                }
            }
            other => return fail(&o, unknown("route setting", other, ROUTE_SETTINGS)),
        }
    }
    let (argv, argv_origin) = match (get("command"), get("upstream")) {
        (Some((argv, o)), None) => match argv.strings(&o)? {
            argv if argv.is_empty() => return fail(&o, "the command is empty"),
            argv => (argv, o),
        },
        (None, Some(_)) => (Vec::new(), origin.clone()),
        (Some((_, o)), Some(_)) => {
            return fail(&o, "a route has a `command` or an `upstream`, not both");
        }
        (None, None) => return fail(&origin, "this [[route]] has no `command`"),
    };
    route.args = command(&argv, &argv_origin)?;
    route.command = argv;
    route.breaker = Breaker::new(breaker_failures, breaker_cooldown);
    if route.stream && route.cgi {
        return fail(&origin, "a route cannot both stream and be in CGI mode");
    }
    match speaks {
        Some(mut speaks) => {
            if let Speaks::Http {
                ready: r,
                upstream: u,
            } = &mut speaks
            {
                *r = ready.take().unwrap_or_else(|| "/".into());
                *u = upstream.take();
            }
            let defaults = Worker::new(speaks);
            route.worker = Some(Worker {
                start: start.unwrap_or(defaults.start),
                start_timeout: start_timeout.unwrap_or(defaults.start_timeout),
                recycle,
                ..defaults
            });
        }
        None if recycle != Recycle::default() || start.is_some() || start_timeout.is_some() => {
            return fail(
                &origin,
                "max_requests, max_memory, start and start_timeout are for worker routes",
            );
        }
        None => {}
    }
    if ready.is_some() || upstream.is_some() {
        return fail(
            &origin,
            "ready and upstream are for worker = \"http\" routes",
        );
    }
    check_worker(&route, &origin)?;
    Ok(RouteDraft {
        max_output_origin: max_output_origin.unwrap_or_else(|| origin.clone()),
        origin,
        route,
        timeout,
        explain,
    })
}

/// A worker is started once, so its command cannot hold placeholders (but
/// an HTTP worker's `{port}`, which it must hold); it answers in its own
/// protocol, never in CGI's; an HTTP worker streams and is stopped by a
/// closed connection, so it takes neither `stream` nor `cancel_grace`.
fn check_worker(route: &Route, origin: &Origin) -> Result<(), ConfigError> {
    let http = match &route.worker {
        None if route.args.iter().any(Arg::is_port) => {
            return fail(
                origin,
                "{port} is for the command of a worker = \"http\" route",
            );
        }
        None if route.cancel_grace.is_some() => {
            return fail(origin, "cancel_grace is for worker = true routes");
        }
        None => return Ok(()),
        Some(w) => matches!(w.speaks, Speaks::Http { .. }),
    };
    if route.cgi || (http && (route.stream || route.cancel_grace.is_some())) {
        return fail(
            origin,
            "a worker takes no cgi, and an HTTP worker streams and stops on its own: no stream or cancel_grace",
        );
    }
    let fixed = |a: &Arg| a.is_literal() || (http && a.is_port());
    if !route.args.iter().all(fixed) {
        return fail(
            origin,
            "a worker is started once: its command cannot hold {placeholders}",
        );
    }
    let upstream = matches!(
        route.worker,
        Some(Worker {
            speaks: Speaks::Http {
                upstream: Some(_),
                ..
            },
            ..
        })
    );
    if http && !upstream && !route.args.iter().any(Arg::is_port) {
        return fail(
            origin,
            "an HTTP worker's command must hold {port}, the port it is to listen on",
        );
    }
    Ok(())
}

/// `upstream = "http://127.0.0.1:8082"`: where a server someone else runs
/// listens (plain HTTP, an address: `localhost` is 127.0.0.1, and no other
/// name is looked up).
fn upstream_address(url: &str, origin: &Origin) -> Result<SocketAddr, ConfigError> {
    let authority = url
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .map(|a| a.replace("localhost:", "127.0.0.1:"));
    let found = authority.and_then(|a| a.parse().ok());
    found.ok_or(()).or_else(|()| {
        fail(
            origin,
            format!("`{url}` is not an address like http://127.0.0.1:8082"),
        )
    })
}

/// `--route 'METHOD PATH=COMMAND ARG…'`.
fn route_from_flag(spec: &str, origin: &Origin) -> Result<RouteDraft, ConfigError> {
    let spec = spec.trim();
    let Some((method, rest)) = spec.split_once(char::is_whitespace) else {
        return fail(
            origin,
            format!("`{spec}` is not 'METHOD PATH=COMMAND ARG…'"),
        );
    };
    let Some((path, argv)) = rest.trim_start().split_once('=') else {
        return fail(
            origin,
            format!("`{spec}` has no `=` between the path and the command"),
        );
    };
    let argv: Vec<String> = argv.split_whitespace().map(str::to_owned).collect();
    if argv.is_empty() {
        return fail(origin, "the command is empty");
    }
    let route = new_route(
        method_rule(method, origin)?,
        path.trim().to_owned(),
        argv,
        origin,
    )?;
    Ok(RouteDraft {
        origin: origin.clone(),
        max_output_origin: origin.clone(),
        route,
        timeout: None,
        explain: None,
    })
}

/// Reads the command line (without the program name).
pub fn from_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, ConfigError> {
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    let mut file = None;
    let mut check = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Ok(arg) = arg.into_string() else {
            return Err(ConfigError {
                origin: None,
                message: "an argument is not valid UTF-8".into(),
            });
        };
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let origin = Origin::Flag(name.clone());
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--quiet" | "--explain" => flags.push((name, inline.or(Some("true".into())))),
            "--check" => check = true,
            flag if VALUE_FLAGS.split_whitespace().any(|f| f == flag) => {
                let value = match inline {
                    Some(v) => v,
                    None => match args.next().map(OsString::into_string) {
                        Some(Ok(v)) => v,
                        _ => return fail(&origin, "needs a value"),
                    },
                };
                if matches!(name.as_str(), "-c" | "--config") {
                    file = Some(PathBuf::from(value));
                } else {
                    flags.push((name, Some(value)));
                }
            }
            flag => {
                let near = nearest(flag, VALUE_FLAGS).or_else(|| nearest(flag, BARE_FLAGS));
                return fail(
                    &origin,
                    match near {
                        Some(near) => format!("unknown option (did you mean `{near}`?)"),
                        None => "unknown option (see --help)".into(),
                    },
                );
            }
        }
    }
    let mut b = Builder::default();
    if let Some(path) = &file {
        b.load_file(path)?;
    }
    for (name, value) in &flags {
        let origin = Origin::Flag(name.clone());
        let value = value.as_deref().unwrap_or_default();
        if ["--route", "--cgi", "--worker", "--worker-http"].contains(&name.as_str()) {
            let mut draft = route_from_flag(value, &origin)?;
            if value.contains(['"', '\'']) {
                b.warnings.push(format!(
                    "{origin} '{value}': quotes are passed to the program as they are (no shell \
                     reads the command, it is split on whitespace): for an argument with spaces, \
                     write the route in a config file"
                ));
            }
            draft.route.cgi = name == "--cgi";
            draft.route.worker = match name.as_str() {
                "--worker" => Some(Worker::new(Speaks::Frames)),
                "--worker-http" => Some(Worker::new(Speaks::Http {
                    ready: "/".into(),
                    upstream: None,
                })),
                _ => None,
            };
            check_worker(&draft.route, &origin)?;
            b.add_route(draft)?;
        } else {
            let key = name.trim_start_matches('-').replace('-', "_");
            b.set(&key, Input::Flag(value), &origin)?;
        }
    }
    let config = Box::new(b.finish()?);
    Ok(if check {
        Command::Check(config)
    } else {
        Command::Run(config)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Result<Config, String> {
        match from_args(s.iter().map(OsString::from)) {
            Ok(Command::Run(c)) => Ok(*c),
            Ok(_) => Err("help or version".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn text(t: &str) -> Result<Config, String> {
        let mut b = Builder::default();
        b.load_text(t, &PathBuf::from("f.toml"))
            .map_err(|e| e.to_string())?;
        b.finish().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_serve_the_demo() {
        let c = args(&[]).unwrap();
        assert_eq!(c.queue, 64);
        assert_eq!(c.on_full, OnFull::Close);
        assert_eq!(c.max_body, MIB);
        assert!(c.routes.index);
        assert_eq!(c.routes.list[0].command, ["cat"]);
        assert_eq!(c.routes.list[0].timeout, Duration::from_secs(60));
    }

    #[test]
    fn flags() {
        let c = args(&[
            "--queue",
            "32",
            "--on-full=503",
            "--admin",
            "off",
            "--max-body",
            "2M",
            "--route",
            "ANY /x/*=/bin/echo a  b",
            "--timeout",
            "5",
            "--quiet",
        ])
        .unwrap();
        assert_eq!(c.queue, 32);
        assert_eq!(c.on_full, OnFull::ServiceUnavailable);
        assert_eq!(c.admin, None);
        assert_eq!(c.max_body, 2 * MIB);
        assert!(c.quiet && !c.routes.index);
        let r = &c.routes.list[0];
        assert_eq!(r.command, ["/bin/echo", "a", "b"]);
        assert_eq!(r.path, PathRule::Prefix("/x".into()));
        assert_eq!(r.timeout, Duration::from_secs(5));
    }

    #[test]
    fn file() {
        let c = text(
            "listen = \"0.0.0.0:9000\"\nqueue = 7\n[[route]]\nmethod = \"post\"\npath = \"/g\"\n\
             command = [\"llama\", \"-p\", \"a b\"]\ntimeout = 120\nenv = [\"A=1\"]\nmax_output = \"1M\"\n",
        )
        .unwrap();
        assert_eq!(c.listen, SocketAddr::from(([0, 0, 0, 0], 9000)));
        let r = &c.routes.list[0];
        assert_eq!(r.method, MethodRule::Only(Method::Post));
        assert_eq!(r.command, ["llama", "-p", "a b"]);
        assert_eq!(r.timeout, Duration::from_secs(120));
        assert_eq!(r.env, [(OsString::from("A"), OsString::from("1"))]);
        assert_eq!(r.max_output, MIB as usize);
    }

    /// Every setting suggested is one the parsers know (an unsuitable
    /// value is refused, but never as unknown).
    #[test]
    fn the_suggested_settings_are_known() {
        for key in SETTINGS.split_whitespace() {
            let e = text(&format!("{key} = [[1]]")).err().unwrap_or_default();
            assert!(
                e.starts_with("f.toml:1: ") && !e.contains("unknown"),
                "{key}: {e}"
            );
        }
        for key in ROUTE_SETTINGS.split_whitespace() {
            let route = format!("[[route]]\npath = \"/a\"\n{key} = [[1]]");
            let e = text(&route).err().unwrap_or_default();
            assert!(
                e.starts_with("f.toml:3: ") && !e.contains("unknown"),
                "{key}: {e}"
            );
        }
        for flag in VALUE_FLAGS.split_whitespace() {
            let e = args(&[flag, "x"]).err().unwrap_or_default();
            assert!(!e.contains("unknown"), "{flag}: {e}");
        }
    }

    #[test]
    fn errors_name_the_place() {
        let cases: &[(&str, &str)] = &[
            (
                "queue = \"x\"",
                "f.toml:1: expected an integer, found a string",
            ),
            ("\nqueue = 0", "f.toml:2: 0 is out of range 1..=1000000"),
            (
                "[[route]]\npath = \"/a\"\ncommand = [\"x\"]\nexit_status = { 2 = 200 }",
                "f.toml:4: `2 = …`: expected a table of exit codes and statuses, like { 2 = 400, 3 = 422 }; codes 1 to 255, statuses 400 to 599",
            ),
            (
                "[[route]]\npath = \"/a\"\ncommand = [\"x\"]\nexit_status = 2",
                "f.toml:4: expected a table of exit codes and statuses, like { 2 = 400, 3 = 422 }",
            ),
            (
                "queu = 1",
                "f.toml:1: unknown setting `queu` (did you mean `queue`?)",
            ),
            (
                "[[route]]\npath = \"/a\"\ncomand = [\"x\"]",
                "f.toml:3: unknown route setting `comand` (did you mean `command`?)",
            ),
            (
                "[[route]]\npath = \"/a\"\ncommand = [\"x\"]\n\
                 [[route]]\npath = \"/b\"\ncommand = [\"x\"]\n\
                 [[route]]\npath = \"/a\"\ncommand = [\"y\"]",
                "f.toml:7: `ANY /a` is routed twice: here and at f.toml:1",
            ),
            (
                "answer_memory = \"1M\"\n[[route]]\npath = \"/a\"\ncommand = [\"x\"]\n\
                 max_output = \"2M\"",
                "f.toml:5: max_output (2097152) is larger than answer_memory (1048576): its answer could never be sent",
            ),
            (
                "on_full = \"drop\"",
                "f.toml:1: expected close, 503 or backlog, found `drop`",
            ),
            (
                "[[route]]\npath = \"/a\"",
                "f.toml:1: this [[route]] has no `command`",
            ),
            (
                "[[route]]\npath = \"a\"\ncommand = [\"x\"]",
                "f.toml:2: path `a` must start with /, be visible ASCII without \" \\ ? #, and may only end in /* (a prefix)",
            ),
            (
                "[[route]]\npath = \"/a\"\ncommand = []",
                "f.toml:3: the command is empty",
            ),
            (
                "[[route]]\npath = \"/a\"\ncommand = [\"x\"]\nmethod = \"FETCH\"",
                "f.toml:4: unknown method `FETCH` (GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH or ANY)",
            ),
            (
                "[[route]]\npath = \"/a\"\ncommand = [\"x\"]\nshell = true",
                "f.toml:4: unknown route setting `shell`",
            ),
            (
                "answer_memory = \"1M\"\n[[route]]\npath = \"/a\"\ncommand = [\"x\"]",
                "f.toml:2: max_output (16777216) is larger than answer_memory (1048576): its answer could never be sent",
            ),
            (
                "body_memory = \"1M\"\nmax_body = \"2M\"",
                "f.toml:2: max_body (2097152) is larger than body_memory (1048576): a body that size could never be read",
            ),
            (
                "listen = \"nowhere\"",
                "f.toml:1: `nowhere` is not an address like 127.0.0.1:8080 or [::]:8080",
            ),
            (
                "\nallow = [\"10.0.0.0/8\", \"intranet\"]",
                "f.toml:2: `intranet` is not an address or a range like 10.0.0.0/8",
            ),
            (
                "[[route]]\npath = \"/a\"\ncommand = [\"x\", \"{query.n}\"]\nworker = true",
                "f.toml:1: a worker is started once: its command cannot hold {placeholders}",
            ),
            (
                "[[route]]\npath = \"/a\"\ncommand = [\"x\"]\nmax_requests = 5",
                "f.toml:1: max_requests, max_memory, start and start_timeout are for worker routes",
            ),
            (
                "[[route]]\npath = \"/a\"\ncommand = [\"x\", \"{port}\"]",
                "f.toml:1: {port} is for the command of a worker = \"http\" route",
            ),
            (
                "[[route]]\npath = \"/a\"\ncommand = [\"x\"]\nworker = \"http\"",
                "f.toml:1: an HTTP worker's command must hold {port}, the port it is to listen on",
            ),
            (
                "[[route]]\npath = \"/a\"\ncommand = [\"x\", \"{port}\"]\nupstream = \"http://127.0.0.1:1\"\nworker = \"http\"",
                "f.toml:3: a route has a `command` or an `upstream`, not both",
            ),
            (
                "[[route]]\npath = \"/a\"\nupstream = \"ftp://x\"\nworker = \"http\"",
                "f.toml:3: `ftp://x` is not an address like http://127.0.0.1:8082",
            ),
            (
                "[[route]]\npath = \"/a\"\ncommand = [\"x\"]\nready = \"/health\"",
                "f.toml:1: ready and upstream are for worker = \"http\" routes",
            ),
            (
                "[[route]]\npath = \"/a\"\ncommand = [\"x\", \"{port}\"]\nworker = \"http\"\nstart = \"later\"",
                "f.toml:5: expected boot or first-request, found `later`",
            ),
            (
                "[[route]]\npath = \"/a\"\ncommand = [\"x\"]\nworker = \"yes\"",
                "f.toml:4: expected true, false or \"http\"",
            ),
            ("handlers = 5", "f.toml:1: 5 is out of range 1..=4"),
            (
                "[[route]]\npath = \"/a\"\ncommand = [\"x\"]\ncontent_type = \"a\\r\\nSet-Cookie: b\"",
                "f.toml:4: a Content-Type cannot hold control characters",
            ),
            (
                "handlers = \"auto\"",
                "f.toml:1: handlers = \"auto\" follows the traffic light: set memory_yellow, memory_red, load_yellow or load_red",
            ),
            (
                "load_red = \"lots\"",
                "f.toml:1: expected a number ≥ 0 like 4 or \"3.5\"",
            ),
            (
                "log_format = \"xml\"",
                "f.toml:1: expected text or json, found `xml`",
            ),
            (
                "[[route]]\npath = \"/a\"\ncommand = [\"x\"]\ntoken_env = \"FIDDLER_NO_SUCH_VARIABLE\"",
                "f.toml:4: token_env: the variable `FIDDLER_NO_SUCH_VARIABLE` is not set, or empty",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(text(input).err().as_deref(), Some(*want), "{input}");
        }
        assert_eq!(
            args(&["--queue", "x"]).err().unwrap(),
            "--queue: expected a whole number, found `x`"
        );
        assert_eq!(
            args(&["--bogus"]).err().unwrap(),
            "--bogus: unknown option (see --help)"
        );
        assert_eq!(
            args(&["--listn", "x"]).err().unwrap(),
            "--listn: unknown option (did you mean `--listen`?)"
        );
        assert_eq!(
            args(&["--chek"]).err().unwrap(),
            "--chek: unknown option (did you mean `--check`?)"
        );
        assert_eq!(
            args(&["--route", "GET /a=x", "--route", "GET /a=y"])
                .err()
                .unwrap(),
            "--route: `GET /a` is routed twice: here and at --route"
        );
        assert_eq!(args(&["--queue"]).err().unwrap(), "--queue: needs a value");
        assert_eq!(
            args(&["--route", "POST /a"]).err().unwrap(),
            "--route: `POST /a` has no `=` between the path and the command"
        );
    }

    #[test]
    fn flag_route_overrides_file_route() {
        let mut b = Builder::default();
        b.load_text(
            "[[route]]\nmethod = \"POST\"\npath = \"/a\"\ncommand = [\"x\"]",
            &PathBuf::from("f"),
        )
        .unwrap();
        b.add_route(route_from_flag("POST /a=y", &Origin::Flag("--route".into())).unwrap())
            .unwrap();
        let c = b.finish().unwrap();
        assert_eq!(c.routes.list.len(), 1);
        assert_eq!(c.routes.list[0].command, ["y"]);
    }
}
