//! HTTP/1.1 on the wire, by hand: `request` parses what clients send (head and
//! body framing, incrementally, within fixed limits), `response` builds what the
//! server sends back, `answer` reads what an HTTP worker answers. None of them
//! touches a socket: they work on byte slices only.

pub mod answer;
pub mod request;
pub mod response;

/// A request method the server implements. Any other well-formed token is a 501.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
}

impl Method {
    /// Every method, in the order `Allow` headers list them.
    pub const ALL: [Method; 7] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Options,
        Method::Patch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
        }
    }

    /// The method for an exact (case-sensitive, as RFC 9110 says) token.
    pub fn from_token(token: &[u8]) -> Option<Method> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str().as_bytes() == token)
    }
}

/// Why a request was refused before it reached a program. Each variant is one
/// status code; after any of them the connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Malformed request line, header, chunk or framing (400).
    BadRequest,
    /// The whole request did not arrive within `read-timeout` (408).
    Timeout,
    /// The body is larger than `max-body` (413).
    BodyTooLarge,
    /// The request line is longer than the line limit (414).
    UriTooLong,
    /// An `Expect` other than `100-continue` (417).
    ExpectationFailed,
    /// The header section is larger than its limit or has too many fields (431).
    HeadersTooLarge,
    /// An unknown method or transfer coding (501).
    NotImplemented,
    /// A major version other than HTTP/1 (505).
    VersionNotSupported,
    /// No room in `body_memory` for the body (503): the server is busy, the
    /// client did nothing wrong.
    NoRoom,
}

impl RequestError {
    pub fn status(self) -> u16 {
        match self {
            RequestError::BadRequest => 400,
            RequestError::Timeout => 408,
            RequestError::BodyTooLarge => 413,
            RequestError::UriTooLong => 414,
            RequestError::ExpectationFailed => 417,
            RequestError::HeadersTooLarge => 431,
            RequestError::NotImplemented => 501,
            RequestError::VersionNotSupported => 505,
            RequestError::NoRoom => 503,
        }
    }

    /// True if the client sent something wrong (or too slowly): the refusal
    /// counts against its peer.
    pub fn is_clients_fault(self) -> bool {
        self != RequestError::NoRoom
    }
}

/// Incomplete input is not an error: the caller reads more and asks again.
#[derive(Debug, PartialEq, Eq)]
pub enum Status<T> {
    Complete(T),
    Partial,
}
