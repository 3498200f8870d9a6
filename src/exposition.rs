//! The two ways the counts are shown: /metrics (Prometheus text format
//! 0.0.4) and /status (JSON), and whether the server is ready.
//!
//! Owns nothing: it reads `State`, the routes and their counters
//! (`metrics.rs`). Must never: write a counter, or take a lock.

use crate::light::Color;
use crate::log;
use crate::metrics::{BUCKETS, Reason};
use crate::route::{Route, Routes};
use crate::state::{Dropped, HandlerState, Part, State};
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// The label that names a route: `POST /echo`.
fn label(r: &Route) -> String {
    // Paths are visible ASCII without `"` or `\` (`PathRule::parse`).
    format!("{} {}", r.method.as_str(), r.pattern)
}

/// True while a load balancer should send work here.
pub fn ready(s: &State) -> bool {
    s.has_room() && !s.leaving() && s.warm()
}

/// /metrics text being written: each family's HELP and TYPE, then its
/// samples, together (the format asks for one group per family). A family
/// with no sample yet (no answer sent, no warm worker) is left out.
struct Exposition {
    text: String,
    family: Option<[&'static str; 3]>,
}

impl Exposition {
    fn family(&mut self, name: &'static str, kind: &'static str, help: &'static str) {
        self.family = Some([name, kind, help]);
    }

