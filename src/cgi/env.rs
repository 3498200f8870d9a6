//! The environment a program runs in: PATH, the route's own variables, and
//! the CGI/1.1 meta-variables of the request (RFC 3875 §4.1).
//!
//! Must never: pass the server's own environment on (only PATH), or create
//! `HTTP_PROXY` from a request header (the httpoxy hole).

use crate::queue::Job;
use crate::search;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// The whole environment for `job`'s program.
pub fn environment(job: &Job) -> Vec<(OsString, OsString)> {
    let head = &job.head;
    let mut env: Vec<(OsString, OsString)> = Vec::with_capacity(24 + head.headers.len());
    let mut set = |k: &str, v: OsString| env.push((OsString::from(k), v));
    set("PATH", search::server_path());
    set("GATEWAY_INTERFACE", "CGI/1.1".into());
    set(
        "SERVER_SOFTWARE",
        concat!("fiddler_crab/", env!("CARGO_PKG_VERSION")).into(),
    );
    set(
        "SERVER_PROTOCOL",
        format!("HTTP/1.{}", head.minor_version).into(),
    );
    set("REQUEST_METHOD", head.method.as_str().into());
    set("REQUEST_URI", head.target.clone().into());
    set("SCRIPT_NAME", job.script_name.clone().into());
    set("PATH_INFO", job.path_info.clone().into());
    set("QUERY_STRING", head.query.clone().into());
    set("REMOTE_ADDR", job.conn.peer.ip().to_string().into());
    // No DNS look-up: RFC 3875 §4.1.9 allows REMOTE_ADDR in its place.
    set("REMOTE_HOST", job.conn.peer.ip().to_string().into());
    // §4.1.1: the scheme of the Authorization field (its credentials stay out).
    if let Some(scheme) = head
        .header("authorization")
        .and_then(|a| a.split(|&b| b == b' ').next())
        .filter(|s| !s.is_empty())
    {
        set("AUTH_TYPE", OsString::from_vec(scheme.to_vec()));
    }
    // §4.1.6: PATH_INFO mapped into the route's working directory, if it has one.
    if let (Some(dir), false) = (&job.route.sandbox.dir, job.path_info.is_empty()) {
        set(
            "PATH_TRANSLATED",
            dir.join(job.path_info.trim_start_matches('/')).into(),
        );
    }
    set("REMOTE_PORT", job.conn.peer.port().to_string().into());
    // The common extension (Apache, nginx): set over TLS, as "on".
    if job.conn.transport.is_tls() {
        set("HTTPS", "on".into());
        set("REQUEST_SCHEME", "https".into());
    } else {
        set("REQUEST_SCHEME", "http".into());
    }
    if let Ok(local) = job.conn.stream.local_addr() {
        set("SERVER_PORT", local.port().to_string().into());
        let name = match head.host().map(strip_port) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => local.ip().to_string(),
        };
        set("SERVER_NAME", name.into());
    }
    // RFC 3875 §4.1.2: CONTENT_LENGTH only when there is a body; a chunked
    // body was de-chunked, so its length is known now.
    if !job.body.is_empty() {
        set("CONTENT_LENGTH", job.body.len().to_string().into());
    }
    if let Some(ct) = head.header("content-type") {
        set("CONTENT_TYPE", OsString::from_vec(ct.to_vec()));
    }
    let mut vars: Vec<(String, Vec<u8>)> = Vec::new();
    for h in &head.headers {
        let Some(name) = meta_name(&h.name) else {
            continue;
        };
        match vars.iter_mut().find(|(n, _)| *n == name) {
            // RFC 3875 §4.1.18: several fields of one name become one, comma-separated.
            Some((_, value)) => {
                value.extend_from_slice(b", ");
                value.extend_from_slice(&h.value);
            }
            None => vars.push((name, h.value.clone())),
        }
    }
    env.extend(
        vars.into_iter()
            .map(|(n, v)| (OsString::from(n), OsString::from_vec(v))),
    );
    // The route's own variables last, so they win.
    env.extend(job.route.env.iter().cloned());
    env
}

/// `User-Agent` → `HTTP_USER_AGENT`. None for fields that have variables of
/// their own, for `Proxy` (httpoxy), for credentials (RFC 3875 §4.1.18:
/// `Authorization`, `Proxy-Authorization`), and for names with characters
/// other than letters, digits and `-` (an `_` would let `X_A` pose as `X-A`).
fn meta_name(field: &str) -> Option<String> {
    let skip = [
        "content-length",
        "content-type",
        "proxy",
        "authorization",
        "proxy-authorization",
    ];
    if skip.iter().any(|s| field.eq_ignore_ascii_case(s))
        || !field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return None;
    }
    let upper: String = field
        .bytes()
        .map(|b| {
            if b == b'-' {
                '_'
            } else {
                char::from(b.to_ascii_uppercase())
            }
        })
        .collect();
    Some(format!("HTTP_{upper}"))
}

fn strip_port(host: &str) -> &str {
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(meta_name("User-Agent").as_deref(), Some("HTTP_USER_AGENT"));
        assert_eq!(meta_name("x-a").as_deref(), Some("HTTP_X_A"));
        assert_eq!(meta_name("X_A"), None);
        assert_eq!(meta_name("Proxy"), None);
        assert_eq!(meta_name("Proxy-Authorization"), None);
        assert_eq!(meta_name("Content-Type"), None);
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("a.b"), "a.b");
    }
}
