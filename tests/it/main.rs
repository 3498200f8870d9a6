//! The integration tests, one crate (one link step): each module starts the
//! real binary on ephemeral ports and talks to it over real sockets, with
//! real programs. `support` is what they share; heavy tests (floods, swarms)
//! take `support::heavy` so that no two run at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../support/mod.rs"]
mod support;

mod access;
mod cgi;
mod config;
mod escapes;
mod exhaustion;
mod http;
mod http_workers;
mod memory;
mod operations;
mod programs;
mod queue;
mod slow_clients;
mod stream;
mod stream_workers;
mod tls;
mod watchdog;
mod workers;
