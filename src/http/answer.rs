//! Parses what an HTTP worker answers (RFC 9112 §4, §6.3): the status line,
//! the header fields (with the request parser's rules and limits), and how
//! the body is delimited.
//!
//! Must never: touch a socket, or allocate beyond the head limits.

use super::request::{Framing, Header, Limits, body_framing, find_lf, parse_fields, strip_cr};
use super::{Method, RequestError, Status};

/// How an answer's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// No body: an answer to HEAD, a 204 or a 304.
    Empty,
    Length(u64),
    Chunked,
    /// Neither length nor chunks: the body ends when the worker closes.
    UntilClose,
}

#[derive(Debug, PartialEq, Eq)]
pub struct AnswerHead {
    pub status: u16,
    pub headers: Vec<Header>,
    pub body: Body,
}

/// Parses an answer head at the start of `buf`, the answer to a request
/// with `method` (a HEAD's has no body). `Complete((head, n))`: the body starts at `buf[n..]`.
/// An interim (1xx) head is complete too: the caller skips it.
pub fn parse_answer_head(
    buf: &[u8],
    limits: &Limits,
    method: Method,
) -> Result<Status<(AnswerHead, usize)>, RequestError> {
    let line_window = buf.get(..limits.max_line).unwrap_or(buf);
    let Some(line_end) = find_lf(line_window) else {
        return if buf.len() >= limits.max_line || !b"HTTP/1.".starts_with(prefix(buf, 7)) {
            Err(RequestError::BadRequest)
        } else {
            Ok(Status::Partial)
        };
    };
    let (status, minor) = status_line(strip_cr(line_window.get(..line_end).unwrap_or_default())?)?;
    let Status::Complete((headers, end)) = parse_fields(buf, line_end + 1, limits)? else {
        return Ok(Status::Partial);
    };
    let values = |name: &str| {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
            .collect()
    };
    let body = if method == Method::Head || status < 200 || status == 204 || status == 304 {
        Body::Empty
    } else {
        let framing = body_framing(
            values("transfer-encoding"),
            values("content-length"),
            minor,
            limits.max_body,
        )?;
        match framing {
            Framing::None => Body::UntilClose,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked,
        }
    };
    Ok(Status::Complete((
        AnswerHead {
            status,
            headers,
            body,
        },
        end,
    )))
}

fn prefix(buf: &[u8], n: usize) -> &[u8] {
    buf.get(..n).unwrap_or(buf)
}

/// `HTTP/1.x SP 3DIGIT [SP reason]`: the status and the minor version.
fn status_line(line: &[u8]) -> Result<(u16, u8), RequestError> {
    let bad = RequestError::BadRequest;
    let rest = line.strip_prefix(b"HTTP/1.").ok_or(bad)?;
    let (&minor, rest) = rest.split_first().ok_or(bad)?;
    let rest = rest.strip_prefix(b" ").ok_or(bad)?;
    let (code, reason) = rest.split_at_checked(3).ok_or(bad)?;
    if !minor.is_ascii_digit()
        || !code.iter().all(u8::is_ascii_digit)
        || !(reason.is_empty() || reason.starts_with(b" "))
    {
        return Err(bad);
    }
    let status = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&status) {
        return Err(bad);
    }
    Ok((status, u8::from(minor != b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: Method) -> Result<Status<(AnswerHead, usize)>, RequestError> {
        parse_answer_head(raw.as_bytes(), &Limits::default(), method)
    }

    fn body(raw: &str) -> Body {
        match parse(raw, Method::Get) {
            Ok(Status::Complete((head, _))) => head.body,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn answer_heads() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
        let Ok(Status::Complete((head, n))) = parse(raw, Method::Get) else {
            panic!()
        };
        assert_eq!(
            (head.status, head.body, n),
            (200, Body::Length(5), raw.len() - 5)
        );
        assert_eq!(head.headers.len(), 2);
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Body::Chunked
        );
        assert_eq!(body("HTTP/1.0 200 OK\r\n\r\n"), Body::UntilClose);
        assert_eq!(body("HTTP/1.1 204 No Content\r\n\r\n"), Body::Empty);
        assert_eq!(body("HTTP/1.1 100 Continue\r\n\r\n"), Body::Empty);
        assert_eq!(body("HTTP/1.1 503\r\n\r\n"), Body::UntilClose);
        let Ok(Status::Complete((head, _))) =
            parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", Method::Head)
        else {
            panic!()
        };
        assert_eq!(head.body, Body::Empty);
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-", Method::Get),
            Ok(Status::Partial)
        );
        assert_eq!(parse("HTTP/1", Method::Get), Ok(Status::Partial));
    }

    #[test]
    fn malformed_answers_are_refused() {
        for raw in [
            "HTTP/2 200 OK\r\n\r\n",
            "HTTP/1.1 20 OK\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 600 Nope\r\n\r\n",
            "HTTP/1.1 200OK\r\n\r\n",
            "garbage\r\n\r\n",
            "SSH-2.0-OpenSSH",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
        ] {
            assert!(parse(raw, Method::Get).is_err(), "{raw:?}");
        }
    }
}
