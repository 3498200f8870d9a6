//! Parses what a client sends: the request head (request line and header
//! fields, RFC 9112 §2–5), the body framing it announces (§6), and chunked
//! bodies (§7.1), all incrementally and within fixed limits. The caller owns the
//! buffer; input that is merely incomplete is `Status::Partial`, never an error,
//! and every refusal is one `RequestError` (one status code).
//!
//! Must never: touch a socket, allocate without a bound (everything kept is
//! bounded by `Limits` or by the constants below), or panic on any input.

use super::{Method, RequestError, Status};

/// Empty lines tolerated before the request line (RFC 9112 §2.2).
const MAX_EMPTY_LINES: usize = 8;
/// Longest chunk-size line, extensions and line end included.
const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section, final empty line included.
const MAX_TRAILERS: usize = 16384;
/// Most hex digits in a chunk size (a u64).
const MAX_CHUNK_DIGITS: usize = 16;

/// Fixed limits; the gate builds one from the config.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest request line, CRLF included (414 beyond it). Default 8192.
    pub max_line: usize,
    /// Largest whole head: request line + header fields + final CRLF (431 beyond it). Default 16384.
    pub max_head: usize,
    /// Most header fields (431 beyond it). Default 64.
    pub max_headers: usize,
    /// Largest body, after de-chunking (413 beyond it).
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 8192,
            max_head: 16384,
            max_headers: 64,
            max_body: 1 << 20,
        }
    }
}

impl Limits {
    /// The most bytes a head can take, with the empty lines that may come
    /// before its request line: past it, `parse_head` refuses it (or has
    /// found its end).
    pub fn head_bound(&self) -> usize {
        self.max_head + 2 * MAX_EMPTY_LINES
    }
}

/// One header field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The name as sent (a token, so ASCII).
    pub name: String,
    /// The value with surrounding whitespace (OWS) trimmed.
    pub value: Vec<u8>,
}

/// How the body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The request-target exactly as sent (origin-form, `*`, or absolute-form).
    pub target: String,
    /// The path: percent-decoded, dot segments removed (RFC 3986 §5.2.4), always starts with '/'
    /// ("*" for the asterisk-form). For absolute-form targets, the path part of the URI.
    pub path: String,
    /// Everything after the first '?', undecoded ("" if none).
    pub query: String,
    /// An absolute-form target's authority (host and port), which stands
    /// in for `Host` (RFC 9112 §3.2.2).
    pub authority: Option<String>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<Header>,
    pub framing: Framing,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
}

impl Head {
    /// The first field with this name, compared ASCII-case-insensitively.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// The host the request is for: an absolute-form target's authority,
    /// which stands in for `Host` (RFC 9112 §3.2.2), else `Host` (both were
    /// checked to be a host and a port).
    pub fn host(&self) -> Option<&str> {
        match &self.authority {
            Some(authority) => Some(authority),
            None => self
                .header("host")
                .and_then(|h| std::str::from_utf8(h).ok()),
        }
    }

    /// Whether the client means to send another request on its connection
    /// (RFC 9112 §9.3): never if it lists `close`; else HTTP/1.1, and
    /// HTTP/1.0 only if it lists `keep-alive`.
    pub fn persistent(&self) -> bool {
        let named = connection_tokens(&self.headers);
        let listed = |t: &str| named.iter().any(|n| n == t);
        !listed("close") && (self.minor_version >= 1 || listed("keep-alive"))
    }
}

/// The lower-case names a `Connection` field lists (RFC 9110 §7.6.1).
pub fn connection_tokens(headers: &[Header]) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(|t| String::from_utf8_lossy(t).trim().to_ascii_lowercase())
        .collect()
}

/// Parses a head at the start of `buf`. `Complete((head, n))`: n = bytes of the head including the
/// blank line; the body starts at `buf[n..]`. `Partial`: no blank line yet and no limit passed.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Status<(Head, usize)>, RequestError> {
    let Status::Complete(start) = skip_empty_lines(buf)? else {
        return Ok(Status::Partial);
    };
    // `rest` begins with the request line; the head limits count from here.
    let rest = buf.get(start..).unwrap_or_default();

    let line_window = rest.get(..limits.max_line).unwrap_or(rest);
    let Some(line_end) = find_lf(line_window) else {
        // The line starts with a method: bytes that cannot begin one (a TLS
        // handshake, binary) are refused now, not at the read deadline.
        let method = rest.split(|&b| b == b' ').next().unwrap_or_default();
        if !method.iter().all(|&b| is_tchar(b)) {
            return Err(RequestError::BadRequest);
        }
        return if rest.len() >= limits.max_line {
            Err(RequestError::UriTooLong)
        } else {
            Ok(Status::Partial)
        };
    };
    let line = strip_cr(line_window.get(..line_end).unwrap_or_default())?;
    let request = parse_request_line(line)?;

    let Status::Complete((headers, end)) = parse_fields(rest, line_end + 1, limits)? else {
        return Ok(Status::Partial);
    };
    let head = finish_head(request, headers, limits)?;
    Ok(Status::Complete((head, start + end)))
}

