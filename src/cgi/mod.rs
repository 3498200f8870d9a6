//! CGI/1.1 (RFC 3875) both ways: the meta-variables a program gets (`env`)
//! and, for routes in CGI mode, the header block it answers with (`output`).

mod env;
mod output;

pub use env::environment;
pub use output::{Reply, parse};
