//! Parses the TOML subset of the config file into a tree with line numbers:
//! strings (basic, literal, multi-line), integers, booleans, arrays (over
//! several lines too), inline tables, `[table]` and `[[array of tables]]`,
//! comments. It knows nothing of what the keys mean.
//!
//! Must never: panic on any input, accept a duplicate key, or guess at what
//! it does not support (floats, dates, dotted keys): it says so, with the line.

use std::fmt;

/// A table: the root, a `[name]` table, or one `[[name]]` element.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// 1-based line of the `[name]`/`[[name]]` header; 0 for the root table.
    pub line: usize,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: Value,
    /// 1-based line where the key (or the table header) stands.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Integer(i64),
    Boolean(bool),
    Array(Vec<Value>),
    Table(Table),
    /// `[[name]]` elements, in file order.
    Tables(Vec<Table>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line of the problem.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    fn insert(&mut self, entry: Entry) -> Result<(), ParseError> {
        if self.get(&entry.key).is_some() {
            return Err(ParseError {
                line: entry.line,
                message: format!("duplicate key `{}`", entry.key),
            });
        }
        self.entries.push(entry);
        Ok(())
    }
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Boolean(_) => "a boolean",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
            Value::Tables(_) => "an array of tables",
        }
    }
}

/// Where the following `key = value` lines go.
enum Target {
    Root,
    Table(String),
    /// The last element of the array of tables with this name.
    Tables(String),
}

pub fn parse(text: &str) -> Result<Table, ParseError> {
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        depth: 0,
    };
    let mut root = Table {
        line: 0,
        entries: Vec::new(),
    };
    let mut target = Target::Root;
    loop {
        p.skip_blank_lines()?;
        let Some(c) = p.peek() else { break };
        let line = p.line;
        if c == '[' {
            target = p.header(&mut root)?;
        } else {
            let key = p.key()?;
            p.skip_space();
            if !p.eat('=') {
                return p.fail(format!("expected `=` after key `{key}`"));
            }
            p.skip_space();
            let value = p.value()?;
            p.end_of_line()?;
            let entry = Entry { key, value, line };
            let table = match &target {
                Target::Root => Some(&mut root),
                Target::Table(name) => match root.entries.iter_mut().find(|e| e.key == *name) {
                    Some(Entry {
                        value: Value::Table(t),
                        ..
                    }) => Some(t),
                    _ => None,
                },
                Target::Tables(name) => match root.entries.iter_mut().find(|e| e.key == *name) {
                    Some(Entry {
                        value: Value::Tables(ts),
                        ..
                    }) => ts.last_mut(),
                    _ => None,
                },
            };
            match table {
                Some(t) => t.insert(entry)?,
                None => return p.fail("internal: lost the current table"),
            }
        }
    }
    Ok(root)
}

/// A character as an error message shows it: quoted, or (a control
/// character, which would break the message's line) named.
struct Shown(char);

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self.0 {
            c if c.is_control() => f.write_str("a control character"),
            c => write!(f, "`{c}`"),
        }
    }
}

/// Deepest nesting of arrays and inline tables: the parser recurses, and a
/// hostile file must not overflow its stack.
const MAX_DEPTH: usize = 32;

struct Parser {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    /// Arrays and inline tables open around the cursor.
    depth: usize,
}