/// The field lines of a head that starts at `rest[0]`, from `rest[pos]` on,
/// up to the blank line: `Complete((fields, n))`, n = bytes of the head
/// (from `rest[0]`) including the blank line. The whole head must end
/// within `max_head` bytes, with at most `max_headers` fields (431).
pub(super) fn parse_fields(
    rest: &[u8],
    mut pos: usize,
    limits: &Limits,
) -> Result<Status<(Vec<Header>, usize)>, RequestError> {
    let head_window = rest.get(..limits.max_head).unwrap_or(rest);
    let mut headers = Vec::new();
    loop {
        let window = head_window.get(pos..).unwrap_or_default();
        let Some(end) = find_lf(window) else {
            return if rest.len() > limits.max_head {
                Err(RequestError::HeadersTooLarge)
            } else {
                Ok(Status::Partial)
            };
        };
        let line = strip_cr(window.get(..end).unwrap_or_default())?;
        pos += end + 1;
        if line.is_empty() {
            return Ok(Status::Complete((headers, pos)));
        }
        if headers.len() >= limits.max_headers {
            return Err(RequestError::HeadersTooLarge);
        }
        headers.push(parse_field(line)?);
    }
}

/// Skips up to `MAX_EMPTY_LINES` empty lines; `Complete(n)`: the request line starts at n.
fn skip_empty_lines(buf: &[u8]) -> Result<Status<usize>, RequestError> {
    let mut pos = 0;
    for _ in 0..=MAX_EMPTY_LINES {
        pos += match buf.get(pos..).unwrap_or_default() {
            [] | [b'\r'] => return Ok(Status::Partial),
            [b'\n', ..] => 1,
            [b'\r', b'\n', ..] => 2,
            [b'\r', ..] => return Err(RequestError::BadRequest),
            _ => return Ok(Status::Complete(pos)),
        };
    }
    Err(RequestError::BadRequest)
}

pub(super) fn find_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// A line without its LF: drops one CR before it (CRLF), refuses any other CR (§2.2).
pub(super) fn strip_cr(line: &[u8]) -> Result<&[u8], RequestError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.contains(&b'\r') {
        return Err(RequestError::BadRequest);
    }
    Ok(line)
}

/// tchar (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// Field value bytes: HTAB, SP, VCHAR, obs-text (RFC 9110 §5.5).
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn ascii_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

struct RequestLine {
    method: Method,
    target: String,
    path: String,
    query: String,
    authority: Option<String>,
    minor_version: u8,
}

/// `method SP request-target SP HTTP-version`, single spaces only (§3).
fn parse_request_line(line: &[u8]) -> Result<RequestLine, RequestError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::BadRequest);
    };
    if !is_token(method) {
        return Err(RequestError::BadRequest);
    }
    let minor_version = parse_version(version)?;
    let method = Method::from_token(method).ok_or(RequestError::NotImplemented)?;
    let (path, query, authority) = parse_target(method, target)?;
    Ok(RequestLine {
        method,
        target: ascii_string(target),
        path,
        query,
        authority,
        minor_version,
    })
}

fn parse_version(version: &[u8]) -> Result<u8, RequestError> {
    match version {
        b"HTTP/1.1" => Ok(1),
        b"HTTP/1.0" => Ok(0),
        // A later HTTP/1.x is answered as 1.1 (RFC 9110 §6.2).
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major == b'1' {
                Ok(1)
            } else {
                Err(RequestError::VersionNotSupported)
            }
        }
        _ => Err(RequestError::BadRequest),
    }
}

/// The decoded, normalized path, the raw query and (absolute-form) the
/// authority of a request-target (§3.2).
fn parse_target(
    method: Method,
    target: &[u8],
) -> Result<(String, String, Option<String>), RequestError> {
    // A fragment is never part of a request-target (§3.2).
    if target.is_empty()
        || target.contains(&b'#')
        || !target.iter().all(|b| (0x21..=0x7e).contains(b))
    {
        return Err(RequestError::BadRequest);
    }
    if target == b"*" {
        // asterisk-form is only for a server-wide OPTIONS (§3.2.4).
        return match method {
            Method::Options => Ok(("*".to_string(), String::new(), None)),
            _ => Err(RequestError::BadRequest),
        };
    }
    let (before_query, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (
            target.get(..i).unwrap_or_default(),
            target.get(i + 1..).unwrap_or_default(),
        ),
        None => (target, &[][..]),
    };
    let (authority, raw_path) = if before_query.starts_with(b"/") {
        (None, before_query)
    } else {
        let (authority, path) = absolute_form(before_query)?;
        (Some(ascii_string(authority)), path)
    };
    let path = remove_dot_segments(&percent_decode(raw_path)?);
    Ok((path, ascii_string(query), authority))
}

