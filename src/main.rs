//! fiddler_crab: runs one program per HTTP request, one at a time per
//! handler (one, or `handlers` of them), holds a fixed number waiting, and
//! ignores the rest at almost no cost.
//!
//! The whole pipeline, one direction:
//!
//! ```text
//! clients ─► listener ─► gate ─► queue ─► handler ─► gate ─► clients
//!            (room?      (reads,   (batches  (one program  (writes
//!             or close)   parses)   of jobs)  at a time)    answers)
//! ```
//! `main` reads the config, binds the sockets and starts each part; the
//! watchdog keeps them alive; the signals thread stops them (SIGTERM: the
//! listener stops, `main` drains what is held, then exits).
//! ARCHITECTURE.md has the full picture.

#[macro_use]
mod labelled;

mod admin;
mod breaker;
mod cgi;
mod cgroup;
mod cidr;
mod config;
mod epoch;
mod exposition;
mod frames;
mod gate;
mod handler;
mod http;
mod immune;
mod light;
mod listener;
mod log;
mod metrics;
mod program;
mod queue;
mod route;
mod search;
mod signals;
mod spelling;
mod state;
mod stream;
mod sys;
mod template;
mod toml;
mod transport;
mod upstream;
mod watchdog;
mod worker;

use config::{Command, Config};
use gate::{Gate, Settings};
use handler::Handler;
use http::request::Limits;
use listener::{Door, Listener};
use route::Start;
use signals::Signals;
use state::{Bounds, Part, State};
use std::ffi::OsString;
use std::io;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::thread;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match config::from_args(args.iter().cloned()) {
        Ok(Command::Run(config)) => match serve(*config, args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fiddler_crab: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Command::Check(config)) => check(&config),
        Ok(Command::Help) => {
            print!("{}", config::help());
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("fiddler_crab {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fiddler_crab: {e}");
            ExitCode::from(2)
        }
    }
}

/// `--check`: the config is valid (`from_args` would have said why not);
/// says which routes' programs cannot be found.
fn check(config: &Config) -> ExitCode {
    for warning in &config.warnings {
        eprintln!("fiddler_crab: warning: {warning}");
    }
    let problems = program_problems(config);
    for problem in &problems {
        eprintln!("fiddler_crab: {problem}");
    }
    let routes = config.routes.list.len();
    if problems.is_empty() {
        println!("fiddler_crab: config ok, {routes} route(s)");
        ExitCode::SUCCESS
    } else {
        println!(
            "fiddler_crab: config ok, {routes} route(s), {} cannot run",
            problems.len()
        );
        ExitCode::FAILURE
    }
}

/// One line per route whose program cannot run as configured.
fn program_problems(config: &Config) -> Vec<String> {
    config
        .routes
        .list
        .iter()
        .filter_map(|r| {
            let problem = r.program_problem()?;
            Some(format!(
                "route {} {}: {problem}",
                r.method.as_str(),
                r.pattern
            ))
        })
        .collect()
}