    fn sample(&mut self, args: std::fmt::Arguments) {
        if let Some([name, kind, help]) = self.family.take() {
            let _ = write!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
        }
        let _ = self.text.write_fmt(args);
        self.text.push('\n');
    }
}

/// /metrics: every counter and gauge, in Prometheus text format 0.0.4.
pub fn prometheus(s: &State, routes: &Routes) -> String {
    let mut m = Exposition {
        text: String::with_capacity(4096),
        family: None,
    };
    let labels: Vec<String> = routes.list.iter().map(|r| label(r)).collect();
    let each_route = || routes.list.iter().zip(&labels);
    m.family(
        "fiddler_queue_depth",
        "gauge",
        "Requests held: waiting or running.",
    );
    m.sample(format_args!("fiddler_queue_depth {}", s.held()));
    m.family(
        "fiddler_queue_capacity",
        "gauge",
        "Most requests held (--queue).",
    );
    m.sample(format_args!("fiddler_queue_capacity {}", s.capacity));
    m.family(
        "fiddler_connections",
        "gauge",
        "Connections the gate is reading or writing.",
    );
    let (reading, writing, answer_bytes) = s.connections();
    for (state, n) in [("reading", reading), ("writing", writing)] {
        m.sample(format_args!("fiddler_connections{{state=\"{state}\"}} {n}"));
    }
    m.family(
        "fiddler_memory_bytes",
        "gauge",
        "Bytes held for request bodies (capped by body_memory) and for answers being written (capped by answer_memory).",
    );
    let memory = [("bodies", s.body_bytes()), ("answers", answer_bytes)];
    for (held_for, bytes) in memory {
        m.sample(format_args!(
            "fiddler_memory_bytes{{use=\"{held_for}\"}} {bytes}"
        ));
    }
    m.family(
        "fiddler_handler_state",
        "gauge",
        "Handlers in each state (one-hot with one handler).",
    );
    for state in HandlerState::ALL {
        m.sample(format_args!(
            "fiddler_handler_state{{state=\"{}\"}} {}",
            state.name(),
            s.handlers_in(state)
        ));
    }
    m.family("fiddler_handlers", "gauge", "Handlers (`handlers`).");
    m.sample(format_args!("fiddler_handlers {}", s.handlers.len()));
    m.family(
        "fiddler_handlers_allowed",
        "gauge",
        "Handlers that may take work now (all, or one while an auto light is not green).",
    );
    m.sample(format_args!(
        "fiddler_handlers_allowed {}",
        s.handlers_allowed()
    ));
    m.family(
        "fiddler_handler_restarts_total",
        "counter",
        "Handler threads replaced.",
    );
    m.sample(format_args!(
        "fiddler_handler_restarts_total {}",
        s.restarts(Part::Handler)
    ));
    m.family(
        "fiddler_restarts_total",
        "counter",
        "Restarts of each part.",
    );
    for part in Part::ALL {
        m.sample(format_args!(
            "fiddler_restarts_total{{part=\"{}\"}} {}",
            part.name(),
            s.restarts(part)
        ));
    }
    m.family(
        "fiddler_requests_total",
        "counter",
        "Answers sent, by route (- for none) and status.",
    );
    for (status, n) in s.unrouted.seen() {
        m.sample(format_args!(
            "fiddler_requests_total{{route=\"-\",status=\"{status}\"}} {n}"
        ));
    }
    for (r, route) in each_route() {
        for (status, n) in r.stats.answers.seen() {
            m.sample(format_args!(
                "fiddler_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            ));
        }
    }
    m.family(
        "fiddler_dropped_total",
        "counter",
        "Connections dropped or turned away, by reason.",
    );
    for why in Dropped::ALL {
        m.sample(format_args!(
            "fiddler_dropped_total{{reason=\"{}\"}} {}",
            why.name(),
            s.dropped(why)
        ));
    }
    m.family(
        "fiddler_programs_started_total",
        "counter",
        "Programs started.",
    );
    m.sample(format_args!(
        "fiddler_programs_started_total {}",
        s.programs_started()
    ));
    m.family(
        "fiddler_program_seconds",
        "histogram",
        "Run time of programs, by route.",
    );
    for (r, route) in each_route() {
        let h = &r.stats.seconds;
        let mut cumulative = 0;
        let bounds = BUCKETS.iter().map(|&(le, _)| le).chain(["+Inf"]);
        for (le, n) in bounds.zip(&h.counts) {
            cumulative += n.load(Relaxed);
            m.sample(format_args!(
                "fiddler_program_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
            ));
        }
        let sum = h.sum_micros.load(Relaxed);
        m.sample(format_args!(
            "fiddler_program_seconds_sum{{route=\"{route}\"}} {}.{:06}",
            sum / 1_000_000,
            sum % 1_000_000
        ));
        m.sample(format_args!(
            "fiddler_program_seconds_count{{route=\"{route}\"}} {cumulative}"
        ));
    }
    m.family(
        "fiddler_program_failures_total",
        "counter",
        "Program runs that failed, by route and reason.",
    );
    for (r, route) in each_route() {
        for (reason, n) in Reason::ALL.iter().zip(&r.stats.failures) {
            m.sample(format_args!(
                "fiddler_program_failures_total{{route=\"{route}\",reason=\"{}\"}} {}",
                reason.name(),
                n.load(Relaxed)
            ));
        }
    }
    m.family(
        "fiddler_route_breaker_open",
        "gauge",
        "1 while a route's circuit breaker is open.",
    );
    for (r, route) in each_route() {
        m.sample(format_args!(
            "fiddler_route_breaker_open{{route=\"{route}\"}} {}",
            u8::from(r.breaker.is_open())
        ));
    }
    m.family(
        "fiddler_worker_starts_total",
        "counter",
        "Warm workers started, by route (first start, restarts, recycling).",
    );
    let workers = || each_route().filter(|(r, _)| r.worker.is_some());
    for (r, route) in workers() {
        m.sample(format_args!(
            "fiddler_worker_starts_total{{route=\"{route}\"}} {}",
            r.stats.worker_starts.load(Relaxed)
        ));
    }
    m.family(
        "fiddler_worker_cancels_total",
        "counter",
        "Requests a warm worker was asked to stop (client gone, deadline), by route and outcome: kept (it stopped in cancel_grace) or killed.",
    );
    for (r, route) in workers() {
        for (outcome, n) in ["kept", "killed"].iter().zip(&r.stats.cancels) {
            m.sample(format_args!(
                "fiddler_worker_cancels_total{{route=\"{route}\",outcome=\"{outcome}\"}} {}",
                n.load(Relaxed)
            ));
        }
    }
    m.family(
        "fiddler_light",
        "gauge",
        "The traffic light (available memory, load), one-hot.",
    );
    let light = s.light();
    for color in Color::ALL {
        m.sample(format_args!(
            "fiddler_light{{color=\"{}\"}} {}",
            color.name(),
            u8::from(light == color)
        ));
    }
    m.family(
        "fiddler_shedding",
        "gauge",
        "1 while the light sheds load (from red until green).",
    );
    m.sample(format_args!("fiddler_shedding {}", u8::from(s.shedding())));
    m.family(
        "fiddler_bans_active",
        "gauge",
        "Peers banned now for bad requests.",
    );
    m.sample(format_args!(
        "fiddler_bans_active {}",
        s.bans.active(Instant::now())
    ));
    m.family(
        "fiddler_draining",
        "gauge",
        "1 once a SIGTERM or SIGINT began the drain.",
    );
    m.sample(format_args!("fiddler_draining {}", u8::from(s.leaving())));
    m.family(
        "fiddler_log_lines_dropped_total",
        "counter",
        "Log lines dropped (writer behind).",
    );
    m.sample(format_args!(
        "fiddler_log_lines_dropped_total {}",
        log::dropped()
    ));
    m.family("fiddler_uptime_seconds", "gauge", "Seconds since start.");
    m.sample(format_args!(
        "fiddler_uptime_seconds {}",
        s.started.elapsed().as_secs()
    ));
    m.family("fiddler_build_info", "gauge", "Version.");
    m.sample(format_args!(
        "fiddler_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    ));
    m.text
}

/// /status: the same state, as one small JSON document.
pub fn status_json(s: &State, routes: &Routes) -> String {
    let (reading, writing, _) = s.connections();
    let phase = s.phase().name();
    let mut j = String::with_capacity(1024);
    let _ = write!(
        j,
        "{{\"version\":\"{}\",\"uptime_seconds\":{},\"phase\":\"{phase}\",\"ready\":{},\
         \"handlers\":{{\"count\":{},\"allowed\":{},\"idle\":{},\"busy\":{},\"failed\":{},\"restarts\":{}}},\
         \"queue\":{{\"depth\":{},\"capacity\":{}}},\
         \"connections\":{{\"reading\":{},\"writing\":{}}},\
         \"light\":\"{}\",\"shedding\":{},\
         \"programs_started\":{},\"bans_active\":{},\"dropped\":{{",
        env!("CARGO_PKG_VERSION"),
        s.started.elapsed().as_secs(),
        ready(s),
        s.handlers.len(),
        s.handlers_allowed(),
        s.handlers_in(HandlerState::Idle),
        s.handlers_in(HandlerState::Busy),
        s.handlers_in(HandlerState::Failed),
        s.restarts(Part::Handler),
        s.held(),
        s.capacity,
        reading,
        writing,
        s.light().name(),
        s.shedding(),
        s.programs_started(),
        s.bans.active(Instant::now()),
    );
    for (i, why) in Dropped::ALL.into_iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(j, "{comma}\"{}\":{}", why.name(), s.dropped(why));
    }
    let _ = write!(
        j,
        "}},\"unrouted_answers\":{},\"routes\":[",
        s.unrouted.total()
    );
    for (i, r) in routes.list.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(
            j,
            "{comma}{{\"method\":\"{}\",\"path\":\"{}\",\"answers\":{},\"breaker_open\":{}}}",
            r.method.as_str(),
            r.pattern,
            r.stats.answers.total(),
            r.breaker.is_open()
        );
    }
    j.push_str("]}\n");
    j
}
