//! Argument templates: a route's command may hold `{query.NAME}`,
//! `{header.NAME}` and `{path}` placeholders, parsed once at start-up and
//! filled per request; an HTTP worker's, `{port}`, filled at each start. A placeholder fills part of ONE argument, whatever
//! the value holds (spaces, `;`, `$(…)`, newlines): nothing is ever split or
//! given to a shell. `{{` and `}}` stand for `{` and `}`.
//!
//! Must never: produce an argument longer than the route's cap, or one with
//! a NUL byte (execve could not take it).

use crate::http::request::Head;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Query(String),
    Header(String),
    /// The request's PATH_INFO (decoded, dot segments removed).
    Path,
    /// The loopback port an HTTP worker is to listen on.
    Port,
}

/// One argument: pieces joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg(Vec<Piece>);

/// What a missing query parameter or header becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// The request is refused with 400.
    Reject,
    /// The placeholder becomes the empty string.
    Empty,
}

/// Whether a request's value may begin an argument with `-`, where the
/// program would take it for an option (`?k=-o/tmp/x` to `sort {query.k}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dashes {
    /// Refused with 400: a request's value never becomes an option.
    Refuse,
    /// Let through (`allow_options = true`), for a program that wants them.
    Allow,
}

/// Why a request cannot fill its route's command: each is a 400.
#[derive(Debug, PartialEq, Eq)]
pub enum FillError {
    Missing(String),
    TooLong(String),
    Nul(String),
    Option(String),
}

impl fmt::Display for FillError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            FillError::Missing(p) => write!(f, "{p} is missing from the request"),
            FillError::TooLong(p) => write!(f, "{p} makes an argument longer than max_arg"),
            FillError::Nul(p) => write!(f, "{p} holds a NUL byte"),
            FillError::Option(p) => write!(
                f,
                "{p} begins an argument with `-`, which would make it an option"
            ),
        }
    }
}

impl Arg {
    /// True if the argument holds no placeholder: it is the same for every request.
    pub fn is_literal(&self) -> bool {
        self.0.iter().all(|p| matches!(p, Piece::Text(_)))
    }

    /// True if the argument holds `{port}` and no other placeholder.
    pub fn is_port(&self) -> bool {
        self.0.contains(&Piece::Port)
            && self
                .0
                .iter()
                .all(|p| matches!(p, Piece::Text(_) | Piece::Port))
    }

    /// Parses one argument of a command; an error says what is wrong.
    pub fn parse(text: &str) -> Result<Arg, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            let (before, at) = rest.split_at(i);
            literal.push_str(before);
            if let Some(after) = at.strip_prefix("{{").or_else(|| at.strip_prefix("}}")) {
                literal.push_str(at.get(..1).unwrap_or_default());
                rest = after;
                continue;
            }
            let Some(end) = at.find('}').filter(|_| at.starts_with('{')) else {
                return Err(if at.starts_with('{') {
                    format!("`{text}`: a `{{` is not closed (write `{{{{` for a brace)")
                } else {
                    format!("`{text}`: a lone `}}` (write `}}}}` for a brace)")
                });
            };
            let name = at.get(1..end).unwrap_or_default();
            let piece = match name.split_once('.') {
                _ if name == "path" => Piece::Path,
                _ if name == "port" => Piece::Port,
                Some(("query", q)) if !q.is_empty() => Piece::Query(q.to_owned()),
                Some(("header", h)) if !h.is_empty() => Piece::Header(h.to_owned()),
                _ => {
                    return Err(format!(
                        "`{text}`: unknown placeholder `{{{name}}}` (use {{query.NAME}}, {{header.NAME}} or {{path}}; {{{{ for a brace)"
                    ));
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
            rest = at.get(end + 1..).unwrap_or_default();
        }
        literal.push_str(rest);
        if !literal.is_empty() || pieces.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Arg(pieces))
    }
}

/// The command for one request.
pub fn fill(
    args: &[Arg],
    head: &Head,
    path_info: &str,
    missing: Missing,
    max_len: usize,
    dashes: Dashes,
) -> Result<Vec<OsString>, FillError> {
    args.iter()
        .map(|arg| {
            let mut out: Vec<u8> = Vec::new();
            for piece in &arg.0 {
                let (value, name): (Option<Vec<u8>>, String) = match piece {
                    Piece::Text(t) => (Some(t.as_bytes().to_vec()), String::new()),
                    Piece::Path => (Some(path_info.as_bytes().to_vec()), "{path}".into()),
                    // Only an HTTP worker's command holds it (the config says so).
                    Piece::Port => (None, "{port}".into()),
                    Piece::Query(q) => (query_value(&head.query, q), format!("{{query.{q}}}")),
                    Piece::Header(h) => (
                        head.header(h).map(<[u8]>::to_vec),
                        format!("{{header.{h}}}"),
                    ),
                };
                let value = match (value, missing) {
                    (Some(v), _) => v,
                    (None, Missing::Empty) => Vec::new(),
                    (None, Missing::Reject) => return Err(FillError::Missing(name)),
                };
                if value.contains(&0) {
                    return Err(FillError::Nul(name));
                }
                let begins = out.is_empty() && !matches!(piece, Piece::Text(_));
                if begins && value.first() == Some(&b'-') && dashes == Dashes::Refuse {
                    return Err(FillError::Option(name));
                }
                out.extend_from_slice(&value);
                // The bound is for what requests fill in: an argument the
                // config wrote whole is never refused.
                if out.len() > max_len && !arg.is_literal() {
                    return Err(FillError::TooLong(name));
                }
            }
            Ok(OsString::from_vec(out))
        })
        .collect()
}