fn serve(config: Config, args: Vec<OsString>) -> io::Result<()> {
    sys::close_inherited_on_exec()?;
    sys::return_large_frees();
    let signal_pipe = signals::catch()?;
    log::start(config.log_file.as_deref(), config.log_format, config.quiet)?;
    std::panic::set_hook(Box::new(|info| {
        let thread = thread::current();
        log::event(format_args!(
            "panic in {}: {info}",
            thread.name().unwrap_or("a thread")
        ));
    }));
    let open_files = sys::raise_fd_limit()?;
    if let Err(e) = sys::become_subreaper() {
        log::event(format_args!("cannot adopt the orphans of programs: {e}"));
    }
    if let Err(e) = cgroup::init() {
        log::event(format_args!(
            "no cgroup for programs ({e}): a program that leaves its process group (setsid) may outlive its request"
        ));
    }
    let bind = |addr| {
        TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
    };
    let door = Arc::new(Door::new(bind(config.listen)?, config.read_timeout)?);
    let admin = config.admin.map(bind).transpose()?;
    log::announce(format_args!("listening on {}", door.addr()));
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    for r in &config.routes.list {
        log::announce(format_args!(
            "{} {scheme}://{}{} -> {}",
            r.method.as_str(),
            door.addr(),
            r.pattern,
            r.runs()
        ));
    }
    if config.routes.index {
        log::announce(format_args!(
            "demo mode (no route given): GET {scheme}://{}/ lists the routes",
            door.addr()
        ));
    }
    if let Some(admin) = &admin {
        let at = admin.local_addr()?;
        log::announce(format_args!(
            "admin on {at} (http://{at}/metrics, /status, /health, /ready)"
        ));
    }
    for warning in &config.warnings {
        log::event(format_args!("warning: {warning}"));
    }
    for problem in program_problems(&config) {
        log::event(format_args!("{problem}: its requests will get 502"));
    }
    log::event(format_args!(
        "queue {}, max-reading {}, {} route(s), {open_files} open files allowed",
        config.queue,
        config.max_reading,
        config.routes.list.len(),
    ));

    let auto = matches!(config.handlers, config::Handlers::Auto(_));
    let boot: Vec<_> = config
        .routes
        .list
        .iter()
        .filter(|r| r.worker.as_ref().is_some_and(|w| w.start == Start::Boot))
        .map(Arc::downgrade)
        .collect();
    let bounds = Bounds {
        capacity: config.queue,
        handlers: config.handlers.count(),
        body_memory: config.body_memory,
        boot_workers: !boot.is_empty(),
    };
    let (state, room) = State::new(bounds, auto);
    // Room for a burst of connections while the gate reads (a full mailbox
    // closes the newest), whatever the queue's size.
    let (inbox, mailbox) =
        gate::mailbox(config.max_reading + config.queue + 512, Arc::clone(&state))?;

    // The handler: runs one program at a time (one per handler, if more are
    // configured); a standby waits beside each, and the watchdog watches
    // them, their programs and the light.
    let handlers = state
        .handlers
        .iter()
        .enumerate()
        .map(|(index, view)| {
            Arc::new(Handler {
                state: Arc::clone(&state),
                index,
                view: Arc::clone(view),
                inbox: inbox.clone(),
                pace: config.pace,
                boot: boot.clone(),
            })
        })
        .collect();
    watchdog::start_handlers(handlers, config.light)?;

    // The gate: reads requests, queues jobs, writes answers.
    let settings = Settings {
        limits: Limits {
            max_body: config.max_body,
            ..Limits::default()
        },
        immune: config.immune,
        max_reading: config.max_reading,
        read_timeout: config.read_timeout,
        handshake_timeout: config.handshake_timeout,
        tls: config.tls.clone(),
        write_timeout: config.write_timeout,
        keep_alive: config.keep_alive,
        answer_memory: config.answer_memory,
    };
    let routes = Arc::new(config.routes);
    let (gate_state, gate_routes) = (Arc::clone(&state), Arc::clone(&routes));
    let epoll = Arc::new(sys::Epoll::new()?);
    spawn("gate", move || {
        watchdog::restarting(Part::Gate, &gate_state, || {
            Gate::new(
                settings.clone(),
                Arc::clone(&gate_routes),
                Arc::clone(&gate_state),
                Arc::clone(&epoll),
            )
            .run(&mailbox);
        });
    })?;

    // The admin endpoint: /health, /ready, /metrics, /status.
    let mut admin_reloads = None;
    if let Some(admin) = admin {
        let (reloads, reloaded) = sync_channel(1);
        admin_reloads = Some(reloads);
        let (admin_state, admin_routes) = (Arc::clone(&state), Arc::clone(&routes));
        let admin_allow = config.admin_allow;
        spawn("admin", move || {
            admin::run(&admin, &admin_allow, &admin_state, admin_routes, &reloaded)
        })?;
    }

    // Signals: SIGTERM/SIGINT drain, SIGHUP reloads the routes.
    let signals = Signals {
        pipe: signal_pipe,
        state: Arc::clone(&state),
        door: Arc::clone(&door),
        inbox: inbox.clone(),
        admin: admin_reloads,
        args,
        routes,
        drain_delay: config.drain_delay,
    };
    spawn("signals", move || signals.run())?;

    // The listener, on the main thread: accepts while there is room, until
    // shutdown begins; then what is held is drained.
    let listener = Listener {
        door,
        state: Arc::clone(&state),
        inbox,
        on_full: config.on_full,
        allow: config.allow,
        room,
    };
    watchdog::restarting(Part::Listener, &state, || listener.run());
    signals::drain(
        &state,
        &listener.room,
        &listener.inbox,
        config.drain_timeout,
    );
    cgroup::end_all();
    log::flush(Duration::from_secs(2));
    Ok(())
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> io::Result<()> {
    thread::Builder::new()
        .name(name.into())
        .stack_size(256 * 1024)
        .spawn(body)
        .map(drop)
}