/// The authority and the path ("/" if empty) of an absolute-form
/// `http://authority/path` target (§3.2.2).
fn absolute_form(uri: &[u8]) -> Result<(&[u8], &[u8]), RequestError> {
    let after_scheme = ["http://", "https://"]
        .iter()
        .find_map(|scheme| {
            let (head, rest) = uri.split_at_checked(scheme.len())?;
            head.eq_ignore_ascii_case(scheme.as_bytes()).then_some(rest)
        })
        .ok_or(RequestError::BadRequest)?;
    let (authority, path) = match after_scheme.iter().position(|&b| b == b'/') {
        Some(i) => after_scheme.split_at_checked(i).unwrap_or_default(),
        None => (after_scheme, &b"/"[..]),
    };
    // An http URI needs a host, and userinfo in it is an error (RFC 9110 §4.2.1, §4.2.4).
    if authority.is_empty() || !is_host(authority) {
        return Err(RequestError::BadRequest);
    }
    Ok((authority, path))
}

/// `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986 §3.2.2): a name of
/// unreserved, sub-delims and %-escapes, or an IP literal in brackets, then
/// digits after a colon. No spaces, no `/`, no `@`: what `Host: a b` or
/// `Host: evil.com/../x` are not.
fn is_host(authority: &[u8]) -> bool {
    let (host, port) = match authority.iter().rposition(|&b| b == b':') {
        Some(i) if !authority.ends_with(b"]") => {
            let (h, p) = authority.split_at(i);
            (h, p.get(1..).unwrap_or_default())
        }
        _ => (authority, &b""[..]),
    };
    let name = |b: &u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(b);
    let literal = |b: &u8| b.is_ascii_hexdigit() || b":.".contains(b);
    let host_ok = match host.strip_prefix(b"[").and_then(|h| h.strip_suffix(b"]")) {
        Some(ip) => !ip.is_empty() && ip.iter().all(literal),
        None => host.iter().all(name),
    };
    host_ok && port.iter().all(u8::is_ascii_digit)
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Percent-decodes a path; refuses bad escapes, control bytes, non-UTF-8,
/// and an encoded slash (`%2F`), which would let a path pose as a deeper one
/// (`/files%2fx` as `/files/x`), as Apache does by default.
fn percent_decode(raw: &[u8]) -> Result<String, RequestError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        let byte = if b == b'%' {
            let hi = bytes.next().and_then(|&h| hex_value(h));
            let lo = bytes.next().and_then(|&l| hex_value(l));
            match (hi, lo) {
                (Some(hi), Some(lo)) if (hi << 4) | lo != b'/' => (hi << 4) | lo,
                _ => return Err(RequestError::BadRequest),
            }
        } else {
            b
        };
        if byte < 0x20 || byte == 0x7f {
            return Err(RequestError::BadRequest);
        }
        out.push(byte);
    }
    String::from_utf8(out).map_err(|_| RequestError::BadRequest)
}

/// RFC 3986 §5.2.4 for a path starting with '/': the result never climbs
/// above "/". Repeated slashes are merged, as nginx does (`//etc//passwd`
/// is `/etc/passwd`): an empty segment names nothing.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut ends_in_slash = false;
    for segment in path.strip_prefix('/').unwrap_or(path).split('/') {
        ends_in_slash = matches!(segment, "." | ".." | "");
        match segment {
            "." | "" => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if ends_in_slash && !out.is_empty() {
        out.push(""); // "/a/b/.." is "/a/", not "/a"
    }
    format!("/{}", out.join("/"))
}

/// `field-name ":" OWS field-value OWS` (§5).
fn parse_field(line: &[u8]) -> Result<Header, RequestError> {
    // obs-fold, or whitespace before the first field (§5.2, §2.2).
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(RequestError::BadRequest);
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(RequestError::BadRequest)?;
    let (name, value) = line.split_at_checked(colon).unwrap_or_default();
    // A name must be a token: whitespace before the colon is refused (§5.1).
    if !is_token(name) {
        return Err(RequestError::BadRequest);
    }
    let value = trim_ows(value.get(1..).unwrap_or_default());
    if !value.iter().all(|&b| is_field_byte(b)) {
        return Err(RequestError::BadRequest);
    }
    Ok(Header {
        name: ascii_string(name),
        value: value.to_vec(),
    })
}

/// Checks the fields a whole head depends on: Host, framing, Expect.
fn finish_head(
    request: RequestLine,
    headers: Vec<Header>,
    limits: &Limits,
) -> Result<Head, RequestError> {
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    };
    // Exactly one Host in HTTP/1.1, never more than one, and a host (§3.2).
    let hosts = values("host").count();
    if hosts > 1 || (hosts == 0 && request.minor_version == 1) || !values("host").all(is_host) {
        return Err(RequestError::BadRequest);
    }
    let framing = body_framing(
        values("transfer-encoding").collect(),
        values("content-length").collect(),
        request.minor_version,
        limits.max_body,
    )?;
    let mut expect_continue = false;
    for value in values("expect") {
        if !value.eq_ignore_ascii_case(b"100-continue") {
            return Err(RequestError::ExpectationFailed);
        }
        // An HTTP/1.0 client does not wait for 100 (RFC 9110 §10.1.1).
        expect_continue = request.minor_version == 1;
    }
    Ok(Head {
        method: request.method,
        target: request.target,
        path: request.path,
        query: request.query,
        authority: request.authority,
        minor_version: request.minor_version,
        headers,
        framing,
        expect_continue,
    })
}