impl Parser {
    fn fail<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(i, c)| self.peek_at(i) == Some(c))
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    fn skip_comment(&mut self) {
        if self.peek() == Some('#') {
            while !matches!(self.peek(), None | Some('\n')) {
                self.bump();
            }
        }
    }

    /// Whitespace, comments and newlines (between entries, inside arrays).
    fn skip_blank_lines(&mut self) -> Result<(), ParseError> {
        loop {
            self.skip_space();
            self.skip_comment();
            match self.peek() {
                Some('\n') => {
                    self.bump();
                }
                Some('\r') if self.peek_at(1) == Some('\n') => {
                    self.bump();
                }
                _ => return Ok(()),
            }
        }
    }

    /// After a value or header: only whitespace and a comment may follow.
    fn end_of_line(&mut self) -> Result<(), ParseError> {
        self.skip_space();
        self.skip_comment();
        match self.peek() {
            None | Some('\n') => Ok(()),
            Some('\r') if self.peek_at(1) == Some('\n') => Ok(()),
            Some(c) => self.fail(format!("unexpected {} after the value", Shown(c))),
        }
    }

    fn key(&mut self) -> Result<String, ParseError> {
        let key = match self.peek() {
            Some('"') => {
                self.bump();
                self.basic_string()?
            }
            Some('\'') => {
                self.bump();
                self.literal_string()?
            }
            _ => {
                let mut k = String::new();
                while let Some(c) = self
                    .peek()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                {
                    k.push(c);
                    self.bump();
                }
                if k.is_empty() {
                    return match self.peek() {
                        Some(c) => self.fail(format!("expected a key, found {}", Shown(c))),
                        None => self.fail("expected a key"),
                    };
                }
                k
            }
        };
        self.skip_space();
        if self.peek() == Some('.') {
            return self.fail("dotted keys are not supported");
        }
        Ok(key)
    }

    fn header(&mut self, root: &mut Table) -> Result<Target, ParseError> {
        let line = self.line;
        self.bump();
        let array = self.eat('[');
        self.skip_space();
        let name = self.key()?;
        self.skip_space();
        let closed = if array {
            self.eat(']') && self.eat(']')
        } else {
            self.eat(']')
        };
        if !closed {
            return self.fail(format!(
                "expected `{}` after `{name}`",
                if array { "]]" } else { "]" }
            ));
        }
        self.end_of_line()?;
        let table = Table {
            line,
            entries: Vec::new(),
        };
        let existing = root.entries.iter_mut().find(|e| e.key == name);
        match (array, existing) {
            (
                true,
                Some(Entry {
                    value: Value::Tables(ts),
                    ..
                }),
            ) => ts.push(table),
            (_, Some(e)) => {
                return self.fail(format!("`{name}` is already defined, on line {}", e.line));
            }
            (true, None) => root.insert(Entry {
                key: name.clone(),
                value: Value::Tables(vec![table]),
                line,
            })?,
            (false, None) => root.insert(Entry {
                key: name.clone(),
                value: Value::Table(table),
                line,
            })?,
        }
        Ok(if array {
            Target::Tables(name)
        } else {
            Target::Table(name)
        })
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        match self.peek() {
            Some('"') if self.starts_with("\"\"\"") => {
                self.pos += 3;
                self.multiline(true).map(Value::String)
            }
            Some('\'') if self.starts_with("'''") => {
                self.pos += 3;
                self.multiline(false).map(Value::String)
            }
            Some('"') => {
                self.bump();
                self.basic_string().map(Value::String)
            }
            Some('\'') => {
                self.bump();
                self.literal_string().map(Value::String)
            }
            Some(open @ ('[' | '{')) => {
                if self.depth >= MAX_DEPTH {
                    return self.fail(format!("arrays and tables nest deeper than {MAX_DEPTH}"));
                }
                self.bump();
                self.depth += 1;
                let value = if open == '[' {
                    self.array()
                } else {
                    self.inline_table()
                };
                self.depth -= 1;
                value
            }
            Some('t') if self.starts_with("true") => {
                self.pos += 4;
                Ok(Value::Boolean(true))
            }
            Some('f') if self.starts_with("false") => {
                self.pos += 5;
                Ok(Value::Boolean(false))
            }
            Some(c) if c.is_ascii_digit() || c == '+' || c == '-' => self.integer(),
            Some('i' | 'n') => self.fail("floats are not supported"),
            Some(c) => self.fail(format!("expected a value, found {}", Shown(c))),
            None => self.fail("expected a value"),
        }
    }

    fn integer(&mut self) -> Result<Value, ParseError> {
        let mut word = String::new();
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.' | ':'))
        {
            word.push(c);
            self.bump();
        }
        if word.contains(':') || (word.len() >= 10 && word.chars().nth(4) == Some('-')) {
            return self.fail("dates are not supported");
        }
        let (sign, digits) = match word.strip_prefix('-') {
            Some(rest) => (-1, rest),
            None => (1, word.strip_prefix('+').unwrap_or(&word)),
        };
        let (radix, digits) = match digits.get(..2) {
            Some("0x") => (16, digits.get(2..).unwrap_or_default()),
            Some("0o") => (8, digits.get(2..).unwrap_or_default()),
            Some("0b") => (2, digits.get(2..).unwrap_or_default()),
            _ => (10, digits),
        };
        if radix == 10 && (digits.contains(['.', 'e', 'E']) || digits == "inf" || digits == "nan") {
            return self.fail("floats are not supported");
        }
        let underscores_ok =
            !digits.starts_with('_') && !digits.ends_with('_') && !digits.contains("__");
        let clean: String = digits.chars().filter(|&c| c != '_').collect();
        // One sign at most, and none before a 0x, 0o or 0b prefix (TOML).
        let sign_first = |s: &str| matches!(s.as_bytes().first(), Some(b'+' | b'-'));
        let signed = sign_first(&word);
        let parsed = i64::from_str_radix(&clean, radix).ok().filter(|_| {
            underscores_ok && !clean.is_empty() && !sign_first(&clean) && (radix == 10 || !signed)
        });
        match parsed.and_then(|n| n.checked_mul(sign)) {
            Some(n) => Ok(Value::Integer(n)),
            None => self.fail(format!("`{word}` is not an integer (or is out of range)")),
        }
    }

    /// After the opening `"`.
    fn basic_string(&mut self) -> Result<String, ParseError> {
        self.one_line_string('"', true)
    }

    /// After the opening `'`.
    fn literal_string(&mut self) -> Result<String, ParseError> {
        self.one_line_string('\'', false)
    }

    /// A string on one line up to `quote`; basic strings have escapes.
    fn one_line_string(&mut self, quote: char, escapes: bool) -> Result<String, ParseError> {
        let mut s = String::new();
        loop {
            match self.peek() {
                None | Some('\n') => return self.fail("unterminated string"),
                Some(c) if c == quote => {
                    self.bump();
                    return Ok(s);
                }
                Some('\\') if escapes => {
                    self.bump();
                    s.push(self.escape()?);
                }
                Some(c) if c.is_control() && c != '\t' => {
                    return self.fail("control character in a string");
                }
                Some(c) => {
                    self.bump();
                    s.push(c);
                }
            }
        }
    }

    fn escape(&mut self) -> Result<char, ParseError> {
        // Hex digits only (no sign, never the closing quote or the line's
        // end, so an error names the escape's own line).
        let hex = |p: &mut Parser, n: usize| {
            let mut digits = String::new();
            while digits.len() < n
                && let Some(c) = p.peek().filter(char::is_ascii_hexdigit)
            {
                p.bump();
                digits.push(c);
            }
            u32::from_str_radix(&digits, 16)
                .ok()
                .filter(|_| digits.len() == n)
                .and_then(char::from_u32)
        };
        let c = match self.bump() {
            Some('"') => Some('"'),
            Some('\\') => Some('\\'),
            Some('n') => Some('\n'),
            Some('t') => Some('\t'),
            Some('r') => Some('\r'),
            Some('b') => Some('\u{8}'),
            Some('f') => Some('\u{c}'),
            Some('u') => hex(self, 4),
            Some('U') => hex(self, 8),
            _ => None,
        };
        match c {
            Some('\0') => self.fail("a string cannot hold NUL (no program can take it)"),
            Some(c) => Ok(c),
            None => self.fail("invalid escape in a string"),
        }
    }

    /// After the opening `"""` or `'''`.
    fn multiline(&mut self, basic: bool) -> Result<String, ParseError> {
        let close = if basic { "\"\"\"" } else { "'''" };
        let start = self.line;
        self.eat('\r');
        self.eat('\n');
        let mut s = String::new();
        loop {
            if self.starts_with(close) {
                self.pos += 3;
                return Ok(s);
            }
            match self.bump() {
                None => {
                    self.line = start;
                    return self.fail("unterminated multi-line string");
                }
                Some('\\') if basic => {
                    if matches!(self.peek(), Some(' ' | '\t' | '\r' | '\n')) {
                        while matches!(self.peek(), Some(' ' | '\t' | '\r' | '\n')) {
                            self.bump();
                        }
                    } else {
                        s.push(self.escape()?);
                    }
                }
                Some(c) if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {
                    return self.fail("control character in a string");
                }
                Some(c) => s.push(c),
            }
        }
    }

    /// After `[`: values, commas, newlines and comments, up to `]`.
    fn array(&mut self) -> Result<Value, ParseError> {
        let start = self.line;
        let mut items = Vec::new();
        loop {
            self.skip_blank_lines()?;
            match self.peek() {
                Some(']') => {
                    self.bump();
                    return Ok(Value::Array(items));
                }
                None => {
                    self.line = start;
                    return self.fail("unterminated array");
                }
                _ => {}
            }
            items.push(self.value()?);
            self.skip_blank_lines()?;
            if !self.eat(',') && self.peek() != Some(']') {
                return match self.peek() {
                    None => {
                        self.line = start;
                        self.fail("unterminated array")
                    }
                    Some(c) => self.fail(format!(
                        "expected `,` or `]` in an array, found {}",
                        Shown(c)
                    )),
                };
            }
        }
    }

    /// After `{`: `k = v` pairs on one line.
    fn inline_table(&mut self) -> Result<Value, ParseError> {
        let mut table = Table {
            line: self.line,
            entries: Vec::new(),
        };
        self.skip_space();
        if self.eat('}') {
            return Ok(Value::Table(table));
        }
        loop {
            self.skip_space();
            let line = self.line;
            let key = self.key()?;
            if !self.eat('=') {
                return self.fail(format!("expected `=` after key `{key}`"));
            }
            self.skip_space();
            let value = self.value()?;
            table.insert(Entry { key, value, line })?;
            self.skip_space();
            if self.eat('}') {
                return Ok(Value::Table(table));
            }
            if !self.eat(',') {
                return self.fail("expected `,` or `}` in an inline table");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Value {
        parse(text).unwrap().entries.remove(0).value
    }

    fn err(text: &str) -> (usize, String) {
        let e = parse(text).unwrap_err();
        (e.line, e.message)
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    #[test]
    fn values() {
        let cases: &[(&str, Value)] = &[
            ("a = \"x\\ty\\u00e9\\\"\"", s("x\tyé\"")),
            ("a = 'C:\\path'", s("C:\\path")),
            ("a = \"\"\"\nl1\nl2\"\"\"", s("l1\nl2")),
            ("a = \"\"\"one \\\n    two\"\"\"", s("one two")),
            ("a = '''\nraw \\n'''", s("raw \\n")),
            ("a = 1_048_576", Value::Integer(1_048_576)),
            ("a = -42", Value::Integer(-42)),
            ("a = 0x1f", Value::Integer(31)),
            ("a = 0o17", Value::Integer(15)),
            ("a = 0b101", Value::Integer(5)),
            ("a = true # yes", Value::Boolean(true)),
            ("a = false", Value::Boolean(false)),
            ("a = []", Value::Array(vec![])),
            (
                "a = [\"x\", [1, 2],]",
                Value::Array(vec![
                    s("x"),
                    Value::Array(vec![Value::Integer(1), Value::Integer(2)]),
                ]),
            ),
            (
                "a = [ # c\n \"x\", # d\n\n \"y\"\n]",
                Value::Array(vec![s("x"), s("y")]),
            ),
            ("\"quoted key\" = 1", Value::Integer(1)),
            (
                "a = { b = 1, c = \"d\" }",
                Value::Table(Table {
                    line: 1,
                    entries: vec![
                        Entry {
                            key: "b".into(),
                            value: Value::Integer(1),
                            line: 1,
                        },
                        Entry {
                            key: "c".into(),
                            value: s("d"),
                            line: 1,
                        },
                    ],
                }),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&one(text), want, "{text}");
        }
        assert_eq!(parse("a = 1\r\nb = 2\r\n").unwrap().entries.len(), 2);
    }

    #[test]
    fn errors() {
        let cases: &[(&str, usize, &str)] = &[
            ("a = 1\na = 2", 2, "duplicate key `a`"),
            ("a 1", 1, "expected `=` after key `a`"),
            ("\na =", 2, "expected a value"),
            ("a = \"open", 1, "unterminated string"),
            ("a = 'open\n'", 1, "unterminated string"),
            ("\n\na = [1,\n2", 3, "unterminated array"),
            ("a = 1 2", 1, "unexpected `2` after the value"),
            ("a = 1.5", 1, "floats are not supported"),
            ("a = inf", 1, "floats are not supported"),
            ("a = 1979-05-27", 1, "dates are not supported"),
            ("a = 07:32:00", 1, "dates are not supported"),
            ("a.b = 1", 1, "dotted keys are not supported"),
            ("[a.b]", 1, "dotted keys are not supported"),
            (
                "a = 99999999999999999999",
                1,
                "`99999999999999999999` is not an integer (or is out of range)",
            ),
            (
                "a = 1__0",
                1,
                "`1__0` is not an integer (or is out of range)",
            ),
            ("a = \"\\q\"", 1, "invalid escape in a string"),
            ("a = \"x\u{1}\"", 1, "control character in a string"),
            ("[t]\n[t]", 2, "`t` is already defined, on line 1"),
            ("a = 1\n[[a]]", 2, "`a` is already defined, on line 1"),
            ("[[r]]\n[r]", 2, "`r` is already defined, on line 1"),
            ("[t\nx = 1", 1, "expected `]` after `t`"),
            (
                "a = {b = 1 c = 2}",
                1,
                "expected `,` or `}` in an inline table",
            ),
            ("= 1", 1, "expected a key, found `=`"),
            ("a = nope", 1, "floats are not supported"),
            ("a = --5", 1, "`--5` is not an integer (or is out of range)"),
            (
                "a = +0x10",
                1,
                "`+0x10` is not an integer (or is out of range)",
            ),
            (
                "a = 0x-1f",
                1,
                "`0x-1f` is not an integer (or is out of range)",
            ),
            ("a = \"\\u+063\"", 1, "invalid escape in a string"),
            ("a = \"\\u12\"\n", 1, "invalid escape in a string"),
            (
                "a = \"\\u0000\"",
                1,
                "a string cannot hold NUL (no program can take it)",
            ),
            (
                "a = 1\r2",
                1,
                "unexpected a control character after the value",
            ),
            ("a = @", 1, "expected a value, found `@`"),
            (
                "a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
                1,
                "arrays and tables nest deeper than 32",
            ),
        ];
        for (text, line, message) in cases {
            assert_eq!(err(text), (*line, message.to_string()), "{text}");
        }
    }

    #[test]
    fn a_real_config() {
        let root = parse(
            r#"# fiddler_crab
listen = "0.0.0.0:8080"
queue = 500
quiet = false
[[route]]
method = "POST"
path = "/generate"
command = ["llama-cli", "-m", "/models/m.gguf",
           "-f", "/dev/stdin", "-n", "64"]   # trailing comment
timeout = 120
env = ["OMP_NUM_THREADS=2"]
max_output = 1_048_576
[[route]]
method = 'GET'
path = "/x/*"
command = ["/bin/echo", "a b"]
"#,
        )
        .unwrap();
        assert_eq!(root.get("queue").unwrap().value, Value::Integer(500));
        let Value::Tables(routes) = &root.get("route").unwrap().value else {
            panic!()
        };
        assert_eq!((routes.len(), routes[0].line, routes[1].line), (2, 5, 13));
        let command = routes[0].get("command").unwrap();
        assert_eq!(command.line, 8);
        assert_eq!(
            command.value,
            Value::Array(
                [
                    "llama-cli",
                    "-m",
                    "/models/m.gguf",
                    "-f",
                    "/dev/stdin",
                    "-n",
                    "64"
                ]
                .map(s)
                .to_vec()
            )
        );
        assert_eq!(routes[0].get("timeout").unwrap().line, 10);
        assert_eq!(
            routes[1].get("command").unwrap().value,
            Value::Array(vec![s("/bin/echo"), s("a b")])
        );
    }
}
