//! The framed worker protocol on the wire: a request's frames (its
//! environment, then its body), an answer's frame, and the items of a
//! streamed answer (frames, then `end ID`).
//!
//! Owns the format only. Must never: touch a process or a pipe, or trust a
//! length it read (every one is checked against the route's `max_output`).

use std::ffi::OsString;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;

/// Longest length line: 20 digits (a u64) and its newline.
const MAX_LEN_LINE: usize = 21;

/// How far an answer frame at the start of a buffer has come.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Partial,
    /// The whole answer is at this range, and nothing follows it.
    Whole(Range<usize>),
    /// Its length is over the route's `max_output`.
    TooLong,
    /// Not a frame: the worker broke the protocol.
    Bad(String),
}

/// Reads the answer frame at the start of `buf`, which must hold nothing
/// after it.
pub fn answer(buf: &[u8], max: usize) -> Frame {
    match answer_start(buf, max) {
        Frame::Whole(range) if range.end < buf.len() => {
            Frame::Bad("it wrote more than one answer".into())
        }
        other => other,
    }
}

/// Reads the frame at the start of `buf` (more may follow it).
fn answer_start(buf: &[u8], max: usize) -> Frame {
    let Some(newline) = buf.iter().take(MAX_LEN_LINE).position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_LEN_LINE {
            Frame::Bad("no length line".into())
        } else {
            Frame::Partial
        };
    };
    let digits = buf.get(..newline).unwrap_or_default();
    let Some(len) = number(digits) else {
        return Frame::Bad(format!("`{}` is not a length", crate::log::Escaped(digits)));
    };
    if len > max {
        return Frame::TooLong;
    }
    let start = newline + 1;
    let end = start + len;
    if buf.len() < end {
        Frame::Partial
    } else {
        Frame::Whole(start..end)
    }
}

/// The next item of a streamed answer at the start of a buffer: a frame (the
/// head, then pieces of the body), or the end mark `end ID`.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    Partial,
    /// A frame's bytes are at this range; the next item starts at its end.
    Frame(Range<usize>),
    /// The end of request ID; the next item starts at the offset.
    End(u64, usize),
    /// A frame longer than the route's `max_output`.
    TooLong,
    Bad(String),
}

/// Reads the item at the start of `buf`.
pub fn item(buf: &[u8], max: usize) -> Item {
    let Some(rest) = buf.strip_prefix(b"end ") else {
        return match answer_start(buf, max) {
            Frame::Partial => Item::Partial,
            Frame::Whole(range) => Item::Frame(range),
            Frame::TooLong => Item::TooLong,
            Frame::Bad(why) => Item::Bad(why),
        };
    };
    let Some(newline) = rest.iter().take(MAX_LEN_LINE).position(|&b| b == b'\n') else {
        return if rest.len() >= MAX_LEN_LINE {
            Item::Bad("no end of the end line".into())
        } else {
            Item::Partial
        };
    };
    match number(rest.get(..newline).unwrap_or_default()) {
        Some(id) => Item::End(id as u64, newline + 5),
        None => Item::Bad("`end` names no request".into()),
    }
}

/// A decimal number of at most 20 digits.
fn number(digits: &[u8]) -> Option<usize> {
    std::str::from_utf8(digits)
        .ok()
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<usize>().ok())
}

/// The frames of one request: its environment, then its body.
pub fn request(env: &[(OsString, OsString)], body: &[u8]) -> Vec<u8> {
    let mut pairs = Vec::new();
    for (name, value) in env {
        pairs.extend_from_slice(name.as_bytes());
        pairs.push(b'=');
        pairs.extend_from_slice(value.as_bytes());
        pairs.push(0);
    }
    let mut frames = Vec::with_capacity(pairs.len() + body.len() + 2 * MAX_LEN_LINE);
    for part in [&pairs[..], body] {
        frames.extend_from_slice(format!("{}\n", part.len()).as_bytes());
        frames.extend_from_slice(part);
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(answer(b"", 100), Frame::Partial);
        assert_eq!(answer(b"12", 100), Frame::Partial);
        assert_eq!(answer(b"5\nhel", 100), Frame::Partial);
        assert_eq!(answer(b"5\nhello", 100), Frame::Whole(2..7));
        assert_eq!(answer(b"0\n", 100), Frame::Whole(2..2));
        assert_eq!(
            answer(b"5\nhello!", 100),
            Frame::Bad("it wrote more than one answer".into())
        );
        assert_eq!(answer(b"500\n", 100), Frame::TooLong);
        assert_eq!(
            answer(b"x\n", 100),
            Frame::Bad("`x` is not a length".into())
        );
        assert_eq!(answer(b"\n", 100), Frame::Bad("`` is not a length".into()));
        assert_eq!(
            answer(&[b'9'; 40], 100),
            Frame::Bad("no length line".into())
        );
        let env = [(OsString::from("A"), OsString::from("1=2"))];
        assert_eq!(request(&env, b"body\0"), b"6\nA=1=2\x005\nbody\x00");
        assert_eq!(request(&[], b""), b"0\n0\n");
    }
}