/// An HTTP worker's command, to listen on `port`: every argument is text
/// and `{port}` (the config allows nothing else in it).
pub fn with_port(args: &[Arg], port: u16) -> Vec<OsString> {
    args.iter()
        .map(|arg| {
            let mut out = String::new();
            for piece in &arg.0 {
                match piece {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Port => out.push_str(&port.to_string()),
                    Piece::Path | Piece::Query(_) | Piece::Header(_) => {}
                }
            }
            OsString::from(out)
        })
        .collect()
}

/// The first value of `name` in a query string, form-decoded (`+` is a
/// space, `%XX` a byte). None if absent or not decodable.
fn query_value(query: &str, name: &str) -> Option<Vec<u8>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k)? == name.as_bytes())
            .then(|| form_decode(v))
            .flatten()
    })
}

fn form_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            _ => out.push(b),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Status;
    use crate::http::request::{Limits, parse_head};

    fn head(raw: &str) -> Head {
        match parse_head(raw.as_bytes(), &Limits::default()) {
            Ok(Status::Complete((h, _))) => h,
            other => panic!("{other:?}"),
        }
    }

    fn run(args: &[&str], raw: &str, missing: Missing) -> Result<Vec<String>, FillError> {
        let args: Vec<Arg> = args.iter().map(|a| Arg::parse(a).unwrap()).collect();
        fill(&args, &head(raw), "/p/q", missing, 64, Dashes::Refuse)
            .map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn fills_one_argument_each() {
        let raw = "GET /x?q=a+b%3B%20%24(id)&n=&q=second HTTP/1.1\r\nHost: h\r\nX-Lang: fr\r\n\r\n";
        assert_eq!(
            run(
                &[
                    "tool",
                    "--q={query.q}",
                    "{header.x-lang}{path}",
                    "{{lit}}",
                    "{query.n}"
                ],
                raw,
                Missing::Reject
            ),
            Ok(vec![
                "tool".into(),
                "--q=a b; $(id)".into(),
                "fr/p/q".into(),
                "{lit}".into(),
                String::new()
            ])
        );
        assert_eq!(
            run(&["{query.zz}"], raw, Missing::Reject),
            Err(FillError::Missing("{query.zz}".into()))
        );
        // max_arg (64 here) bounds what a request fills in, not what the
        // config wrote whole.
        let literal = "L".repeat(100);
        assert_eq!(
            run(&[&literal], raw, Missing::Reject),
            Ok(vec![literal.clone()])
        );
        assert_eq!(
            run(&[&format!("{literal}{{query.q}}")], raw, Missing::Reject),
            Err(FillError::TooLong("".into()))
        );
        assert_eq!(
            run(&["a{query.zz}b"], raw, Missing::Empty),
            Ok(vec!["ab".into()])
        );
        let long = format!("GET /x?q={} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(65));
        assert_eq!(
            run(&["{query.q}"], &long, Missing::Reject),
            Err(FillError::TooLong("{query.q}".into()))
        );
        let nul = "GET /x?q=a%00b HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(
            run(&["{query.q}"], nul, Missing::Reject),
            Err(FillError::Nul("{query.q}".into()))
        );
        // A value that begins an argument never begins it with `-`; inside
        // one (`--k={query.k}`, or after text) it may.
        let dash = "GET /x?k=-o/tmp/x&e= HTTP/1.1\r\nHost: h\r\n\r\n";
        for args in [&["{query.k}"][..], &["{query.e}{query.k}"]] {
            assert_eq!(
                run(args, dash, Missing::Reject),
                Err(FillError::Option("{query.k}".into()))
            );
        }
        assert_eq!(
            run(&["--k={query.k}", "x{query.k}"], dash, Missing::Reject),
            Ok(vec!["--k=-o/tmp/x".into(), "x-o/tmp/x".into()])
        );
        let args = [Arg::parse("{query.k}").unwrap()];
        let filled = fill(&args, &head(dash), "/", Missing::Reject, 64, Dashes::Allow);
        assert_eq!(filled, Ok(vec!["-o/tmp/x".into()]));
    }

    #[test]
    fn parse_errors() {
        assert!(
            Arg::parse("{nope}")
                .unwrap_err()
                .contains("unknown placeholder `{nope}`")
        );
        assert!(Arg::parse("{query.}").is_err());
        assert!(Arg::parse("a}b").unwrap_err().contains("a lone `}`"));
        assert!(Arg::parse("{path").unwrap_err().contains("is not closed"));
        assert_eq!(
            Arg::parse("").unwrap(),
            Arg(vec![Piece::Text(String::new())])
        );
    }
}