/// The body length rules of RFC 9112 §6.1–6.3, strictly.
pub(super) fn body_framing(
    transfer_encoding: Vec<&[u8]>,
    content_length: Vec<&[u8]>,
    minor_version: u8,
    max_body: u64,
) -> Result<Framing, RequestError> {
    if !transfer_encoding.is_empty() {
        // TE in HTTP/1.0 is faulty framing (§6.1); TE with CL is how requests are smuggled (§6.3).
        if minor_version == 0 || !content_length.is_empty() {
            return Err(RequestError::BadRequest);
        }
        // Several fields form one list (RFC 9110 §5.3).
        let codings: Vec<&[u8]> = transfer_encoding
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim_ows)
            .collect();
        if codings.iter().any(|c| c.is_empty()) {
            return Err(RequestError::BadRequest);
        }
        let chunked = |c: &&[u8]| c.eq_ignore_ascii_case(b"chunked");
        return match codings.as_slice() {
            [only] if chunked(only) => Ok(Framing::Chunked),
            // Chunked last, once: a coding before it is one this server
            // does not decode (§6.1: 501).
            [before @ .., last] if chunked(last) && !before.iter().any(chunked) => {
                Err(RequestError::NotImplemented)
            }
            // Chunked not last (or twice): the body's end cannot be known
            // (§6.3 point 4: 400, and close).
            _ => Err(RequestError::BadRequest),
        };
    }
    let mut length = None;
    // A list of identical values is one length (§6.3 point 5).
    for item in content_length.iter().flat_map(|v| v.split(|&b| b == b',')) {
        let n = parse_decimal(trim_ows(item)).ok_or(RequestError::BadRequest)?;
        if length.is_some_and(|l| l != n) {
            return Err(RequestError::BadRequest);
        }
        length = Some(n);
    }
    match length {
        Some(n) if n > max_body => Err(RequestError::BodyTooLarge),
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::None),
    }
}

/// 1*DIGIT as a u64; None if empty, not digits, or too large.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let digit = char::from(b).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Where a chunked body is between calls to `feed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line into `line`.
    Size,
    /// This many data bytes of the current chunk are still to come.
    Data(u64),
    /// The line end after chunk data; `cr`: its CR was seen.
    DataEnd {
        cr: bool,
    },
    /// Reading trailer field lines into `line`.
    Trailers,
    Done,
}

/// De-chunks a chunked body incrementally, bounded by `max_body` and by fixed line limits.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// The current size or trailer line, without its LF; always shorter than its limit.
    line: Vec<u8>,
    /// Data bytes announced so far (never more than `max_body`).
    decoded: u64,
    max_body: u64,
    /// Bytes of trailer section seen so far.
    trailer_len: usize,
}

impl ChunkedDecoder {
    pub fn new(max_body: u64) -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            line: Vec::new(),
            decoded: 0,
            max_body,
            trailer_len: 0,
        }
    }

    /// Consumes `input` (bytes that follow what earlier calls consumed), appending chunk data to `body`.
    /// `Complete(n)`: the message ended after the first n bytes of `input` (last chunk + trailers + blank line);
    /// anything after n is not part of this request. `Partial`: all of `input` consumed, more is needed.
    pub fn feed(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
    ) -> Result<Status<usize>, RequestError> {
        let mut pos = 0;
        loop {
            let rest = input.get(pos..).unwrap_or_default();
            if self.state == ChunkState::Done {
                return Ok(Status::Complete(pos));
            }
            if rest.is_empty() {
                return Ok(Status::Partial);
            }
            pos += match self.state {
                ChunkState::Size => {
                    let (used, complete) =
                        self.fill_line(rest, MAX_CHUNK_LINE, RequestError::BadRequest)?;
                    if complete {
                        // Chunk lines end in CRLF, no less (RFC 9112 §7.1: a
                        // lone LF, fine in a head, is where framings differ).
                        let line = self
                            .line
                            .strip_suffix(b"\r")
                            .ok_or(RequestError::BadRequest)?;
                        let size = parse_chunk_size(strip_cr(line)?)?;
                        self.line.clear();
                        self.start_chunk(size)?;
                    }
                    used
                }
                ChunkState::Data(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    body.extend_from_slice(rest.get(..take).unwrap_or_default());
                    let left = left.saturating_sub(u64::try_from(take).unwrap_or(u64::MAX));
                    self.state = match left {
                        0 => ChunkState::DataEnd { cr: false },
                        _ => ChunkState::Data(left),
                    };
                    take
                }
                ChunkState::DataEnd { cr } => {
                    self.state = match (cr, rest.first()) {
                        (false, Some(b'\r')) => ChunkState::DataEnd { cr: true },
                        (true, Some(b'\n')) => ChunkState::Size,
                        _ => return Err(RequestError::BadRequest),
                    };
                    1
                }
                ChunkState::Trailers => {
                    let limit = MAX_TRAILERS.saturating_sub(self.trailer_len);
                    let (used, complete) =
                        self.fill_line(rest, limit, RequestError::HeadersTooLarge)?;
                    if complete {
                        self.trailer_len += self.line.len() + 1;
                        let line = strip_cr(&self.line)?;
                        if line.is_empty() {
                            self.state = ChunkState::Done;
                        } else {
                            parse_field(line)?; // validated, then discarded (§7.1.2)
                        }
                        self.line.clear();
                    }
                    used
                }
                ChunkState::Done => 0,
            };
        }
    }

    /// Appends `input` up to the next LF to `line`; returns the bytes used (LF included) and
    /// whether the line is complete. A line that would be `limit` bytes or more with its LF is `too_long`.
    fn fill_line(
        &mut self,
        input: &[u8],
        limit: usize,
        too_long: RequestError,
    ) -> Result<(usize, bool), RequestError> {
        let (part, complete) = match find_lf(input) {
            Some(i) => (input.get(..i).unwrap_or_default(), true),
            None => (input, false),
        };
        if self.line.len() + part.len() >= limit {
            return Err(too_long);
        }
        self.line.extend_from_slice(part);
        Ok((part.len() + usize::from(complete), complete))
    }

    fn start_chunk(&mut self, size: u64) -> Result<(), RequestError> {
        if size == 0 {
            self.state = ChunkState::Trailers;
            return Ok(());
        }
        // Refused as soon as the size is known, before any of its data is read.
        self.decoded = self
            .decoded
            .checked_add(size)
            .filter(|&total| total <= self.max_body)
            .ok_or(RequestError::BodyTooLarge)?;
        self.state = ChunkState::Data(size);
        Ok(())
    }
}

