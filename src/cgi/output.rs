//! The answer of a program in CGI mode (RFC 3875 §6): a header block (`Status`,
//! `Content-Type`, `Location`, any other field), a blank line, the body.
//! Lines may end in LF alone (cgit's do).
//!
//! Must never: let a program set the framing headers (`Content-Length`,
//! `Transfer-Encoding`, `Connection`, `Date`: the server's own), or accept a
//! header block larger than `MAX_HEADERS`.

/// Largest header block a program may write.
const MAX_HEADERS: usize = 16 * 1024;

/// What the program's answer means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A document, or a client redirect (a `Location` with a scheme): the
    /// status, the headers to send, and where the body starts in stdout.
    Document {
        status: u16,
        content_type: Option<String>,
        headers: Vec<(String, String)>,
        body_start: usize,
    },
    /// A local redirect (§6.2.2): the server answers as for a GET of this
    /// path (and query).
    LocalRedirect(String),
}

/// Parses stdout; an error says what is wrong with it, for the log.
pub fn parse(stdout: &[u8]) -> Result<Reply, String> {
    let mut status = None;
    let mut content_type = None;
    let mut location = None;
    let mut headers = Vec::new();
    let mut at = 0;
    loop {
        let rest = stdout.get(at..).unwrap_or_default();
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(if stdout.len() > MAX_HEADERS {
                "no blank line within the header block's limit".into()
            } else {
                "the header block has no blank line after it".into()
            });
        };
        let line = rest.get(..end).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += end + 1;
        if at > MAX_HEADERS {
            return Err(format!("header block over {MAX_HEADERS} bytes"));
        }
        if line.is_empty() {
            break;
        }
        let text =
            std::str::from_utf8(line).map_err(|_| "a header line is not UTF-8".to_string())?;
        let Some((name, value)) = text.split_once(':') else {
            return Err(format!("`{}` is not a header line", text.escape_debug()));
        };
        let value = value.trim_matches([' ', '\t']);
        if name.is_empty()
            || !name.bytes().all(is_token)
            || value.bytes().any(|b| b < 0x20 && b != b'\t')
        {
            return Err(format!(
                "`{}` is not a valid header line",
                text.escape_debug()
            ));
        }
        match name.to_ascii_lowercase().as_str() {
            "status" => status = Some(parse_status(value)?),
            "content-type" => content_type = Some(value.to_owned()),
            "location" => location = Some(value.to_owned()),
            "content-length" | "transfer-encoding" | "connection" | "date" | "keep-alive" => {}
            _ => headers.push((name.to_owned(), value.to_owned())),
        }
    }
    match location {
        Some(path) if path.starts_with('/') && status.is_none() => {
            return Ok(Reply::LocalRedirect(path));
        }
        Some(uri) => {
            if !uri.contains("://") && !uri.starts_with('/') {
                return Err(format!(
                    "Location `{uri}` is neither a path nor an absolute URI"
                ));
            }
            headers.push(("Location".into(), uri));
            status = status.or(Some(302));
        }
        None => {}
    }
    Ok(Reply::Document {
        status: status.unwrap_or(200),
        content_type,
        headers,
        body_start: at,
    })
}

/// `Status: 404 Not Found` → 404 (the reason phrase is the server's own).
fn parse_status(value: &str) -> Result<u16, String> {
    let code = value.split([' ', '\t']).next().unwrap_or_default();
    match code.parse::<u16>() {
        Ok(n) if code.len() == 3 && (200..=599).contains(&n) => Ok(n),
        _ => Err(format!("`Status: {value}` is not a status from 200 to 599")),
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document reply whose body is the last `body_len` bytes of `input`.
    fn doc(
        input: &[u8],
        status: u16,
        ct: Option<&str>,
        headers: &[(&str, &str)],
        body_len: usize,
    ) -> Reply {
        Reply::Document {
            status,
            content_type: ct.map(str::to_owned),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body_start: input.len() - body_len,
        }
    }

    #[test]
    fn answers() {
        type Case = (&'static [u8], fn(&'static [u8]) -> Result<Reply, String>);
        let cases: &[Case] = &[
            (b"Content-Type: text/html\r\n\r\n<p>", |i| {
                Ok(doc(i, 200, Some("text/html"), &[], 3))
            }),
            (b"Content-type: text/plain\nX-A:  b \n\nbody", |i| {
                Ok(doc(i, 200, Some("text/plain"), &[("X-A", "b")], 4))
            }),
            (
                b"Status: 404 Not Found\nContent-Type: text/plain\n\nnope",
                |i| Ok(doc(i, 404, Some("text/plain"), &[], 4)),
            ),
            (b"Location: /other?x=1\n\n", |_| {
                Ok(Reply::LocalRedirect("/other?x=1".into()))
            }),
            (b"Location: https://example.com/\n\n", |i| {
                Ok(doc(
                    i,
                    302,
                    None,
                    &[("Location", "https://example.com/")],
                    0,
                ))
            }),
            (b"Status: 301 Moved\nLocation: /new\n\n", |i| {
                Ok(doc(i, 301, None, &[("Location", "/new")], 0))
            }),
            (b"Content-Length: 99\nConnection: keep-alive\n\nx", |i| {
                Ok(doc(i, 200, None, &[], 1))
            }),
            (b"\n", |i| Ok(doc(i, 200, None, &[], 0))),
            (b"just text\n\n", |_| {
                Err("`just text` is not a header line".into())
            }),
            (b"Content-Type: text/plain", |_| {
                Err("the header block has no blank line after it".into())
            }),
            (b"Status: 99\n\n", |_| {
                Err("`Status: 99` is not a status from 200 to 599".into())
            }),
            (b"Status: abc\n\n", |_| {
                Err("`Status: abc` is not a status from 200 to 599".into())
            }),
            (b"Bad Name: x\n\n", |_| {
                Err("`Bad Name: x` is not a valid header line".into())
            }),
            (b"Location: nowhere\n\n", |_| {
                Err("Location `nowhere` is neither a path nor an absolute URI".into())
            }),
            (b"", |_| {
                Err("the header block has no blank line after it".into())
            }),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(input),
                want(input),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let huge = [b"X: ".as_slice(), &[b'a'; 20_000], b"\n\n"].concat();
        assert!(parse(&huge).unwrap_err().contains("header block over"));
    }
}
