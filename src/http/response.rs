//! Builds the bytes of a response: status line, `Date`, its framing
//! (`Content-Length`, `Transfer-Encoding: chunked`, or none for a 204, a 304
//! or a HEAD answer whose length is not known), the caller's headers,
//! `Connection: close` (or `keep-alive`), and the body kept apart so a large
//! program output is never copied.
//!
//! Must never: touch a socket, or emit a header from the outside world that
//! holds CR or LF.

use super::Method;
use std::fmt::Write as _;
use std::time::SystemTime;

/// What an answer carries: its body, or (to a HEAD request) its head only,
/// whose `Content-Length` is still the body's (RFC 9110 §9.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sends {
    Body,
    HeadOnly,
}

impl Sends {
    /// What the answer to a `method` request carries.
    pub fn to(method: Method) -> Sends {
        match method {
            Method::Head => Sends::HeadOnly,
            _ => Sends::Body,
        }
    }
}

/// A complete answer: the head (status line and headers) and the body.
/// `HEAD` answers carry the `Content-Length` of the body they leave out.
pub struct Response {
    pub status: u16,
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

impl Response {
    /// An answer with `body`, sent whole or (to HEAD) without it.
    pub fn new(status: u16, headers: &[(&str, &str)], mut body: Vec<u8>, sends: Sends) -> Response {
        // A program's output grew by doubling: what it holds past its length
        // is given back (for a large one, in place), so the answer holds no
        // more memory than it sends.
        body.shrink_to_fit();
        let length = Delimited::Length(body.len() as u64);
        if sends == Sends::HeadOnly || bodiless(status) {
            body = Vec::new();
        }
        Response {
            status,
            head: head(status, length, headers),
            body,
        }
    }

    /// The answer to a HEAD request whose body the server never had (a
    /// worker's): its length as the worker said it, if it did (RFC 9110
    /// §9.3.2: the length a GET would have, or none).
    pub fn head_only(status: u16, headers: &[(&str, &str)], length: Option<u64>) -> Response {
        Response {
            status,
            head: head(
                status,
                length.map_or(Delimited::Unsaid, Delimited::Length),
                headers,
            ),
            body: Vec::new(),
        }
    }

    /// The head of a streamed answer: the body follows in chunks.
    pub fn chunked_head(status: u16, headers: &[(&str, &str)]) -> Vec<u8> {
        head(status, Delimited::Chunked, headers)
    }

    /// The server's own short answer for `status`: text naming the status.
    pub fn plain(status: u16, headers: &[(&str, &str)], sends: Sends) -> Response {
        Response::text(status, headers, b"", sends)
    }

    /// The same, with the reason after the status line (`explain`).
    pub fn explained(status: u16, why: &[u8], sends: Sends) -> Response {
        Response::text(status, &[], why, sends)
    }

    fn text(status: u16, headers: &[(&str, &str)], why: &[u8], sends: Sends) -> Response {
        let mut body = format!("{status} {}\n", reason(status)).into_bytes();
        body.extend_from_slice(why);
        if !body.ends_with(b"\n") {
            body.push(b'\n');
        }
        let mut all = Vec::with_capacity(headers.len() + 1);
        all.push(("Content-Type", "text/plain; charset=utf-8"));
        all.extend_from_slice(headers);
        Response::new(status, &all, body, sends)
    }

    /// 503: busy or stopping, come back in `retry_after` seconds.
    pub fn unavailable(retry_after: u64, sends: Sends) -> Response {
        let secs = retry_after.to_string();
        Response::plain(503, &[("Retry-After", &secs)], sends)
    }

    /// Keeps the connection open after this answer: its `Connection: close`
    /// becomes `keep-alive`. False for a head that has none (the rest of a
    /// streamed answer, whose head went out already).
    pub fn keep_alive(&mut self) -> bool {
        const CLOSE: &[u8] = b"close\r\n\r\n";
        if !self.head.ends_with(CLOSE) {
            return false;
        }
        self.head
            .truncate(self.head.len().saturating_sub(CLOSE.len()));
        self.head.extend_from_slice(b"keep-alive\r\n\r\n");
        true
    }

    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }
}