/// `chunk-size [ chunk-ext ]` (§7.1, §7.1.1): the size; extensions are checked loosely and ignored.
fn parse_chunk_size(line: &[u8]) -> Result<u64, RequestError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let (hex, ext) = line.split_at_checked(digits).unwrap_or_default();
    if hex.is_empty() || hex.len() > MAX_CHUNK_DIGITS {
        return Err(RequestError::BadRequest);
    }
    let size = hex
        .iter()
        .try_fold(0u64, |acc, &b| {
            acc.checked_mul(16)?.checked_add(u64::from(hex_value(b)?))
        })
        .ok_or(RequestError::BadRequest)?;
    // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
    if !ext.is_empty() {
        let ext = trim_ows(ext);
        let controls = ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f);
        if !ext.starts_with(b";") || controls {
            return Err(RequestError::BadRequest);
        }
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Framing as F;
    use Method as M;
    use RequestError::*;

    fn parse(input: &[u8]) -> Result<Status<(Head, usize)>, RequestError> {
        parse_head(input, &Limits::default())
    }

    fn head(input: &[u8]) -> Head {
        match parse(input) {
            Ok(Status::Complete((head, n))) => {
                assert_eq!(n, input.len(), "{:?}", String::from_utf8_lossy(input));
                head
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    /// (input, method, path, query, minor, framing, expect_continue)
    #[rustfmt::skip]
    type Valid = (&'static [u8], Method, &'static str, &'static str, u8, Framing, bool);

    const H: &str = "Host: a\r\n";
    #[rustfmt::skip]
    const VALID: &[Valid] = &[
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", M::Get, "/", "", 1, F::None, false),
        (b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: a\r\n\r\n", M::Get, "/a/b", "x=1&y=%20", 1, F::None, false),
        (b"HEAD /? HTTP/1.1\nHost: a\n\n", M::Head, "/", "", 1, F::None, false),
        (b"\r\n\n\r\nGET /x HTTP/1.0\r\n\r\n", M::Get, "/x", "", 0, F::None, false),
        (b"\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nDELETE /x HTTP/1.0\r\n\r\n", M::Delete, "/x", "", 0, F::None, false),
        (b"PATCH / HTTP/1.7\r\nHost: a\r\n\r\n", M::Patch, "/", "", 1, F::None, false),
        (b"GET /a%20b/%C3%A9 HTTP/1.1\r\nHost: a\r\n\r\n", M::Get, "/a b/\u{e9}", "", 1, F::None, false),
        (b"GET /a/./b/../c HTTP/1.1\r\nHost: a\r\n\r\n", M::Get, "/a/c", "", 1, F::None, false),
        (b"GET /../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", M::Get, "/etc/passwd", "", 1, F::None, false),
        (b"GET /%2e%2E/%2e/x/y/.. HTTP/1.1\r\nHost: a\r\n\r\n", M::Get, "/x/", "", 1, F::None, false),
        (b"GET /a/.. HTTP/1.1\r\nHost: a\r\n\r\n", M::Get, "/", "", 1, F::None, false),
        (b"GET /a//b/ HTTP/1.1\r\nHost: a\r\n\r\n", M::Get, "/a/b/", "", 1, F::None, false),
        (b"GET //etc///passwd HTTP/1.1\r\nHost: a\r\n\r\n", M::Get, "/etc/passwd", "", 1, F::None, false),
        (b"GET http://example.com:80/p/../q?z HTTP/1.1\r\nHost: a\r\n\r\n", M::Get, "/q", "z", 1, F::None, false),
        (b"GET HTTPS://h HTTP/1.1\r\nHost: a\r\n\r\n", M::Get, "/", "", 1, F::None, false),
        (b"GET http://h?x?y HTTP/1.1\r\nHost: a\r\n\r\n", M::Get, "/", "x?y", 1, F::None, false),
        (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", M::Options, "*", "", 1, F::None, false),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", M::Post, "/", "", 1, F::Length(5), false),
        (b"PUT / HTTP/1.1\r\nHost: a\r\ncontent-length: 5 , 5\r\nCONTENT-LENGTH:005\r\n\r\n", M::Put, "/", "", 1, F::Length(5), false),
        (b"POST / HTTP/1.0\r\nContent-Length: 1048576\r\n\r\n", M::Post, "/", "", 0, F::Length(1 << 20), false),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", M::Post, "/", "", 1, F::Chunked, false),
        (b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: \t chunked \t\r\n\r\n", M::Post, "/", "", 1, F::Chunked, false),
        (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n", M::Post, "/", "", 1, F::Length(3), true),
        (b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", M::Post, "/", "", 0, F::None, false),
        (b"GET / HTTP/1.1\r\nHost:a\r\nX-Empty:\r\nX-Hi: \xc3\xa9 \x80\xff \t\r\n\r\n", M::Get, "/", "", 1, F::None, false),
    ];

    #[test]
    fn valid_heads() {
        for &(input, method, path, query, minor, framing, expect) in VALID {
            let h = head(input);
            let name = String::from_utf8_lossy(input);
            assert_eq!(h.method, method, "{name:?}");
            assert_eq!(h.path, path, "{name:?}");
            assert_eq!(h.query, query, "{name:?}");
            assert_eq!(h.minor_version, minor, "{name:?}");
            assert_eq!(h.framing, framing, "{name:?}");
            assert_eq!(h.expect_continue, expect, "{name:?}");
        }
    }

    #[test]
    fn valid_heads_prefixes_are_partial_and_body_is_left() {
        for &(input, ..) in VALID {
            for k in 0..input.len() {
                assert_eq!(parse(&input[..k]), Ok(Status::Partial), "{:?}", &input[..k]);
            }
            let mut with_body = input.to_vec();
            with_body.extend_from_slice(b"BODY\r\n\r\n");
            match parse(&with_body) {
                Ok(Status::Complete((_, n))) => assert_eq!(n, input.len()),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn fields_and_lookup() {
        let h = head(b"GET /t%41?q HTTP/1.1\r\nHost:  a.b  \r\nX-A: 1\r\nx-a: 2\r\n\r\n");
        assert_eq!(h.target, "/t%41?q");
        assert_eq!(h.path, "/tA");
        assert_eq!(h.header("HOST"), Some(&b"a.b"[..]));
        assert_eq!(h.header("x-A"), Some(&b"1"[..]));
        assert_eq!(h.header("missing"), None);
        assert_eq!(h.headers.len(), 3);
        assert_eq!(h.headers[1].name, "X-A");
        for m in Method::ALL {
            let line = format!("{} / HTTP/1.1\r\n{H}\r\n", m.as_str());
            assert_eq!(head(line.as_bytes()).method, m);
        }
    }

    #[rustfmt::skip]
    const INVALID: &[(&[u8], RequestError)] = &[
        (b"GET /files%2fx HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\nHost: evil.com/../x\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\nHost: a:8o\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", BadRequest),
        (b"GET http://a b/ HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET http://a\"/ HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET /a/%2F../b HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", BadRequest),
        (b" GET / HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET /\r\nHost: a\r\n\r\n", BadRequest),
        (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", NotImplemented),
        (b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n", NotImplemented),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", VersionNotSupported),
        (b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", VersionNotSupported),
        (b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET / HTTP/1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET / http/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET a HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"OPTIONS */ HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET ftp://h/ HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET http://u@h/x HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET /%4 HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET /%00 HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET /%0a HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET /%7F HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET /%ff HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\rHost: a\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", BadRequest),
        (b"\r\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", BadRequest),
        (b"\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.0\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", BadRequest),
        (b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", BodyTooLarge),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", NotImplemented),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", NotImplemented),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", BadRequest),
        (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n", ExpectationFailed),
        (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n", ExpectationFailed),
    ];

    #[test]
    fn invalid_heads() {
        for &(input, error) in INVALID {
            let name = String::from_utf8_lossy(input);
            assert_eq!(parse(input), Err(error), "{name:?}");
        }
    }

    #[test]
    fn limits() {
        let limits = Limits {
            max_line: 20,
            max_head: 40,
            max_headers: 2,
            max_body: 10,
        };
        let p = |input: &[u8]| parse_head(input, &limits);
        let done = |input: &[u8]| p(input).map(|s| matches!(s, Status::Complete(_)));
        // A request line of exactly 20 bytes with CRLF is fine; 21 is not.
        assert_eq!(done(b"GET /1234 HTTP/1.0\r\n\r\n"), Ok(true));
        assert_eq!(p(b"GET /12345 HTTP/1.0\r\n\r\n"), Err(UriTooLong));
        // No line end in the first 20 bytes: refused without waiting for more.
        assert_eq!(p(b"GET /123456789012345"), Err(UriTooLong));
        assert_eq!(p(b"GET /12345678901234"), Ok(Status::Partial));
        // Bytes that cannot begin a method: refused before any line ends.
        assert_eq!(p(b"\x16\x03\x01\x02\x00"), Err(BadRequest));
        assert_eq!(p(b"GE\0"), Err(BadRequest));
        assert_eq!(p(b"GE"), Ok(Status::Partial));
        // A head of exactly 40 bytes is fine; one more byte is not.
        let exact = b"GET / HTTP/1.1\r\nHost: a\r\nX: 12345678\r\n\r\n";
        assert_eq!(exact.len(), 40);
        assert_eq!(done(exact), Ok(true));
        let over = b"GET / HTTP/1.1\r\nHost: a\r\nX: 123456789\r\n\r\n";
        assert_eq!(p(over), Err(HeadersTooLarge));
        // Leading empty lines do not count towards the head, but are consumed.
        let leading = [b"\r\n\n", &exact[..]].concat();
        assert!(matches!(p(&leading), Ok(Status::Complete((_, 43)))));
        // No blank line within 40 bytes: refused without waiting for more.
        assert_eq!(p(&over[..40]), Ok(Status::Partial));
        assert_eq!(p(&over[..41]), Err(HeadersTooLarge));
        assert_eq!(done(b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\n\r\n"), Ok(true));
        let three = b"GET / HTTP/1.1\r\nHost: a\r\nA:\r\nB:\r\n\r\n";
        assert_eq!(p(three), Err(HeadersTooLarge));
        assert_eq!(
            p(b"POST / HTTP/1.0\r\nContent-Length: 11\r\n\r\n"),
            Err(BodyTooLarge)
        );
        assert_eq!(
            done(b"POST / HTTP/1.0\r\nContent-Length: 10\r\n\r\n"),
            Ok(true)
        );
    }

    /// Decodes `input` whole, then one byte at a time; both must agree.
    fn dechunk(input: &[u8], max_body: u64) -> Result<(Vec<u8>, usize), RequestError> {
        let mut body = Vec::new();
        let whole = match ChunkedDecoder::new(max_body).feed(input, &mut body) {
            Ok(Status::Complete(n)) => Ok((body, n)),
            Ok(Status::Partial) => Err(Timeout), // stands for "never completed"
            Err(e) => Err(e),
        };
        let mut decoder = ChunkedDecoder::new(max_body);
        let mut bytewise = Err(Timeout);
        let mut body = Vec::new();
        for (i, byte) in input.iter().enumerate() {
            match decoder.feed(std::slice::from_ref(byte), &mut body) {
                Ok(Status::Partial) => {}
                Ok(Status::Complete(n)) => {
                    assert_eq!(n, 1);
                    bytewise = Ok((body, i + 1));
                    break;
                }
                Err(e) => {
                    bytewise = Err(e);
                    break;
                }
            }
        }
        assert_eq!(whole, bytewise, "{:?}", String::from_utf8_lossy(input));
        whole
    }

    #[test]
    fn chunked_bodies() {
        #[rustfmt::skip]
        let ok: &[(&[u8], &[u8], usize)] = &[
            (b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT", b"hello world", 4),
            (b"a\r\n0123456789\r\nA ; x=\"y\"\r\n0123456789\r\n00\r\n\r\nGET / HTTP/1.1", b"01234567890123456789", 14),
            (b"0\r\n\r\n\r\n", b"", 2),
            (b"0000000000000001\r\nx\r\n0\r\n\r\n", b"x", 0),
        ];
        for &(input, expected, left) in ok {
            assert_eq!(
                dechunk(input, 100),
                Ok((expected.to_vec(), input.len() - left))
            );
        }
        #[rustfmt::skip]
        let bad: &[(&[u8], RequestError)] = &[
            (b"g\r\n", BadRequest),
            (b"5\nhello\r\n0\r\n\r\n", BadRequest),
            (b"5\r\nhello\n0\r\n\r\n", BadRequest),
            (b"\r\n", BadRequest),
            (b"-5\r\n", BadRequest),
            (b"5 \r\nhello\r\n0\r\n\r\n", BadRequest),
            (b"5\rx\nhello\r\n0\r\n\r\n", BadRequest),
            (b"00000000000000001\r\nx\r\n0\r\n\r\n", BadRequest),
            (b"5\r\nhelloX\r\n0\r\n\r\n", BadRequest),
            (b"5\r\nhello\r\r\n0\r\n\r\n", BadRequest),
            (b"5;a\x00\r\nhello\r\n0\r\n\r\n", BadRequest),
            (b"0\r\nBad Trailer: x\r\n\r\n", BadRequest),
            (b"0\r\n folded\r\n\r\n", BadRequest),
            (b"65\r\n", BodyTooLarge),
            (b"ffffffffffffffff\r\n", BodyTooLarge),
            (b"32\r\n01234567890123456789012345678901234567890123456789\r\n33\r\n", BodyTooLarge),
        ];
        for &(input, error) in bad {
            assert_eq!(
                dechunk(input, 100),
                Err(error),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let mut long_ext = b"1;".to_vec();
        long_ext.resize(MAX_CHUNK_LINE - 2, b'a');
        assert_eq!(
            dechunk(&[&long_ext[..], b"\r\nx\r\n0\r\n\r\n"].concat(), 100).map(|r| r.0),
            Ok(b"x".to_vec())
        );
        long_ext.push(b'a');
        assert_eq!(
            dechunk(&[&long_ext[..], b"\r\nx\r\n0\r\n\r\n"].concat(), 100),
            Err(BadRequest)
        );
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..2000 {
            trailers.extend_from_slice(b"X-T: 12345\r\n");
        }
        assert_eq!(dechunk(&trailers, 100), Err(HeadersTooLarge));
        // Feeding after the end consumes nothing.
        let mut decoder = ChunkedDecoder::new(10);
        let mut body = Vec::new();
        assert_eq!(
            decoder.feed(b"0\r\n\r\n", &mut body),
            Ok(Status::Complete(5))
        );
        assert_eq!(decoder.feed(b"1\r\nx", &mut body), Ok(Status::Complete(0)));
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn fuzz_never_panics_and_keeps_limits() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"GET /%.?:; \t\r\n*Host-Length:chunked0aF9\x00\x7f\xff";
        let limits = Limits {
            max_line: 64,
            max_head: 128,
            max_headers: 4,
            max_body: 32,
        };
        let seeds: Vec<&[u8]> = VALID
            .iter()
            .map(|v| v.0)
            .chain(INVALID.iter().map(|v| v.0))
            .collect();
        let mut complete = 0;
        for round in 0..6000 {
            let mut input: Vec<u8> = if round % 3 == 0 {
                (0..rng.below(200))
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect()
            } else {
                seeds[rng.below(seeds.len())].to_vec()
            };
            for _ in 0..rng.below(6) {
                let at = rng.below(input.len() + 1);
                let byte = alphabet[rng.below(alphabet.len())];
                match rng.below(4) {
                    0 => input.insert(at, byte),
                    1 if at < input.len() => input[at] = byte,
                    2 if at < input.len() => drop(input.remove(at)),
                    _ => input.truncate(at),
                }
            }
            for limits in [limits, Limits::default()] {
                if let Ok(Status::Complete((h, n))) = parse_head(&input, &limits) {
                    complete += 1;
                    assert!(n <= input.len() && n <= limits.max_head + 2 * MAX_EMPTY_LINES);
                    assert!(h.headers.len() <= limits.max_headers);
                    assert!(h.path == "*" || h.path.starts_with('/'), "{:?}", h.path);
                    assert!(
                        !h.path.split('/').any(|s| s == ".." || s == "."),
                        "{:?}",
                        h.path
                    );
                    if let Framing::Length(len) = h.framing {
                        assert!(len <= limits.max_body);
                    }
                }
            }
            let mut decoder = ChunkedDecoder::new(limits.max_body);
            let mut body = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let (now, later) = rest.split_at(1 + rng.below(rest.len()));
                match decoder.feed(now, &mut body) {
                    Ok(Status::Partial) => rest = later,
                    Ok(Status::Complete(n)) => {
                        assert!(n <= now.len());
                        break;
                    }
                    Err(_) => break,
                }
                assert!(decoder.line.len() < MAX_TRAILERS);
            }
            assert!(body.len() as u64 <= limits.max_body);
        }
        assert!(
            complete > 500,
            "the fuzz loop should reach valid heads too: {complete}"
        );
    }

    #[test]
    fn fuzz_chunked_random_splits() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        for _ in 0..500 {
            let mut encoded = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..rng.below(6) {
                let data: Vec<u8> = (0..1 + rng.below(40)).map(|_| rng.next() as u8).collect();
                encoded.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                encoded.extend_from_slice(&data);
                encoded.extend_from_slice(b"\r\n");
                expected.extend_from_slice(&data);
            }
            encoded.extend_from_slice(b"0\r\nX: y\r\n\r\n");
            let end = encoded.len();
            encoded.extend_from_slice(b"extra");
            let (mut decoder, mut body, mut used, mut rest) =
                (ChunkedDecoder::new(1000), Vec::new(), 0, &encoded[..]);
            loop {
                let (now, later) = rest.split_at(1 + rng.below(rest.len()));
                match decoder.feed(now, &mut body).unwrap() {
                    Status::Partial => used += now.len(),
                    Status::Complete(n) => {
                        used += n;
                        break;
                    }
                }
                rest = later;
            }
            assert_eq!((body, used), (expected, end));
        }
    }
}