/// How an answer's body is delimited, as its head says.
#[derive(Clone, Copy)]
enum Delimited {
    Length(u64),
    Chunked,
    /// No length said: a HEAD answer whose body's length is not known.
    Unsaid,
}

/// An answer's head: status line, `Date`, its framing field (none for a
/// 204 or 304), the caller's fields (any holding CR, LF or NUL left out),
/// `Connection: close`.
fn head(status: u16, delimited: Delimited, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut head = String::with_capacity(160);
    let _ = write!(head, "HTTP/1.1 {status} {}\r\nDate: ", reason(status));
    write_http_date(&mut head, SystemTime::now());
    head.push_str("\r\n");
    match delimited {
        _ if bodiless(status) => {}
        Delimited::Length(n) => {
            let _ = write!(head, "Content-Length: {n}\r\n");
        }
        Delimited::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
        Delimited::Unsaid => {}
    }
    for (name, value) in headers {
        if is_clean(name) && is_clean(value) {
            let _ = write!(head, "{name}: {value}\r\n");
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    head.into_bytes()
}

/// True for the statuses whose answer has no content, and so no
/// `Content-Length` or `Transfer-Encoding` either: 204 and 304 (RFC 9110
/// §8.6, RFC 9112 §6.1).
pub fn bodiless(status: u16) -> bool {
    status == 204 || status == 304
}

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn is_clean(s: &str) -> bool {
    !s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7, IMF-fixdate).
pub fn write_http_date(out: &mut String, now: SystemTime) {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (y, mo, d, h, mi, s) = civil(secs);
    let weekday = DAYS.get((secs / 86_400 % 7) as usize).unwrap_or(&"Thu");
    let month = MONTHS.get(mo.saturating_sub(1) as usize).unwrap_or(&"Jan");
    let _ = write!(
        out,
        "{weekday}, {d:02} {month} {y} {h:02}:{mi:02}:{s:02} GMT"
    );
}

/// Seconds since the epoch → (year, month 1–12, day, hour, minute, second), UTC.
/// Howard Hinnant's days-to-civil algorithm.
pub fn civil(secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        let at = |s| {
            let mut out = String::new();
            write_http_date(&mut out, SystemTime::UNIX_EPOCH + Duration::from_secs(s));
            out
        };
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(1_795_000_000), "Wed, 18 Nov 2026 11:06:40 GMT");
    }

    #[test]
    fn head_has_the_framing_headers() {
        let r = Response::new(
            200,
            &[("Content-Type", "text/plain")],
            b"hi".to_vec(),
            Sends::Body,
        );
        let head = String::from_utf8(r.head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\nDate: "));
        assert!(head.contains("\r\nContent-Length: 2\r\n"));
        assert!(head.ends_with("Content-Type: text/plain\r\nConnection: close\r\n\r\n"));
        assert_eq!(r.body, b"hi");
        let mut kept = Response::new(204, &[], Vec::new(), Sends::Body);
        assert!(kept.keep_alive());
        assert!(kept.head.ends_with(b"\r\nConnection: keep-alive\r\n\r\n"));
        let mut rest = Response {
            status: 200,
            head: Vec::new(),
            body: b"0\r\n\r\n".to_vec(),
        };
        assert!(!rest.keep_alive(), "a streamed answer's rest keeps nothing");
        let r = Response::new(
            200,
            &[("X-Bad", "a\r\nInjected: 1")],
            b"hi".to_vec(),
            Sends::HeadOnly,
        );
        assert!(!String::from_utf8(r.head).unwrap().contains("Injected"));
        assert!(r.body.is_empty());
    }
}
