//! Reader for the nats-server configuration file format.
//!
//! Two layers:
//!
//! * [`parse`] / [`parse_file`] turn text into a tree of [`Located`] values
//!   (maps keep their keys in file order and as written);
//! * [`server_conf`] reads the options this server understands out of that
//!   tree into a [`ServerConf`], collecting [`Warning`]s for options it
//!   ignores.
//!
//! The accepted syntax follows what nats-server 2.15.1 accepts (checked
//! against the real binary), including its quirks where they matter for real
//! configuration files:
//!
//! * `key = value`, `key: value`, `key value`, `key { ... }` (the block may
//!   start on the next line); entries end at a new line, `,` or `;`;
//! * `#` and `//` comments, whole line or trailing (a trailing comment needs
//!   white space before it when it follows a bare value: `4222#x` is the
//!   string `"4222#x"`, exactly like nats-server);
//! * bare values: `true`/`false`/`yes`/`no`/`on`/`off` (any case) are
//!   booleans; `enabled`/`disabled` are plain strings (the `jetstream` key
//!   gives them meaning); integers may carry a size suffix where `K`, `M`,
//!   `G`, `T`, `P`, `E` are powers of 1000 and `KB`, `KiB`, `Ki`, `MB`, ... are
//!   powers of 1024 (`64MB` = 67108864, `1G` = 1000000000); `1.5` is a float;
//!   anything else (`127.0.0.1:4222`, `500ms`, `/tmp/x`) is a string;
//! * quoted strings: `"..."` with escapes `\t \n \r \" \\ \xXX` (and, as an
//!   extension nats-server lacks, `\uXXXX`), `'...'` taken literally;
//! * `include path` (relative to the including file), whose keys merge into
//!   the enclosing block;
//! * `$name` variables, resolved from earlier keys of the same or an
//!   enclosing block (case-sensitive), else from the environment, where the
//!   value is itself parsed as a configuration value (`PORT=4222` gives an
//!   integer).
//!
//! Deliberate differences from nats-server, all more lenient: arrays may
//! separate items with plain spaces, `[1]` is accepted (nats-server rejects an
//! integer directly followed by `]`), `key{` needs no space, bare values may
//! start with `.` (`./data`), absolute include paths are used as they are, an
//! include cycle is reported instead of crashing, and an ISO 8601 date value
//! is kept as a string.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Deepest nesting of blocks and arrays accepted (guards the parser's stack).
const MAX_NESTING: usize = 128;
/// Deepest chain of `include`s accepted.
const MAX_INCLUDE_DEPTH: usize = 32;

// ---------------------------------------------------------------------------
// Tree
// ---------------------------------------------------------------------------

/// A configuration value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    /// Never produced by the parser (nats-server has no duration literal:
    /// bare `500ms` is a string and bare `2m` is the integer 2000000); kept
    /// for values built in code. [`as_duration`] accepts it.
    Duration(Duration),
    Array(Vec<Located>),
    /// Entries in file order, keys as written. A key may appear more than
    /// once; the last one wins (see [`Located::get`]).
    Map(Vec<(String, Located)>),
}

impl Value {
    /// Short name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::Integer(_) => "integer",
            Value::Float(_) => "float",
            Value::Bool(_) => "boolean",
            Value::Duration(_) => "duration",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
        }
    }
}

/// A value with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub value: Value,
    /// 1-based line: of the key for a map entry, of the value itself for an
    /// array element.
    pub line: usize,
    /// The file the value was read from (`None` for values built in code).
    pub file: Option<Arc<Path>>,
    /// True when this map entry was referenced as a `$variable`; nats-server
    /// does not report such keys as unknown fields, and neither does
    /// [`server_conf`].
    pub used_as_variable: bool,
}

impl Located {
    /// A value with no file, not used as a variable.
    pub fn new(value: Value, line: usize) -> Located {
        Located {
            value,
            line,
            file: None,
            used_as_variable: false,
        }
    }

    /// On a map, the entry for `key` compared case-insensitively (the last one
    /// when the key is repeated). `None` on other values.
    pub fn get(&self, key: &str) -> Option<&Located> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .rev()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.value {
            Value::Integer(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(String, Located)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Located]> {
        match &self.value {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Where this value is, for messages.
    pub fn loc(&self) -> Loc {
        Loc {
            file: self.file.as_ref().map(|f| f.to_path_buf()),
            line: self.line,
        }
    }
}

/// A position in a configuration file: displays as `file:line`, or
/// `line N` when the file is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Option<PathBuf>,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}:{}", file.display(), self.line),
            None => write!(f, "line {}", self.line),
        }
    }
}

/// Everything that can go wrong reading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// The text is not valid configuration syntax.
    #[error("{at}: {message}")]
    Syntax { at: Loc, message: String },
    /// `$name` is neither an earlier key nor an environment variable.
    #[error("{at}: variable reference for '{name}' can not be found")]
    UnknownVariable { at: Loc, name: String },
    /// The environment variable behind `$name` is not a valid value.
    #[error("{at}: variable reference for '{name}' could not be parsed: {message}")]
    BadVariable {
        at: Loc,
        name: String,
        message: String,
    },
    /// A file includes itself, directly or through other files.
    #[error("{at}: include cycle: '{}' is already being read", path.display())]
    IncludeCycle { at: Loc, path: PathBuf },
    /// An included file could not be read.
    #[error("{at}: error reading include file '{}': {source}", path.display())]
    Include {
        at: Loc,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The configuration file itself could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A known key has a value of the wrong type or an invalid value.
    #[error("{at}: {}", key_message(key, message))]
    Invalid {
        at: Loc,
        key: String,
        message: String,
    },
    /// The configuration holds no keys at all (nats-server refuses these).
    #[error("{}: config has no values or is empty", display_opt(file))]
    Empty { file: Option<PathBuf> },
}

fn key_message(key: &str, message: &str) -> String {
    if key.is_empty() {
        message.to_string()
    } else {
        format!("{key}: {message}")
    }
}

fn display_opt(file: &Option<PathBuf>) -> String {
    match file {
        Some(f) => f.display().to_string(),
        None => "configuration".to_string(),
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// Parses configuration text. `origin` names the text in messages and is the
/// base for relative `include` paths (its parent directory); `env` resolves
/// `$variables` that are not keys of the configuration. Returns the root map.
pub fn parse(
    text: &str,
    origin: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Located, ConfError> {
    let mut includes = Vec::new();
    if let Ok(canonical) = origin.canonicalize() {
        includes.push(canonical);
    }
    parse_document(text, origin, Some(env), &mut includes)
}

/// Reads and parses a configuration file, resolving variables from the
/// process environment.
pub fn parse_file(path: &Path) -> Result<Located, ConfError> {
    let text = read_text(path).map_err(|source| ConfError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let env = |name: &str| std::env::var(name).ok();
    parse(&text, path, &env)
}

fn read_text(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "file is not valid UTF-8")
    })
}

type Env<'e> = Option<&'e dyn Fn(&str) -> Option<String>>;

fn parse_document(
    text: &str,
    origin: &Path,
    env: Env<'_>,
    includes: &mut Vec<PathBuf>,
) -> Result<Located, ConfError> {
    let file: Arc<Path> = Arc::from(origin);
    let mut p = Parser {
        bytes: text.as_bytes(),
        src: text,
        pos: 0,
        line: 1,
        file: file.clone(),
        env,
        scopes: vec![Vec::new()],
        includes,
        depth: 0,
    };
    if text.starts_with('\u{feff}') {
        p.pos = '\u{feff}'.len_utf8();
    }
    p.parse_entries(None)?;
    let entries = p.scopes.pop().unwrap_or_default();
    Ok(Located {
        value: Value::Map(entries),
        line: 1,
        file: Some(file),
        used_as_variable: false,
    })
}

struct Parser<'a, 'e> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    line: usize,
    file: Arc<Path>,
    env: Env<'e>,
    /// Maps being built, outermost first: where `$variables` are looked up.
    scopes: Vec<Vec<(String, Located)>>,
    /// Canonical paths of the files being read (include cycle detection).
    includes: &'a mut Vec<PathBuf>,
    depth: usize,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

fn is_ws(b: u8) -> bool {
    is_space(b) || b == b'\n'
}

/// Bytes that end a bare value.
fn ends_bare_value(b: u8) -> bool {
    is_ws(b) || matches!(b, b',' | b';' | b'}' | b']')
}

/// Bytes that end a bare key.
fn ends_bare_key(b: u8) -> bool {
    is_ws(b)
        || matches!(
            b,
            b':' | b'=' | b'{' | b'}' | b'[' | b']' | b',' | b';' | b'#'
        )
}

fn describe(b: Option<u8>) -> String {
    match b {
        None => "end of file".to_string(),
        Some(b'\n') => "new line".to_string(),
        Some(b) if b.is_ascii_graphic() => format!("'{}'", b as char),
        Some(b) => format!("byte 0x{b:02x}"),
    }
}

impl<'a, 'e> Parser<'a, 'e> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.pos + offset).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
        }
        Some(b)
    }

    fn loc(&self, line: usize) -> Loc {
        Loc {
            file: Some(self.file.to_path_buf()),
            line,
        }
    }

    fn err<T>(&self, line: usize, message: impl Into<String>) -> Result<T, ConfError> {
        Err(ConfError::Syntax {
            at: self.loc(line),
            message: message.into(),
        })
    }

    fn located(&self, value: Value, line: usize) -> Located {
        Located {
            value,
            line,
            file: Some(self.file.clone()),
            used_as_variable: false,
        }
    }

    fn at_comment(&self) -> bool {
        match self.peek() {
            Some(b'#') => true,
            Some(b'/') => self.peek_at(1) == Some(b'/'),
            _ => false,
        }
    }

    fn skip_comment(&mut self) {
        while let Some(b) = self.peek() {
            if b == b'\n' {
                break;
            }
            self.pos += 1;
        }
    }

    fn skip_spaces(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
        self.pos != start
    }

    /// Skips white space, new lines and comments.
    fn skip_blank(&mut self) {
        loop {
            match self.peek() {
                Some(b) if is_ws(b) => {
                    self.bump();
                }
                _ if self.at_comment() => self.skip_comment(),
                _ => return,
            }
        }
    }

    fn enter(&mut self, line: usize) -> Result<(), ConfError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return self.err(
                line,
                format!("blocks and arrays nested deeper than {MAX_NESTING} levels"),
            );
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn push_entry(&mut self, key: String, value: Located) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.push((key, value));
        }
    }

    /// Parses `key value` entries into the innermost scope, up to the end of
    /// the text (`close == None`) or the `}` closing a block opened on
    /// `open_line`.
    fn parse_entries(&mut self, close: Option<usize>) -> Result<(), ConfError> {
        loop {
            self.skip_blank();
            let line = self.line;
            match self.peek() {
                None => {
                    return match close {
                        None => Ok(()),
                        Some(open) => self.err(
                            line,
                            format!("unexpected end of file in block opened at line {open}"),
                        ),
                    };
                }
                Some(b'}') => {
                    if close.is_some() {
                        self.bump();
                        return Ok(());
                    }
                    return self.err(line, "unexpected '}' with no block open");
                }
                Some(b'{') if close.is_none() && self.depth == 0 => {
                    // A top-level `{ ... }` (JSON style) wraps root entries.
                    self.bump();
                    self.enter(line)?;
                    self.parse_entries(Some(line))?;
                    self.leave();
                    self.end_of_entry(None)?;
                    continue;
                }
                Some(b @ (b':' | b'=')) => {
                    return self.err(line, format!("unexpected key separator '{}'", b as char));
                }
                Some(b @ (b',' | b';' | b']' | b'{' | b'[')) => {
                    return self.err(line, format!("expected a key, got '{}'", b as char));
                }
                Some(_) => {}
            }
            let (key, quoted) = self.parse_key()?;
            if !quoted && key.eq_ignore_ascii_case("include") && self.is_include_directive() {
                self.parse_include(line)?;
            } else {
                self.parse_key_value(key, line)?;
            }
            self.end_of_entry(close)?;
        }
    }

    /// After an entry: spaces, then a new line, `,`, `;`, a comment, the end
    /// of the text or the closing `}` of the block.
    fn end_of_entry(&mut self, close: Option<usize>) -> Result<(), ConfError> {
        self.skip_spaces();
        match self.peek() {
            None | Some(b'\n' | b',' | b';') => {
                self.bump();
                Ok(())
            }
            Some(b'}') if close.is_some() => Ok(()),
            _ if self.at_comment() => Ok(()),
            other => self.err(
                self.line,
                format!(
                    "expected a new line, ',' or ';' after a value, got {}",
                    describe(other)
                ),
            ),
        }
    }

    fn parse_key(&mut self) -> Result<(String, bool), ConfError> {
        let line = self.line;
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => {
                self.bump();
                let key = if q == b'"' {
                    self.double_quoted(line)?
                } else {
                    self.single_quoted(line)?
                };
                Ok((key, true))
            }
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|b| !ends_bare_key(b)) {
                    self.pos += 1;
                }
                match self.src.get(start..self.pos) {
                    Some(key) if !key.is_empty() => Ok((key.to_string(), false)),
                    _ => self.err(
                        line,
                        format!("expected a key, got {}", describe(self.peek())),
                    ),
                }
            }
        }
    }

    /// `include` followed by spaces and something that is not a separator.
    fn is_include_directive(&self) -> bool {
        let mut i = self.pos;
        if !self.bytes.get(i).copied().is_some_and(is_space) {
            return false;
        }
        while self.bytes.get(i).copied().is_some_and(is_space) {
            i += 1;
        }
        !matches!(
            self.bytes.get(i),
            None | Some(b'\n' | b':' | b'=' | b'{' | b'#')
        )
    }

    fn parse_key_value(&mut self, key: String, line: usize) -> Result<(), ConfError> {
        self.skip_blank();
        match self.peek() {
            Some(b':' | b'=') => {
                self.bump();
                self.skip_spaces();
                if self.peek().is_none() || self.peek() == Some(b'\n') || self.at_comment() {
                    return self.err(
                        self.line,
                        format!(
                            "expected a value for '{key}', found {}",
                            describe(self.peek())
                        ),
                    );
                }
            }
            None => {
                return self.err(
                    line,
                    format!("expected a value for '{key}', found end of file"),
                );
            }
            _ => {}
        }
        let mut value = self.parse_value()?;
        value.line = line;
        self.push_entry(key, value);
        Ok(())
    }

    fn parse_value(&mut self) -> Result<Located, ConfError> {
        let line = self.line;
        match self.peek() {
            None => self.err(line, "expected a value, found end of file"),
            Some(b'{') => {
                self.bump();
                self.enter(line)?;
                self.scopes.push(Vec::new());
                let result = self.parse_entries(Some(line));
                let entries = self.scopes.pop().unwrap_or_default();
                self.leave();
                result?;
                Ok(self.located(Value::Map(entries), line))
            }
            Some(b'[') => {
                self.bump();
                self.enter(line)?;
                let items = self.parse_array_items(line)?;
                self.leave();
                Ok(self.located(Value::Array(items), line))
            }
            Some(b'"') => {
                self.bump();
                let s = self.double_quoted(line)?;
                Ok(self.located(Value::String(s), line))
            }
            Some(b'\'') => {
                self.bump();
                let s = self.single_quoted(line)?;
                Ok(self.located(Value::String(s), line))
            }
            Some(b'$') => {
                self.bump();
                let name = self.bare_token();
                if name.is_empty() {
                    return self.err(line, "expected a variable name after '$'");
                }
                self.resolve_variable(&name, line)
            }
            Some(b) if ends_bare_value(b) || b == b'{' => {
                self.err(line, format!("expected a value, got {}", describe(Some(b))))
            }
            Some(_) => {
                let token = self.bare_token();
                let value = classify_bare(&token).map_err(|message| ConfError::Syntax {
                    at: self.loc(line),
                    message,
                })?;
                Ok(self.located(value, line))
            }
        }
    }

    fn bare_token(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(|b| !ends_bare_value(b)) {
            self.pos += 1;
        }
        self.src
            .get(start..self.pos)
            .unwrap_or_default()
            .to_string()
    }

    fn parse_array_items(&mut self, open: usize) -> Result<Vec<Located>, ConfError> {
        let mut items = Vec::new();
        loop {
            self.skip_blank();
            match self.peek() {
                None => {
                    return self.err(
                        self.line,
                        format!("unexpected end of file in array opened at line {open}"),
                    );
                }
                Some(b']') => {
                    self.bump();
                    return Ok(items);
                }
                Some(b',') => return self.err(self.line, "unexpected ',' in array"),
                Some(b'}') => return self.err(self.line, "unexpected '}' in array"),
                Some(_) => {}
            }
            items.push(self.parse_value()?);
            let spaced = self.skip_spaces();
            match self.peek() {
                Some(b',' | b'\n') => {
                    self.bump();
                }
                Some(b']') => {}
                _ if self.at_comment() => {}
                None => {}
                Some(_) if spaced => {} // `[a b c]`: white space separates too
                other => {
                    return self.err(
                        self.line,
                        format!(
                            "expected ',' or ']' after an array value, got {}",
                            describe(other)
                        ),
                    );
                }
            }
        }
    }

    fn double_quoted(&mut self, open: usize) -> Result<String, ConfError> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.bump() else {
                return self.err(open, "unterminated string");
            };
            match b {
                b'"' => break,
                b'\\' => {
                    let line = self.line;
                    match self.bump() {
                        Some(b'n') => out.push(b'\n'),
                        Some(b't') => out.push(b'\t'),
                        Some(b'r') => out.push(b'\r'),
                        Some(b'"') => out.push(b'"'),
                        Some(b'\\') => out.push(b'\\'),
                        Some(b'x') => {
                            let hex = self.take_hex(2, line)?;
                            out.push(hex as u8);
                        }
                        Some(b'u') => {
                            let code = self.take_hex(4, line)?;
                            let Some(c) = char::from_u32(code) else {
                                return self
                                    .err(line, format!("invalid unicode escape \\u{code:04x}"));
                            };
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        None => return self.err(open, "unterminated string"),
                        Some(other) => {
                            return self.err(
                                line,
                                format!(
                                    "invalid escape character {}; allowed: \\xXX, \\uXXXX, \\t, \\n, \\r, \\\", \\\\",
                                    describe(Some(other))
                                ),
                            );
                        }
                    }
                }
                other => out.push(other),
            }
        }
        String::from_utf8(out).map_err(|_| ConfError::Syntax {
            at: self.loc(open),
            message: "string escapes do not form valid UTF-8".to_string(),
        })
    }

    fn take_hex(&mut self, digits: usize, line: usize) -> Result<u32, ConfError> {
        let mut value = 0u32;
        for _ in 0..digits {
            let d = self.peek().and_then(|b| (b as char).to_digit(16));
            let Some(d) = d else {
                return self.err(
                    line,
                    format!(
                        "expected {digits} hex digits in escape, got {}",
                        describe(self.peek())
                    ),
                );
            };
            self.pos += 1;
            value = value * 16 + d;
        }
        Ok(value)
    }

    fn single_quoted(&mut self, open: usize) -> Result<String, ConfError> {
        let start = self.pos;
        loop {
            match self.bump() {
                None => return self.err(open, "unterminated string"),
                Some(b'\'') => break,
                Some(_) => {}
            }
        }
        Ok(self
            .src
            .get(start..self.pos - 1)
            .unwrap_or_default()
            .to_string())
    }

    fn resolve_variable(&mut self, name: &str, line: usize) -> Result<Located, ConfError> {
        for scope in self.scopes.iter_mut().rev() {
            if let Some((_, entry)) = scope.iter_mut().rev().find(|(k, _)| k == name) {
                entry.used_as_variable = true;
                let mut value = entry.clone();
                value.used_as_variable = false;
                value.line = line;
                value.file = Some(self.file.clone());
                return Ok(value);
            }
        }
        let raw = self.env.and_then(|env| env(name));
        let Some(raw) = raw else {
            return Err(ConfError::UnknownVariable {
                at: self.loc(line),
                name: name.to_string(),
            });
        };
        let bad = |message: String| ConfError::BadVariable {
            at: self.loc(line),
            name: name.to_string(),
            message,
        };
        if raw.trim().is_empty() {
            return Ok(self.located(Value::String(raw), line));
        }
        // The environment value is itself a configuration value; it may not
        // refer to further variables.
        let mut no_includes = Vec::new();
        let mut sub = Parser {
            src: &raw,
            bytes: raw.as_bytes(),
            pos: 0,
            line: 1,
            file: self.file.clone(),
            env: None,
            scopes: Vec::new(),
            includes: &mut no_includes,
            depth: self.depth,
        };
        sub.skip_spaces();
        let value = sub.parse_value().map_err(|e| bad(error_message(&e)))?;
        sub.skip_blank();
        if let Some(b) = sub.peek() {
            return Err(bad(format!(
                "unexpected {} after the value",
                describe(Some(b))
            )));
        }
        Ok(self.located(value.value, line))
    }

    fn parse_include(&mut self, line: usize) -> Result<(), ConfError> {
        self.skip_spaces();
        let name = match self.peek() {
            Some(b'"') => {
                self.bump();
                self.double_quoted(line)?
            }
            Some(b'\'') => {
                self.bump();
                self.single_quoted(line)?
            }
            _ => self.bare_token(),
        };
        if name.is_empty() {
            return self.err(line, "include needs a file name");
        }
        let relative = Path::new(&name);
        let path = if relative.is_absolute() {
            relative.to_path_buf()
        } else {
            match self.file.parent() {
                Some(dir) => dir.join(relative),
                None => relative.to_path_buf(),
            }
        };
        let at = self.loc(line);
        let canonical = path.canonicalize().map_err(|source| ConfError::Include {
            at: at.clone(),
            path: path.clone(),
            source,
        })?;
        if self.includes.contains(&canonical) {
            return Err(ConfError::IncludeCycle { at, path });
        }
        if self.includes.len() >= MAX_INCLUDE_DEPTH {
            return self.err(
                line,
                format!("includes nested deeper than {MAX_INCLUDE_DEPTH} files"),
            );
        }
        let text = read_text(&path).map_err(|source| ConfError::Include {
            at,
            path: path.clone(),
            source,
        })?;
        self.includes.push(canonical);
        let included = parse_document(&text, &path, self.env, self.includes);
        self.includes.pop();
        if let Value::Map(entries) = included?.value {
            for (k, v) in entries {
                self.push_entry(k, v);
            }
        }
        Ok(())
    }
}

/// The message of an error without its location (for nesting in another).
fn error_message(e: &ConfError) -> String {
    match e {
        ConfError::Syntax { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Size suffixes of bare integers, lower case: (suffix, multiplier).
const SIZE_SUFFIXES: &[(&str, i64)] = &[
    ("k", 1_000),
    ("kb", 1 << 10),
    ("ki", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1_000_000),
    ("mb", 1 << 20),
    ("mi", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1_000_000_000),
    ("gb", 1 << 30),
    ("gi", 1 << 30),
    ("gib", 1 << 30),
    ("t", 1_000_000_000_000),
    ("tb", 1 << 40),
    ("ti", 1 << 40),
    ("tib", 1 << 40),
    ("p", 1_000_000_000_000_000),
    ("pb", 1 << 50),
    ("pi", 1 << 50),
    ("pib", 1 << 50),
    ("e", 1_000_000_000_000_000_000),
    ("eb", 1 << 60),
    ("ei", 1 << 60),
    ("eib", 1 << 60),
];

/// The value of a bare (unquoted) token, as nats-server types it.
fn classify_bare(token: &str) -> Result<Value, String> {
    match token.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => return Ok(Value::Bool(true)),
        "false" | "no" | "off" => return Ok(Value::Bool(false)),
        _ => {}
    }
    let bytes = token.as_bytes();
    let (negative, rest) = match token.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, token),
    };
    if bytes.first() == Some(&b'.') {
        if bytes.get(1).is_some_and(u8::is_ascii_digit) {
            return Err(format!(
                "invalid number '{token}': floats must start with a digit"
            ));
        }
        return Ok(Value::String(token.to_string()));
    }
    let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits_len == 0 {
        if negative {
            return Err(format!(
                "invalid number '{token}': expected a digit after '-'"
            ));
        }
        return Ok(Value::String(token.to_string()));
    }
    let (digits, tail) = rest.split_at(digits_len);
    let out_of_range = || format!("integer '{token}' is out of range");
    let integer = |digits: &str| -> Result<i64, String> {
        let magnitude: i128 = digits.parse().map_err(|_| out_of_range())?;
        let signed = if negative { -magnitude } else { magnitude };
        i64::try_from(signed).map_err(|_| out_of_range())
    };
    if tail.is_empty() {
        return integer(digits).map(Value::Integer);
    }
    let lower_tail = tail.to_ascii_lowercase();
    if let Some((_, mult)) = SIZE_SUFFIXES.iter().find(|(s, _)| *s == lower_tail) {
        let n = integer(digits)?;
        return n
            .checked_mul(*mult)
            .map(Value::Integer)
            .ok_or_else(out_of_range);
    }
    if let Some(after_dot) = tail.strip_prefix('.') {
        let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if frac_len == 0 {
            return Err(format!(
                "invalid number '{token}': floats must have a digit after the '.'"
            ));
        }
        let after_frac = after_dot.get(frac_len..).unwrap_or_default();
        if after_frac.is_empty() {
            return token
                .parse::<f64>()
                .map(Value::Float)
                .map_err(|_| format!("invalid float '{token}'"));
        }
        if after_frac.starts_with('.') {
            // 10.0.0.1, 127.0.0.1:4222, 1.2.3
            return Ok(Value::String(token.to_string()));
        }
        return Err(format!("invalid number '{token}'"));
    }
    if tail.starts_with('-') {
        if !negative && is_zulu_datetime(token) {
            return Ok(Value::String(token.to_string()));
        }
        return Err(format!(
            "invalid value '{token}': dates must be in full ISO 8601 Zulu form (2006-01-02T15:04:05Z)"
        ));
    }
    // 1b, 0x10, 1e3, 127:1, 500ms, 1h30m: plain strings, as in nats-server.
    Ok(Value::String(token.to_string()))
}

fn is_zulu_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    let pattern = b"dddd-dd-ddTdd:dd:ddZ";
    b.len() == pattern.len()
        && b.iter().zip(pattern.iter()).all(|(c, p)| {
            if *p == b'd' {
                c.is_ascii_digit()
            } else {
                c == p
            }
        })
}

// ---------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------

/// Parses a Go-style duration such as `"2m"`, `"1h30m"`, `"500ms"`, `"1.5h"`
/// (units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`; a lone `"0"` needs no unit).
/// Negative durations are rejected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration \"{text}\"");
    let mut s = text;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, rest) = s.split_at(int_len);
        let (frac_part, rest) = match rest.strip_prefix('.') {
            Some(after) => {
                let n = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(n)
            }
            None => ("", rest),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .bytes()
            .take_while(|b| !b.is_ascii_digit() && *b != b'.')
            .count();
        let (unit, rest) = rest.split_at(unit_len);
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration \"{text}\"")),
            other => return Err(format!("unknown unit \"{other}\" in duration \"{text}\"")),
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(nanos_per).ok_or_else(invalid)?;
        if !frac_part.is_empty() {
            // Keep enough digits for nanosecond precision; Go truncates too.
            let kept = frac_part.get(..frac_part.len().min(24)).unwrap_or_default();
            let numerator: u128 = kept.parse().map_err(|_| invalid())?;
            let scale = 10u128.pow(kept.len() as u32);
            value = value
                .checked_add(numerator * nanos_per / scale)
                .ok_or_else(invalid)?;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > i64::MAX as u128 {
            return Err(invalid());
        }
        s = rest;
    }
    if negative && total != 0 {
        return Err(format!("negative duration \"{text}\" is not allowed"));
    }
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// A duration from a configuration value: a duration string like `"2m"` or
/// `"1h30m"`, a [`Value::Duration`], or an integer number of seconds (what
/// nats-server does for `ping_interval: 20`, with a warning that
/// [`server_conf`] reproduces).
pub fn as_duration(value: &Located) -> Result<Duration, ConfError> {
    duration_of("", value)
}

fn duration_of(key: &str, value: &Located) -> Result<Duration, ConfError> {
    let invalid = |message: String| ConfError::Invalid {
        at: value.loc(),
        key: key.to_string(),
        message,
    };
    match &value.value {
        Value::Duration(d) => Ok(*d),
        Value::String(s) => parse_duration(s).map_err(invalid),
        Value::Integer(i) => u64::try_from(*i)
            .map(Duration::from_secs)
            .map_err(|_| invalid(format!("negative duration {i} is not allowed"))),
        other => Err(invalid(format!(
            "expected a duration such as \"10s\", got {}",
            other.type_name()
        ))),
    }
}

// ---------------------------------------------------------------------------
// Typed layer
// ---------------------------------------------------------------------------

/// The server options read from a configuration. `None` means "not set":
/// the server's default applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerConf {
    /// Client listen host. `listen: ":4222"` sets it back to `None`.
    pub host: Option<String>,
    /// Client port; -1 means a random port.
    pub port: Option<i32>,
    pub server_name: Option<String>,
    pub http_host: Option<String>,
    /// Monitoring port; -1 means a random port.
    pub http_port: Option<i32>,
    pub max_payload: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_control_line: Option<u64>,
    pub max_pending: Option<u64>,
    pub write_deadline: Option<Duration>,
    pub ping_interval: Option<Duration>,
    pub ping_max: Option<u32>,
    pub debug: Option<bool>,
    pub trace: Option<bool>,
    pub logtime: Option<bool>,
    pub log_file: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub ports_file_dir: Option<PathBuf>,
    /// Lower-cased, as nats-server reports them.
    pub server_tags: Vec<String>,
    pub jetstream: Option<JetStreamConf>,
    /// The raw `authorization` block.
    pub authorization: Option<Located>,
    /// The raw `accounts` block (read by [`crate::account::accounts_from_conf`]).
    pub accounts: Option<Located>,
    /// The `tls` block.
    pub tls: Option<TlsConf>,
    pub lame_duck_duration: Option<Duration>,
    pub lame_duck_grace_period: Option<Duration>,
}

/// The `jetstream` option.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JetStreamConf {
    pub enabled: bool,
    pub store_dir: Option<PathBuf>,
    /// `None` when unset or negative (nats-server then sizes it itself).
    pub max_memory_store: Option<u64>,
    pub max_file_store: Option<u64>,
    pub strict: Option<bool>,
    pub sync_interval: Option<SyncInterval>,
}

/// The `tls { }` block (client connections).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsConf {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub verify: bool,
    /// Handshake timeout: seconds (integer or fractional) or a duration string.
    pub timeout: Option<Duration>,
    pub handshake_first: bool,
}

/// `tls { }` keys nats-server knows that this server does not implement.
/// They refuse the start: running with different security than configured
/// is never right.
const KNOWN_UNSUPPORTED_TLS: &[&str] = &[
    "ca_certs_match",
    "cert_match",
    "cert_match_by",
    "cert_match_skip_invalid",
    "cert_store",
    "certs",
    "cipher_suites",
    "connection_rate_limit",
    "curve_preferences",
    "insecure",
    "min_version",
    "ocsp_peer",
    "pinned_certs",
    "verify_and_map",
    "verify_cert_and_check_known_urls",
];

/// `jetstream { sync_interval: ... }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncInterval {
    /// `sync_interval: always`: sync after every write.
    Always,
    Every(Duration),
}

/// An option that was read but is not acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The key as written, prefixed by its block for nested keys
    /// (`jetstream.domain`).
    pub key: String,
    pub line: usize,
    pub message: String,
}

/// Top-level keys nats-server 2.15.1 knows but this server does not act on.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "allow_non_tls",
    "client_advertise",
    "cluster",
    "connect_error_reports",
    "default_js_domain",
    "default_sentinel",
    "disable_sublist_cache",
    "gateway",
    "http_base_path",
    "https",
    "https_port",
    "leaf",
    "leafnodes",
    "log_max_num",
    "log_size_limit",
    "logfile_max_num",
    "logfile_size_limit",
    "logtime_utc",
    "mappings",
    "max_closed_clients",
    "max_subs",
    "max_subscriptions",
    "max_traced_msg_len",
    "mqtt",
    "no_auth_user",
    "no_fast_producer_stall",
    "no_header_support",
    "no_sys_acc",
    "no_system_account",
    "ocsp",
    "ocsp_cache",
    "operator",
    "operators",
    "prof_block_rate",
    "prof_port",
    "proxies",
    "reconnect_error_reports",
    "remote_syslog",
    "resolver",
    "resolver_pinned_accounts",
    "resolver_preload",
    "resolver_tls",
    "server_metadata",
    "syslog",
    "system",
    "system_account",
    "trace_headers",
    "trace_verbose",
    "trusted",
    "trusted_keys",
    "websocket",
    "write_timeout",
    "ws",
];

/// `jetstream { ... }` keys nats-server knows but this server does not act on.
const KNOWN_UNSUPPORTED_JETSTREAM: &[&str] = &[
    "cipher",
    "domain",
    "extension_hint",
    "key",
    "limits",
    "max_buffered_msgs",
    "max_buffered_size",
    "max_outstanding_catchup",
    "prev_key",
    "request_queue_limit",
    "tpm",
    "unique_tag",
];

struct Reader {
    warnings: Vec<Warning>,
}

impl Reader {
    fn invalid<T>(
        &self,
        key: &str,
        value: &Located,
        message: impl Into<String>,
    ) -> Result<T, ConfError> {
        Err(ConfError::Invalid {
            at: value.loc(),
            key: key.to_string(),
            message: message.into(),
        })
    }

    fn wrong_type<T>(&self, key: &str, value: &Located, expected: &str) -> Result<T, ConfError> {
        self.invalid(
            key,
            value,
            format!("expected {expected}, got {}", value.value.type_name()),
        )
    }

    fn warn(&mut self, key: String, value: &Located, message: String) {
        self.warnings.push(Warning {
            key,
            line: value.line,
            message,
        });
    }

    fn string(&self, key: &str, value: &Located) -> Result<String, ConfError> {
        match &value.value {
            Value::String(s) => Ok(s.clone()),
            _ => self.wrong_type(key, value, "a string"),
        }
    }

    fn boolean(&self, key: &str, value: &Located) -> Result<bool, ConfError> {
        match value.value {
            Value::Bool(b) => Ok(b),
            _ => self.wrong_type(key, value, "a boolean (true/false, yes/no, on/off)"),
        }
    }

    fn integer(&self, key: &str, value: &Located) -> Result<i64, ConfError> {
        match value.value {
            Value::Integer(i) => Ok(i),
            _ => self.wrong_type(key, value, "an integer"),
        }
    }

    fn unsigned(&self, key: &str, value: &Located) -> Result<u64, ConfError> {
        let i = self.integer(key, value)?;
        u64::try_from(i)
            .or_else(|_| self.invalid(key, value, format!("must not be negative, got {i}")))
    }

    /// An unsigned integer nats-server stores in an int32.
    fn unsigned_i32(&self, key: &str, value: &Located) -> Result<u64, ConfError> {
        let n = self.unsigned(key, value)?;
        if n > i32::MAX as u64 {
            return self.invalid(
                key,
                value,
                format!("value {n} is too big (at most {})", i32::MAX),
            );
        }
        Ok(n)
    }

    fn port(&self, key: &str, value: &Located) -> Result<i32, ConfError> {
        let i = self.integer(key, value)?;
        i32::try_from(i).or_else(|_| self.invalid(key, value, format!("port {i} is out of range")))
    }

    fn duration(&mut self, key: &str, value: &Located) -> Result<Duration, ConfError> {
        if let Value::Integer(i) = value.value {
            self.warn(
                key.to_string(),
                value,
                format!("{key} should be converted to a duration (\"{i}s\"); the integer is taken as seconds"),
            );
        }
        duration_of(key, value)
    }

    fn path(&self, key: &str, value: &Located) -> Result<PathBuf, ConfError> {
        self.string(key, value).map(PathBuf::from)
    }

    /// `host:port`, `:port`, `[v6]:port`, or an integer port. Returns the
    /// host (`Some(None)` when written empty, `None` when only a port was
    /// given) and the port.
    #[allow(clippy::type_complexity)]
    fn host_port(
        &self,
        key: &str,
        value: &Located,
    ) -> Result<(Option<Option<String>>, i32), ConfError> {
        match &value.value {
            Value::Integer(_) => Ok((None, self.port(key, value)?)),
            Value::String(s) => {
                let Some((host, port)) = s.rsplit_once(':') else {
                    return self.invalid(
                        key,
                        value,
                        format!("could not parse address string \"{s}\""),
                    );
                };
                let port: i32 = port.parse().or_else(|_| {
                    self.invalid(key, value, format!("could not parse port \"{port}\""))
                })?;
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                let host = if host.is_empty() {
                    None
                } else {
                    Some(host.to_string())
                };
                Ok((Some(host), port))
            }
            _ => self.wrong_type(key, value, "a port or host:port"),
        }
    }

    fn tags(&self, key: &str, value: &Located) -> Result<Vec<String>, ConfError> {
        match &value.value {
            Value::String(s) => Ok(vec![s.to_lowercase()]),
            Value::Array(items) => items
                .iter()
                .map(|item| self.string(key, item).map(|s| s.to_lowercase()))
                .collect(),
            _ => self.wrong_type(key, value, "a string or an array of strings"),
        }
    }

    /// A JetStream store size: an integer (size suffixes allowed; negative
    /// means unset) or a string with a `K`/`M`/`G`/`T` suffix, which
    /// nats-server reads in powers of 1024 (`"1G"` = 1073741824).
    fn store_size(&self, key: &str, value: &Located) -> Result<Option<u64>, ConfError> {
        match &value.value {
            Value::Integer(i) => Ok(u64::try_from(*i).ok()),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => {
                let Some(last) = s.chars().last() else {
                    return Ok(None);
                };
                let shift = match last {
                    'K' => 10,
                    'M' => 20,
                    'G' => 30,
                    'T' => 40,
                    _ => {
                        return self.invalid(
                            key,
                            value,
                            "sizes defined as strings must end in K, M, G, T",
                        );
                    }
                };
                let digits = s.get(..s.len() - 1).unwrap_or_default();
                let digits = digits.strip_prefix('+').unwrap_or(digits);
                let n: u64 = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    digits.parse().or_else(|_| {
                        self.invalid(key, value, format!("size \"{s}\" is out of range"))
                    })?
                } else {
                    return self.invalid(key, value, format!("invalid size \"{s}\""));
                };
                n.checked_mul(1u64 << shift)
                    .filter(|n| *n <= i64::MAX as u64)
                    .map(Some)
                    .ok_or(())
                    .or_else(|_| self.invalid(key, value, format!("size \"{s}\" is out of range")))
            }
            _ => self.wrong_type(key, value, "a size (integer or string like \"1G\")"),
        }
    }

    /// `tls { cert_file, key_file, ca_file, verify, timeout, handshake_first }`;
    /// unknown keys are errors, as in nats-server ("error parsing tls config").
    fn tls(&mut self, value: &Located) -> Result<TlsConf, ConfError> {
        let Value::Map(entries) = &value.value else {
            return self.wrong_type("tls", value, "a map");
        };
        let mut t = TlsConf::default();
        for (k, v) in entries {
            let name = format!("tls.{k}");
            match k.to_ascii_lowercase().as_str() {
                "cert_file" => t.cert_file = Some(self.path(&name, v)?),
                "key_file" => t.key_file = Some(self.path(&name, v)?),
                "ca_file" => t.ca_file = Some(self.path(&name, v)?),
                "verify" => t.verify = self.boolean(&name, v)?,
                "timeout" => {
                    t.timeout = Some(match v.value {
                        Value::Float(f) if f.is_finite() && f >= 0.0 => Duration::from_secs_f64(f),
                        Value::Integer(i) if i >= 0 => Duration::from_secs(i.unsigned_abs()),
                        _ => duration_of(&name, v)?,
                    });
                }
                "handshake_first" | "first" => {
                    t.handshake_first = match &v.value {
                        Value::Bool(b) => *b,
                        // nats-server: a duration means "handshake first, or
                        // plain INFO after this long" (not implemented).
                        _ => {
                            return self.invalid(
                                &name,
                                v,
                                "only true or false is supported by this server \
                                 (a fallback delay is not)",
                            );
                        }
                    };
                }
                lower if KNOWN_UNSUPPORTED_TLS.contains(&lower) => {
                    return self.invalid(
                        &name,
                        v,
                        format!("{k} is not supported yet by this server; refusing to start"),
                    );
                }
                _ if v.used_as_variable => {}
                _ => {
                    return self.invalid(
                        &name,
                        v,
                        format!("error parsing tls config, unknown field \"{k}\""),
                    );
                }
            }
        }
        Ok(t)
    }

    fn jetstream(&mut self, value: &Located) -> Result<JetStreamConf, ConfError> {
        let key = "jetstream";
        match &value.value {
            Value::Bool(b) => Ok(JetStreamConf {
                enabled: *b,
                ..JetStreamConf::default()
            }),
            Value::String(s) if s.eq_ignore_ascii_case("enabled") => Ok(JetStreamConf {
                enabled: true,
                ..JetStreamConf::default()
            }),
            Value::String(s) if s.eq_ignore_ascii_case("disabled") => Ok(JetStreamConf::default()),
            Value::String(s) => self.invalid(
                key,
                value,
                format!("expected 'enabled' or 'disabled', got '{s}'"),
            ),
            Value::Map(entries) => {
                let mut js = JetStreamConf {
                    enabled: true,
                    ..JetStreamConf::default()
                };
                for (k, v) in entries {
                    let name = format!("jetstream.{k}");
                    match k.to_ascii_lowercase().as_str() {
                        "enabled" | "enable" => js.enabled = self.boolean(&name, v)?,
                        "store_dir" | "storedir" | "store" => {
                            js.store_dir = Some(self.path(&name, v)?)
                        }
                        "max_mem_store" | "max_memory_store" | "max_mem" => {
                            js.max_memory_store = self.store_size(&name, v)?;
                        }
                        "max_file_store" | "max_file" => {
                            js.max_file_store = self.store_size(&name, v)?
                        }
                        "strict" => js.strict = Some(self.boolean(&name, v)?),
                        "sync_interval" | "sync" => {
                            js.sync_interval = Some(match &v.value {
                                Value::String(s) if s.eq_ignore_ascii_case("always") => {
                                    SyncInterval::Always
                                }
                                _ => SyncInterval::Every(self.duration(&name, v)?),
                            });
                        }
                        lower if KNOWN_UNSUPPORTED_JETSTREAM.contains(&lower) => {
                            self.warn(
                                name.clone(),
                                v,
                                format!("unsupported option '{name}' is ignored"),
                            );
                        }
                        _ if v.used_as_variable => {}
                        _ => self.warn(
                            name.clone(),
                            v,
                            format!("unknown field '{name}' is ignored"),
                        ),
                    }
                }
                Ok(js)
            }
            _ => self.wrong_type(key, value, "a map, a boolean, or 'enabled'/'disabled'"),
        }
    }
}

/// Reads the options this server supports out of a parsed configuration.
/// Later keys override earlier ones (nats-server applies them in an
/// unspecified order). Options nats-server knows but this server ignores, and
/// unknown keys (which nats-server itself rejects), give a [`Warning`]; a
/// supported option with a wrong type or an invalid value is an error.
pub fn server_conf(root: &Located) -> Result<(ServerConf, Vec<Warning>), ConfError> {
    let Value::Map(entries) = &root.value else {
        return Err(ConfError::Invalid {
            at: root.loc(),
            key: String::new(),
            message: format!(
                "the configuration must be a map, got {}",
                root.value.type_name()
            ),
        });
    };
    if entries.is_empty() {
        return Err(ConfError::Empty {
            file: root.file.as_ref().map(|f| f.to_path_buf()),
        });
    }
    let mut r = Reader {
        warnings: Vec::new(),
    };
    let mut c = ServerConf::default();
    let mut top_store_dir: Option<(PathBuf, &Located)> = None;
    for (key, v) in entries {
        let k = key.as_str();
        match key.to_ascii_lowercase().as_str() {
            "listen" => {
                let (host, port) = r.host_port(k, v)?;
                if let Some(host) = host {
                    c.host = host;
                }
                c.port = Some(port);
            }
            "host" | "net" => c.host = Some(r.string(k, v)?),
            "port" => c.port = Some(r.port(k, v)?),
            "server_name" => {
                let name = r.string(k, v)?;
                if name.contains(' ') {
                    return r.invalid(k, v, "server name cannot contain spaces");
                }
                c.server_name = Some(name);
            }
            "http" => {
                let (host, port) = r.host_port(k, v)?;
                if let Some(host) = host {
                    c.http_host = host;
                }
                c.http_port = Some(port);
            }
            "http_port" | "monitor_port" => c.http_port = Some(r.port(k, v)?),
            "max_payload" => c.max_payload = Some(r.unsigned_i32(k, v)?),
            "max_connections" | "max_conn" => c.max_connections = Some(r.unsigned(k, v)?),
            "max_control_line" => c.max_control_line = Some(r.unsigned_i32(k, v)?),
            "max_pending" => c.max_pending = Some(r.unsigned(k, v)?),
            "write_deadline" => c.write_deadline = Some(r.duration(k, v)?),
            "ping_interval" => c.ping_interval = Some(r.duration(k, v)?),
            "ping_max" => {
                let n = r.unsigned(k, v)?;
                c.ping_max = Some(
                    u32::try_from(n)
                        .or_else(|_| r.invalid(k, v, format!("{n} is out of range")))?,
                );
            }
            "debug" => c.debug = Some(r.boolean(k, v)?),
            "trace" => c.trace = Some(r.boolean(k, v)?),
            "logtime" => c.logtime = Some(r.boolean(k, v)?),
            "log_file" | "logfile" => c.log_file = Some(r.path(k, v)?),
            "pid_file" | "pidfile" => c.pid_file = Some(r.path(k, v)?),
            "ports_file_dir" => c.ports_file_dir = Some(r.path(k, v)?),
            "server_tags" => c.server_tags = r.tags(k, v)?,
            "jetstream" => c.jetstream = Some(r.jetstream(v)?),
            "store_dir" => top_store_dir = Some((r.path(k, v)?, v)),
            "tls" => c.tls = Some(r.tls(v)?),
            "authorization" => match v.value {
                Value::Map(_) => c.authorization = Some(v.clone()),
                _ => return r.wrong_type(k, v, "a map"),
            },
            "accounts" => match v.value {
                Value::Map(_) => c.accounts = Some(v.clone()),
                _ => return r.wrong_type(k, v, "a map"),
            },
            "lame_duck_duration" => {
                let d = r.duration(k, v)?;
                if d < Duration::from_secs(30) {
                    return r.invalid(k, v, format!("{d:?} is too short, minimum is 30 seconds"));
                }
                c.lame_duck_duration = Some(d);
            }
            "lame_duck_grace_period" => c.lame_duck_grace_period = Some(r.duration(k, v)?),
            lower if KNOWN_UNSUPPORTED.contains(&lower) => {
                r.warn(
                    key.clone(),
                    v,
                    format!("unsupported option '{key}' is ignored"),
                );
            }
            _ if v.used_as_variable => {}
            _ => r.warn(
                key.clone(),
                v,
                format!("unknown field '{key}' is ignored (nats-server rejects it)"),
            ),
        }
    }
    if let Some((dir, v)) = top_store_dir {
        if let Some(js) = c.jetstream.as_mut() {
            if js.store_dir.is_some() {
                return r.invalid("store_dir", v, "Duplicate 'store_dir' configuration");
            }
            js.store_dir = Some(dir);
        }
    }
    Ok((c, r.warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn p(text: &str) -> Located {
        match parse(text, Path::new("test.conf"), &no_env) {
            Ok(root) => root,
            Err(e) => panic!("parse failed: {e}\n--- input ---\n{text}"),
        }
    }

    fn perr(text: &str) -> String {
        match parse(text, Path::new("test.conf"), &no_env) {
            Ok(root) => panic!("expected an error, got {root:?}\n--- input ---\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    fn val(text: &str) -> Value {
        p(&format!("k: {text}\n"))
            .get("k")
            .expect("k")
            .value
            .clone()
    }

    fn sc(text: &str) -> (ServerConf, Vec<Warning>) {
        server_conf(&p(text)).expect("server_conf")
    }

    fn sc_err(text: &str) -> String {
        match server_conf(&p(text)) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn s(v: &str) -> Value {
        Value::String(v.to_string())
    }

    fn keys(root: &Located) -> Vec<String> {
        root.as_map()
            .expect("map")
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }

    // --- separators and layout ---

    #[test]
    fn key_value_separators() {
        for text in [
            "port: 4222",
            "port = 4222",
            "port 4222",
            "port\t4222",
            "port:4222",
            "port=4222",
            "port : 4222",
            "port\n= 4222",
            "port\n4222",
        ] {
            assert_eq!(
                p(text).get("port").map(|v| v.value.clone()),
                Some(Value::Integer(4222)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn entry_terminators() {
        let root = p("a: 1; b: 2, c: 3\nd: 4;\ne = x;");
        assert_eq!(keys(&root), ["a", "b", "c", "d", "e"]);
        assert_eq!(root.get("e").map(|v| v.value.clone()), Some(s("x")));
        assert!(perr("port: 4222 port: 4223").contains("test.conf:1:"));
        assert!(perr("a: 1,, b: 2").contains("test.conf:1:"));
    }

    #[test]
    fn blocks() {
        let root = p(
            "authorization {\n  user: a\n  password: b\n}\njetstream\n{\n store_dir: /x\n}\nempty {}\nempty2 {\n}\nx = { y = { z = 1 } }\nnoSpace{ a: 1 }\n",
        );
        let auth = root.get("authorization").expect("auth");
        assert_eq!(auth.line, 1);
        assert_eq!(auth.get("USER").and_then(Located::as_str), Some("a"));
        assert_eq!(auth.get("password").map(|v| v.line), Some(3));
        let js = root.get("jetstream").expect("js");
        assert_eq!(js.line, 5);
        assert_eq!(js.get("store_dir").and_then(Located::as_str), Some("/x"));
        assert_eq!(
            root.get("empty").map(|v| v.value.clone()),
            Some(Value::Map(vec![]))
        );
        assert_eq!(
            root.get("empty2").map(|v| v.value.clone()),
            Some(Value::Map(vec![]))
        );
        let z = root
            .get("x")
            .and_then(|x| x.get("y"))
            .and_then(|y| y.get("z"));
        assert_eq!(z.and_then(Located::as_i64), Some(1));
        assert_eq!(
            root.get("nospace")
                .and_then(|b| b.get("a"))
                .and_then(Located::as_i64),
            Some(1)
        );
        // Entries inside an inline block end at ',' ';' or new line.
        let inline = p("a { b = 1, c = 2; d = 3 }");
        assert_eq!(keys(inline.get("a").expect("a")), ["b", "c", "d"]);
        assert!(perr("a { token = \"abc\" user = x }").contains("test.conf:1"));
    }

    #[test]
    fn top_level_braces_wrap_the_root() {
        let root = p("{ \"port\": 4222, \"server_name\": \"x\" }\ndebug: true");
        assert_eq!(keys(&root), ["port", "server_name", "debug"]);
    }

    #[test]
    fn arrays() {
        let expect = Value::Array(vec![
            Located::new(s("a"), 1),
            Located::new(s("b"), 1),
            Located::new(s("c"), 1),
        ]);
        let strip = |v: Value| match v {
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|i| Located::new(i.value, 1))
                    .collect(),
            ),
            other => other,
        };
        for text in [
            "[a, b, c]",
            "[a,b,c,]",
            "[a b c]",
            "[\n a\n b\n c\n]",
            "[ a, # one\n b // two\n c ]",
            "[\"a\", 'b', c]",
        ] {
            assert_eq!(strip(val(text)), expect, "{text:?}");
        }
        assert_eq!(val("[]"), Value::Array(vec![]));
        assert_eq!(val("[ ]"), Value::Array(vec![]));
        let mixed = val("[1, 1.5, true, 1K, [x], {a: b}]");
        let Value::Array(items) = mixed else {
            panic!("not an array")
        };
        let kinds: Vec<&str> = items.iter().map(|i| i.value.type_name()).collect();
        assert_eq!(
            kinds,
            ["integer", "float", "boolean", "integer", "array", "map"]
        );
        assert_eq!(items[3].value, Value::Integer(1000));
        // Line numbers of items.
        let Value::Array(items) = val("[\n a\n b\n]") else {
            panic!()
        };
        assert_eq!(items.iter().map(|i| i.line).collect::<Vec<_>>(), [2, 3]);
        assert!(perr("k: [a,,b]").contains("unexpected ','"));
        assert!(perr("k: [a}]").contains("test.conf:1"));
        assert!(perr("k: [a").contains("array opened at line 1"));
        assert!(perr("k: [a]b").contains("test.conf:1"));
    }

    #[test]
    fn arrays_of_maps() {
        let root = p(
            "authorization {\n users = [\n  {user: a, password: b}\n  {user: c\n   password: d}\n ]\n}",
        );
        let users = root
            .get("authorization")
            .and_then(|a| a.get("users"))
            .and_then(Located::as_array)
            .expect("users");
        assert_eq!(users.len(), 2);
        assert_eq!(
            users[1].get("password").and_then(Located::as_str),
            Some("d")
        );
        assert_eq!(users[1].get("password").map(|v| v.line), Some(5));
    }

    #[test]
    fn comments() {
        let root = p(
            "# heading\n// another\nport: 4222 # trailing\nname: x // trailing\nhost: \"h\"#c\nblock { # c\n  a: 1 // c\n} # c\n",
        );
        assert_eq!(keys(&root), ["port", "name", "host", "block"]);
        assert_eq!(root.get("port").and_then(Located::as_i64), Some(4222));
        assert_eq!(root.get("name").and_then(Located::as_str), Some("x"));
        assert_eq!(root.get("host").and_then(Located::as_str), Some("h"));
        // Without white space a '#' or '//' is part of a bare value (as in nats-server).
        assert_eq!(val("4222#c"), s("4222#c"));
        assert_eq!(val("a//b"), s("a//b"));
        assert_eq!(p("# only a comment").as_map().map(<[_]>::len), Some(0));
    }

    #[test]
    fn strings() {
        assert_eq!(val(r#""a\nb\tc\"d\\e\rf""#), s("a\nb\tc\"d\\e\rf"));
        assert_eq!(val(r#""\x41\u00e9""#), s("Aé"));
        assert_eq!(val(r#""\xc3\xa9""#), s("é"));
        assert_eq!(val(r"'a\nb'"), s("a\\nb"));
        assert_eq!(val("\"multi\nline\""), s("multi\nline"));
        assert_eq!(val("\"$HOME\""), s("$HOME"));
        assert_eq!(val("\"a b\" # c"), s("a b"));
        assert_eq!(val("\"\""), s(""));
        assert_eq!(val("a\"b"), s("a\"b"));
        assert!(perr("k: \"a\\qb\"").contains("invalid escape"));
        assert!(perr("k: \"a\\x4\"").contains("hex digits"));
        assert!(perr("k: \"\\xff\"").contains("UTF-8"));
        assert_eq!(
            perr("a: 1\nk: \"abc\n\n"),
            "test.conf:2: unterminated string"
        );
        assert_eq!(perr("k: 'abc"), "test.conf:1: unterminated string");
        assert!(perr("k: \"a\"b").contains("test.conf:1"));
    }

    #[test]
    fn quoted_keys() {
        let root = p("\"server name\": x\n'port': 1\n\"\": 2");
        assert_eq!(keys(&root), ["server name", "port", ""]);
    }

    #[test]
    fn bare_values() {
        assert_eq!(val("127.0.0.1:4222"), s("127.0.0.1:4222"));
        assert_eq!(val("127.0.0.1:-1"), s("127.0.0.1:-1"));
        assert_eq!(val("10.0.0.1"), s("10.0.0.1"));
        assert_eq!(val("localhost:4222"), s("localhost:4222"));
        assert_eq!(val("/var/lib/nats"), s("/var/lib/nats"));
        assert_eq!(val("./data"), s("./data"));
        assert_eq!(val("nats://a:4222"), s("nats://a:4222"));
        assert_eq!(val("a=b"), s("a=b"));
        assert_eq!(val("a:b"), s("a:b"));
        assert_eq!(val("enabled"), s("enabled"));
        assert_eq!(val("500ms"), s("500ms"));
        assert_eq!(val("1h30m"), s("1h30m"));
        assert_eq!(val("1b"), s("1b"));
        assert_eq!(val("0x10"), s("0x10"));
        assert_eq!(val("1e3"), s("1e3"));
        assert_eq!(val("2020-01-01T00:00:00Z"), s("2020-01-01T00:00:00Z"));
        assert!(perr("k: 2020-01-01").contains("ISO 8601"));
        assert!(perr("k: 1.5x").contains("invalid number"));
        assert!(perr("k: 1.5MB").contains("invalid number"));
        assert!(perr("k: 5.").contains("digit after"));
        assert!(perr("k: .5").contains("start with a digit"));
        assert!(perr("k: -x").contains("digit"));
        assert!(perr("k:").contains("expected a value"));
        assert!(perr("k: \nport: 1").contains("expected a value"));
        assert!(perr("k").contains("end of file"));
    }

    #[test]
    fn booleans() {
        for t in ["true", "TRUE", "True", "yes", "YES", "on", "On", "tRuE"] {
            assert_eq!(val(t), Value::Bool(true), "{t}");
        }
        for f in ["false", "FALSE", "no", "No", "off", "OFF"] {
            assert_eq!(val(f), Value::Bool(false), "{f}");
        }
        for not in ["enabled", "disabled", "t", "f", "y", "n", "1", "\"true\""] {
            assert!(!matches!(val(not), Value::Bool(_)), "{not}");
        }
    }

    #[test]
    fn numbers_and_sizes() {
        assert_eq!(val("4222"), Value::Integer(4222));
        assert_eq!(val("-1"), Value::Integer(-1));
        assert_eq!(val("010"), Value::Integer(10));
        assert_eq!(val("0"), Value::Integer(0));
        assert_eq!(val("1.5"), Value::Float(1.5));
        assert_eq!(val("-1.5"), Value::Float(-1.5));
        assert_eq!(val("9223372036854775807"), Value::Integer(i64::MAX));
        assert!(perr("k: 9223372036854775808").contains("out of range"));
        // Verified against nats-server 2.15.1: bare K/M/G/T/P/E are powers of
        // 1000, the B / i / iB forms are powers of 1024, any case.
        let cases: &[(&str, i64)] = &[
            ("1K", 1000),
            ("1k", 1000),
            ("1KB", 1024),
            ("1kb", 1024),
            ("1Ki", 1024),
            ("1KiB", 1024),
            ("1M", 1_000_000),
            ("2m", 2_000_000),
            ("64MB", 64 << 20),
            ("64MiB", 64 << 20),
            ("1mib", 1 << 20),
            ("1G", 1_000_000_000),
            ("10G", 10_000_000_000),
            ("1GB", 1 << 30),
            ("1GiB", 1 << 30),
            ("1T", 1_000_000_000_000),
            ("1TB", 1 << 40),
            ("1P", 1_000_000_000_000_000),
            ("1E", 1_000_000_000_000_000_000),
            ("1EB", 1 << 60),
            ("-1MB", -(1 << 20)),
        ];
        for (text, want) in cases {
            assert_eq!(val(text), Value::Integer(*want), "{text}");
        }
        assert!(perr("k: 8EB").contains("out of range"));
        assert_eq!(val("1Z"), s("1Z"));
        assert_eq!(val("1kbx"), s("1kbx"));
    }

    #[test]
    fn integers_before_closers() {
        assert_eq!(
            val("[1]"),
            Value::Array(vec![Located {
                value: Value::Integer(1),
                line: 1,
                file: Some(Arc::from(Path::new("test.conf"))),
                used_as_variable: false
            }])
        );
        let root = p("a {b = 1}");
        assert_eq!(
            root.get("a")
                .and_then(|a| a.get("b"))
                .and_then(Located::as_i64),
            Some(1)
        );
    }

    #[test]
    fn variables() {
        let root = p("TOKEN: abc\nauthorization { token: $TOKEN }\nT: 4222\nport: $T");
        assert_eq!(
            root.get("authorization")
                .and_then(|a| a.get("token"))
                .and_then(Located::as_str),
            Some("abc")
        );
        assert_eq!(root.get("port").and_then(Located::as_i64), Some(4222));
        assert_eq!(root.get("port").map(|v| v.line), Some(4));
        assert!(root.get("TOKEN").is_some_and(|v| v.used_as_variable));
        assert!(!root.get("port").is_some_and(|v| v.used_as_variable));
        // Inner blocks shadow outer ones; the latest assignment wins.
        let root = p("T: outer\nb { T: inner\n x: $T }\nX = 5\nX = 6\ny: $X");
        assert_eq!(
            root.get("b")
                .and_then(|b| b.get("x"))
                .and_then(Located::as_str),
            Some("inner")
        );
        assert_eq!(root.get("y").and_then(Located::as_i64), Some(6));
        // Reached from maps inside arrays, and blocks copied whole.
        let root = p(
            "P: x\naccounts { A { users: [{user: u, password: $P}] } }\nB { token: t }\nauthorization: $B",
        );
        let users = root
            .get("accounts")
            .and_then(|a| a.get("A"))
            .and_then(|a| a.get("users"))
            .and_then(Located::as_array)
            .expect("users");
        assert_eq!(
            users[0].get("password").and_then(Located::as_str),
            Some("x")
        );
        assert_eq!(
            root.get("authorization")
                .and_then(|a| a.get("token"))
                .and_then(Located::as_str),
            Some("t")
        );
        // Case-sensitive, must come before the use, names end like bare values.
        assert_eq!(
            perr("TOKEN: a\nb { t: $token }"),
            "test.conf:2: variable reference for 'token' can not be found"
        );
        assert!(perr("port: $X\nX = 6").contains("'X'"));
        assert!(perr("a { b { c = $P } }\nP = 1").contains("'P'"));
        assert!(perr("k: $HOME_NOT_THERE/x").contains("'HOME_NOT_THERE/x'"));
        assert!(perr("k: $").contains("variable name"));
        assert!(perr("a { b: $a }").contains("'a'"));
    }

    #[test]
    fn variables_from_the_environment() {
        let vars: HashMap<&str, &str> = HashMap::from([
            ("PORT", "4222"),
            ("NAME", "abc"),
            ("FLAG", "true"),
            ("SIZE", "1MB"),
            ("QUOTED", "\"quoted value\""),
            ("EMPTY", ""),
            ("SPACED", "a b"),
            ("MAP", "{token: x}"),
            ("INDIRECT", "$NAME"),
        ]);
        let env = |name: &str| vars.get(name).map(|v| v.to_string());
        let text = "port: $PORT\nnm: $NAME\nflag: $FLAG\nsize: $SIZE\nq: $QUOTED\ne: $EMPTY\nm: $MAP\nNAME: shadow\nn2: $NAME";
        let root = parse(text, Path::new("t.conf"), &env).expect("parse");
        assert_eq!(
            root.get("port").map(|v| v.value.clone()),
            Some(Value::Integer(4222))
        );
        assert_eq!(root.get("nm").map(|v| v.value.clone()), Some(s("abc")));
        assert_eq!(
            root.get("flag").map(|v| v.value.clone()),
            Some(Value::Bool(true))
        );
        assert_eq!(
            root.get("size").map(|v| v.value.clone()),
            Some(Value::Integer(1 << 20))
        );
        assert_eq!(
            root.get("q").map(|v| v.value.clone()),
            Some(s("quoted value"))
        );
        assert_eq!(root.get("e").map(|v| v.value.clone()), Some(s("")));
        assert_eq!(
            root.get("m")
                .and_then(|m| m.get("token"))
                .and_then(Located::as_str),
            Some("x")
        );
        assert_eq!(root.get("n2").map(|v| v.value.clone()), Some(s("shadow")));
        let e = parse("k: $SPACED", Path::new("t.conf"), &env).expect_err("spaced");
        assert!(matches!(e, ConfError::BadVariable { .. }), "{e}");
        let e = parse("k: $INDIRECT", Path::new("t.conf"), &env).expect_err("indirect");
        assert!(
            e.to_string().contains("'INDIRECT' could not be parsed"),
            "{e}"
        );
    }

    #[test]
    fn get_is_case_insensitive_and_last_wins() {
        let root = p("Port: 1\nPORT: 2\nother: x");
        assert_eq!(root.get("port").and_then(Located::as_i64), Some(2));
        assert_eq!(keys(&root), ["Port", "PORT", "other"]);
        assert!(root.get("missing").is_none());
        assert!(root.get("other").and_then(|o| o.get("x")).is_none());
    }

    #[test]
    fn verify_with_space_before_colon() {
        let root = p("tls {\n  verify : true\n  timeout : 2\n}");
        assert_eq!(
            root.get("tls")
                .and_then(|t| t.get("verify"))
                .and_then(Located::as_bool),
            Some(true)
        );
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        assert_eq!(
            perr("a: 1\n: abc"),
            "test.conf:2: unexpected key separator ':'"
        );
        assert_eq!(
            perr("a {\n b: 1\n"),
            "test.conf:3: unexpected end of file in block opened at line 1"
        );
        assert_eq!(
            perr("a: 1\n}"),
            "test.conf:2: unexpected '}' with no block open"
        );
        assert!(perr("[a]").starts_with("test.conf:1: "));
        assert!(perr("a: 1\nb: 1.5x\n").starts_with("test.conf:2: "));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("k: {}", "[".repeat(100_000));
        assert!(perr(&deep).contains("nested deeper"));
        let deep = format!("k: {}", "{a: ".repeat(100_000));
        assert!(perr(&deep).contains("nested deeper"));
        let ok = format!("k: {}{}", "[".repeat(50), "]".repeat(50));
        p(&ok);
    }

    const REALISTIC: &str = r#"# Server
server_name: "hub-1"
listen: 127.0.0.1:4222
http: 127.0.0.1:-1
max_payload: 8MB
max_pending: 64MiB
ping_interval: "2m"
write_deadline = "10s"
ping_max 3
debug: false
trace: off
logtime: yes
server_tags: ["region:eu", 'az:1', plain]
PASS: "s3cr\"t\u00e9"

jetstream {
  store_dir: "/var/lib/nats"
  max_mem_store: 1G
  max_file_store: "10G"
  sync_interval: always
}

authorization {
  users = [
    { user: alice, password: $PASS }
    { user: bob, password: 'b' }
  ]
  timeout: 2.5
}
lame_duck_duration: "2m"   // trailing
cluster { name: c1, listen: 0.0.0.0:6222 }
"#;

    #[test]
    fn no_panic_on_prefixes_and_corruptions() {
        let env = |name: &str| {
            if name == "X" {
                Some("[1, {a: ".to_string())
            } else {
                None
            }
        };
        let check = |text: &str| {
            if let Ok(root) = parse(text, Path::new("fuzz.conf"), &env) {
                let _ = server_conf(&root);
            }
        };
        let text = REALISTIC;
        for (i, _) in text.char_indices() {
            check(&text[..i]);
            check(&text[i..]);
        }
        // Single-byte substitutions with syntax characters.
        let specials = [
            "{", "}", "[", "]", "\"", "'", "$", "\\", "#", "/", ":", "=", ",", ";", "\n", "-", ".",
            "$X", "\u{e9}",
        ];
        for (i, _) in text.char_indices().step_by(3) {
            for sp in specials {
                let mut mutated = String::from(&text[..i]);
                mutated.push_str(sp);
                let rest = &text[i..];
                let skip = rest.chars().next().map_or(0, char::len_utf8);
                mutated.push_str(&rest[skip..]);
                check(&mutated);
            }
        }
        // Odd inputs.
        for odd in [
            "\u{feff}port: 1",
            "\0",
            "\"\\",
            "'",
            "$",
            "-",
            ".",
            "k: -",
            "k: \"\\u12",
            "k: \"\\uD800\"",
            "{",
            "}",
            "[",
            "]",
            "a{b{c{",
            "include",
            "include ",
            "include \"",
            "k: $X",
        ] {
            check(odd);
        }
    }

    #[test]
    fn realistic_config() {
        let root = p(REALISTIC);
        let (c, warnings) = server_conf(&root).expect("server_conf");
        assert_eq!(c.server_name.as_deref(), Some("hub-1"));
        assert_eq!(c.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(c.port, Some(4222));
        assert_eq!(c.http_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(c.http_port, Some(-1));
        assert_eq!(c.max_payload, Some(8 << 20));
        assert_eq!(c.max_pending, Some(64 << 20));
        assert_eq!(c.ping_interval, Some(Duration::from_secs(120)));
        assert_eq!(c.write_deadline, Some(Duration::from_secs(10)));
        assert_eq!(c.ping_max, Some(3));
        assert_eq!(
            (c.debug, c.trace, c.logtime),
            (Some(false), Some(false), Some(true))
        );
        assert_eq!(c.server_tags, ["region:eu", "az:1", "plain"]);
        let js = c.jetstream.expect("js");
        assert!(js.enabled);
        assert_eq!(js.store_dir.as_deref(), Some(Path::new("/var/lib/nats")));
        assert_eq!(js.max_memory_store, Some(1_000_000_000));
        assert_eq!(js.max_file_store, Some(10 << 30));
        assert_eq!(js.sync_interval, Some(SyncInterval::Always));
        let auth = c.authorization.expect("auth");
        let users = auth
            .get("users")
            .and_then(Located::as_array)
            .expect("users");
        assert_eq!(
            users[0].get("password").and_then(Located::as_str),
            Some("s3cr\"té")
        );
        assert_eq!(c.lame_duck_duration, Some(Duration::from_secs(120)));
        // `cluster` is known to nats-server but unsupported here; PASS was used
        // as a variable so it is not reported.
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].key, "cluster");
        assert_eq!(warnings[0].line, 31);
    }

    // --- includes ---

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("conf-rs-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        dir
    }

    #[test]
    fn includes() {
        let dir = tempdir("includes");
        std::fs::write(
            dir.join("sub/inc.conf"),
            "port: 4333\ninclude ./inc2.conf\nX: 7\n",
        )
        .expect("write");
        std::fs::write(dir.join("sub/inc2.conf"), "debug: true\n").expect("write");
        std::fs::write(dir.join("sub/auth.conf"), "token: abc\n").expect("write");
        std::fs::write(dir.join("sub/bad.conf"), "a: 1\nb: \"oops\n").expect("write");
        std::fs::write(
            dir.join("main.conf"),
            "include sub/inc.conf\nauthorization {\n  include \"sub/auth.conf\" # c\n}\nmax_payload: $X\nINCLUDE 'sub/inc2.conf'; trace: true\n",
        )
        .expect("write");
        let root = parse_file(&dir.join("main.conf")).expect("parse");
        assert_eq!(
            keys(&root),
            [
                "port",
                "debug",
                "X",
                "authorization",
                "max_payload",
                "debug",
                "trace"
            ]
        );
        assert_eq!(root.get("port").and_then(Located::as_i64), Some(4333));
        assert_eq!(root.get("max_payload").and_then(Located::as_i64), Some(7));
        assert_eq!(
            root.get("authorization")
                .and_then(|a| a.get("token"))
                .and_then(Located::as_str),
            Some("abc")
        );
        let port = root.get("port").expect("port");
        assert_eq!(
            port.file.as_deref(),
            Some(dir.join("sub/inc.conf").as_path())
        );
        assert_eq!(port.line, 1);

        // `include:` is an ordinary key.
        let root = p("include: x");
        assert_eq!(root.get("include").and_then(Located::as_str), Some("x"));

        // Errors inside an included file name that file.
        std::fs::write(dir.join("b.conf"), "include sub/bad.conf\n").expect("write");
        let e = parse_file(&dir.join("b.conf"))
            .expect_err("bad include")
            .to_string();
        assert!(e.contains("bad.conf:2: unterminated string"), "{e}");

        std::fs::write(dir.join("missing.conf"), "a: 1\ninclude sub/nope.conf\n").expect("write");
        let e = parse_file(&dir.join("missing.conf")).expect_err("missing");
        assert!(matches!(e, ConfError::Include { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("missing.conf:2: error reading include file"),
            "{e}"
        );
        assert!(e.to_string().contains("nope.conf"), "{e}");

        // Variables of the including file are not visible in the included one.
        std::fs::write(dir.join("sub/usevar.conf"), "port: $Y\n").expect("write");
        std::fs::write(dir.join("v.conf"), "Y: 1\ninclude sub/usevar.conf\n").expect("write");
        let e = parse_file(&dir.join("v.conf")).expect_err("scoped");
        assert!(matches!(e, ConfError::UnknownVariable { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn include_cycles() {
        let dir = tempdir("cycles");
        std::fs::write(dir.join("a.conf"), "x: 1\ninclude sub/b.conf\n").expect("write");
        std::fs::write(dir.join("sub/b.conf"), "include ../a.conf\n").expect("write");
        std::fs::write(dir.join("self.conf"), "include self.conf\n").expect("write");
        let e = parse_file(&dir.join("a.conf")).expect_err("cycle");
        assert!(matches!(e, ConfError::IncludeCycle { .. }), "{e}");
        assert!(e.to_string().contains("b.conf:1: include cycle"), "{e}");
        let e = parse_file(&dir.join("self.conf")).expect_err("self");
        assert!(matches!(e, ConfError::IncludeCycle { .. }), "{e}");
        // Including the same file twice side by side is fine.
        std::fs::write(
            dir.join("twice.conf"),
            "include sub/c.conf\ninclude sub/c.conf\n",
        )
        .expect("write");
        std::fs::write(dir.join("sub/c.conf"), "debug: true\n").expect("write");
        assert!(parse_file(&dir.join("twice.conf")).is_ok());
        let e = parse_file(&dir.join("nope.conf")).expect_err("no file");
        assert!(matches!(e, ConfError::Io { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    // --- durations ---

    #[test]
    fn durations() {
        let d = |t: &str| parse_duration(t);
        assert_eq!(d("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(d(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(d("5.s"), Ok(Duration::from_secs(5)));
        assert_eq!(d("+5s"), Ok(Duration::from_secs(5)));
        assert_eq!(d("1us"), Ok(Duration::from_micros(1)));
        assert_eq!(d("1µs"), Ok(Duration::from_micros(1)));
        assert_eq!(d("3ns"), Ok(Duration::from_nanos(3)));
        assert_eq!(d("0"), Ok(Duration::ZERO));
        assert_eq!(d("1h2m3s4ms"), Ok(Duration::from_millis(3_723_004)));
        assert!(d("5").is_err_and(|e| e.contains("missing unit")));
        assert!(d("1d").is_err_and(|e| e.contains("unknown unit \"d\"")));
        assert!(d("1H").is_err());
        assert!(d("1h 30m").is_err());
        assert!(d("").is_err());
        assert!(d("bogus").is_err());
        assert!(d("-1s").is_err());
        assert!(d("9999999999h").is_err());

        let loc = |v: Value| Located::new(v, 3);
        assert_eq!(
            as_duration(&loc(s("10s"))).ok(),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            as_duration(&loc(Value::Integer(20))).ok(),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            as_duration(&loc(Value::Duration(Duration::from_millis(5)))).ok(),
            Some(Duration::from_millis(5))
        );
        assert!(as_duration(&loc(Value::Integer(-1))).is_err());
        let e = as_duration(&loc(Value::Float(1.5)))
            .expect_err("float")
            .to_string();
        assert_eq!(e, "line 3: expected a duration such as \"10s\", got float");
    }

    // --- typed layer ---

    #[test]
    fn listen_and_http_forms() {
        let (c, _) = sc("listen: 127.0.0.1:4222");
        assert_eq!((c.host.as_deref(), c.port), (Some("127.0.0.1"), Some(4222)));
        let (c, _) = sc("host: 1.2.3.4\nlisten: 4223");
        assert_eq!((c.host.as_deref(), c.port), (Some("1.2.3.4"), Some(4223)));
        let (c, _) = sc("host: 1.2.3.4\nlisten: \":4224\"");
        assert_eq!((c.host, c.port), (None, Some(4224)));
        let (c, _) = sc("listen: \"[::1]:4225\"");
        assert_eq!((c.host.as_deref(), c.port), (Some("::1"), Some(4225)));
        let (c, _) = sc("listen: 127.0.0.1:-1");
        assert_eq!(c.port, Some(-1));
        let (c, _) = sc("net: 0.0.0.0\nport: -1");
        assert_eq!((c.host.as_deref(), c.port), (Some("0.0.0.0"), Some(-1)));
        let (c, _) = sc("listen: 127.0.0.1:1\nport: 2");
        assert_eq!(c.port, Some(2), "later keys win");
        let (c, _) = sc("http: 127.0.0.1:-1");
        assert_eq!(
            (c.http_host.as_deref(), c.http_port),
            (Some("127.0.0.1"), Some(-1))
        );
        let (c, _) = sc("http: 8222");
        assert_eq!((c.http_host, c.http_port), (None, Some(8222)));
        let (c, _) = sc("http_port: 8223");
        assert_eq!(c.http_port, Some(8223));
        let (c, _) = sc("monitor_port: -1");
        assert_eq!(c.http_port, Some(-1));
        assert_eq!(
            sc_err("listen: abc"),
            "test.conf:1: listen: could not parse address string \"abc\""
        );
        assert!(sc_err("listen: \":\"").contains("could not parse port"));
        assert!(sc_err("listen: 1.5").contains("expected a port or host:port, got float"));
        assert!(sc_err("http: \"abc\"").contains("http: could not parse address"));
        assert!(sc_err("port: 99999999999").contains("out of range"));
    }

    #[test]
    fn scalar_options() {
        let (c, w) = sc(
            "max_payload: 1MB\nmax_connections: 100\nmax_conn: 200\nmax_control_line: 4KB\nmax_pending: 100TB\nping_max: 5\ndebug: yes\ntrace: on\nlogtime: false\nlogfile: /tmp/l.log\npidfile: /tmp/p.pid\nports_file_dir: /tmp\nserver_name: n1\nlame_duck_duration: \"30s\"\nlame_duck_grace_period: \"5s\"",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.max_payload, Some(1 << 20));
        assert_eq!(c.max_connections, Some(200));
        assert_eq!(c.max_control_line, Some(4096));
        assert_eq!(c.max_pending, Some(100 << 40));
        assert_eq!(c.ping_max, Some(5));
        assert_eq!(
            (c.debug, c.trace, c.logtime),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(c.log_file.as_deref(), Some(Path::new("/tmp/l.log")));
        assert_eq!(c.pid_file.as_deref(), Some(Path::new("/tmp/p.pid")));
        assert_eq!(c.ports_file_dir.as_deref(), Some(Path::new("/tmp")));
        assert_eq!(c.server_name.as_deref(), Some("n1"));
        assert_eq!(c.lame_duck_duration, Some(Duration::from_secs(30)));
        assert_eq!(c.lame_duck_grace_period, Some(Duration::from_secs(5)));
        let (c, _) = sc("log_file: a\npid_file: b");
        assert_eq!(
            (c.log_file, c.pid_file),
            (Some(PathBuf::from("a")), Some(PathBuf::from("b")))
        );
        let (c, _) = sc("server_tags: Single");
        assert_eq!(c.server_tags, ["single"]);
    }

    #[test]
    fn durations_as_integers_warn() {
        let (c, w) = sc("ping_interval: 20\nwrite_deadline: \"10s\"");
        assert_eq!(c.ping_interval, Some(Duration::from_secs(20)));
        assert_eq!(c.write_deadline, Some(Duration::from_secs(10)));
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].key.as_str(), w[0].line), ("ping_interval", 1));
        assert!(w[0].message.contains("should be converted to a duration"));
        // A bare `2m` is the integer 2000000 in nats-server, hence seconds.
        let (c, w) = sc("ping_interval: 2m");
        assert_eq!(c.ping_interval, Some(Duration::from_secs(2_000_000)));
        assert_eq!(w.len(), 1);
        let (c, _) = sc("ping_interval: 1h30m");
        assert_eq!(c.ping_interval, Some(Duration::from_secs(5400)));
    }

    #[test]
    fn wrong_types_are_errors_naming_key_and_line() {
        assert_eq!(
            sc_err("a: 1\nport: abc"),
            "test.conf:2: port: expected an integer, got string"
        );
        assert_eq!(
            sc_err("debug: enabled"),
            "test.conf:1: debug: expected a boolean (true/false, yes/no, on/off), got string"
        );
        assert!(sc_err("debug: \"true\"").contains("debug: expected a boolean"));
        assert!(sc_err("debug: 1").contains("got integer"));
        assert!(sc_err("server_name: 1").contains("server_name: expected a string, got integer"));
        assert!(sc_err("server_name: \"a b\"").contains("cannot contain spaces"));
        assert!(sc_err("max_payload: 1.5").contains("max_payload: expected an integer, got float"));
        assert!(sc_err("max_payload: 2GB").contains("too big"));
        assert!(sc_err("max_payload: -5").contains("must not be negative"));
        assert!(sc_err("max_control_line: 5GB").contains("too big"));
        assert!(
            sc_err("ping_interval: bogus").contains("ping_interval: invalid duration \"bogus\"")
        );
        assert!(sc_err("ping_interval: 1.5").contains("got float"));
        assert!(sc_err("ping_max: 1.5").contains("ping_max"));
        assert!(sc_err("lame_duck_duration: \"1s\"").contains("minimum is 30 seconds"));
        assert!(sc_err("authorization: 1").contains("authorization: expected a map"));
        assert!(sc_err("server_tags: 1").contains("server_tags"));
        assert!(
            sc_err("server_tags: [a, [b]]").contains("server_tags: expected a string, got array")
        );
        assert!(sc_err("log_file: 1").contains("log_file"));
        assert!(sc_err("\n\njetstream: 1").starts_with("test.conf:3: jetstream:"));
    }

    #[test]
    fn jetstream_forms() {
        let js = |t: &str| sc(t).0.jetstream.expect("jetstream");
        assert!(js("jetstream: enabled").enabled);
        assert!(js("jetstream: ENABLED").enabled);
        assert!(js("jetstream: \"enabled\"").enabled);
        assert!(js("jetstream: true").enabled);
        assert!(js("jetstream: yes").enabled);
        assert!(js("jetstream: on").enabled);
        assert!(!js("jetstream: disabled").enabled);
        assert!(!js("jetstream: false").enabled);
        assert!(!js("jetstream: off").enabled);
        assert!(js("jetstream {}").enabled);
        assert!(!js("jetstream { enabled: false }").enabled);
        assert!(!js("jetstream { enable: false }").enabled);
        assert!(
            sc_err("jetstream: maybe").contains("expected 'enabled' or 'disabled', got 'maybe'")
        );
        assert!(sc_err("jetstream: \"true\"").contains("expected 'enabled' or 'disabled'"));
        for key in ["store_dir", "storedir", "store", "Store_Dir"] {
            assert_eq!(
                js(&format!("jetstream {{ {key}: /d }}")).store_dir,
                Some(PathBuf::from("/d")),
                "{key}"
            );
        }
        for key in [
            "max_mem_store",
            "max_memory_store",
            "max_mem",
            "MAX_MEM_STORE",
        ] {
            assert_eq!(
                js(&format!("jetstream {{ {key}: 1G }}")).max_memory_store,
                Some(1_000_000_000),
                "{key}"
            );
        }
        for key in ["max_file_store", "max_file"] {
            assert_eq!(
                js(&format!("jetstream {{ {key}: 10GB }}")).max_file_store,
                Some(10 << 30),
                "{key}"
            );
        }
        // Strings use powers of 1024 and need an upper-case K/M/G/T suffix.
        assert_eq!(
            js("jetstream { max_mem_store: \"1G\" }").max_memory_store,
            Some(1 << 30)
        );
        assert_eq!(
            js("jetstream { max_mem_store: \"+2K\" }").max_memory_store,
            Some(2048)
        );
        assert_eq!(
            js("jetstream { max_mem_store: \"\" }").max_memory_store,
            None
        );
        assert_eq!(js("jetstream { max_mem_store: -1 }").max_memory_store, None);
        assert_eq!(
            js("jetstream { max_mem_store: 0 }").max_memory_store,
            Some(0)
        );
        assert!(sc_err("jetstream { max_mem_store: \"1g\" }").contains("must end in K, M, G, T"));
        assert!(sc_err("jetstream { max_mem_store: \"1024\" }").contains("must end in K, M, G, T"));
        assert!(sc_err("jetstream { max_mem_store: \"1.5G\" }").contains("invalid size"));
        assert!(sc_err("jetstream { max_mem_store: 1.5 }").contains("got float"));
        assert_eq!(js("jetstream { strict: yes }").strict, Some(true));
        assert!(sc_err("jetstream { strict: 1 }").contains("jetstream.strict"));
        assert_eq!(
            js("jetstream { sync_interval: always }").sync_interval,
            Some(SyncInterval::Always)
        );
        assert_eq!(
            js("jetstream { sync_interval: \"ALWAYS\" }").sync_interval,
            Some(SyncInterval::Always)
        );
        assert_eq!(
            js("jetstream { sync: 2s }").sync_interval,
            Some(SyncInterval::Every(Duration::from_secs(2)))
        );
        assert!(sc_err("jetstream { sync_interval: soon }").contains("jetstream.sync_interval"));
        // Top-level store_dir feeds JetStream; both at once is an error.
        assert_eq!(
            js("store_dir: /top\njetstream: enabled").store_dir,
            Some(PathBuf::from("/top"))
        );
        assert!(
            sc_err("store_dir: /a\njetstream { store_dir: /b }").contains("Duplicate 'store_dir'")
        );
        assert!(sc("store_dir: /a").0.jetstream.is_none());
        let (_, w) = sc("jetstream {\n domain: hub\n bogus: 1\n}");
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].key.as_str(), w[0].line), ("jetstream.domain", 2));
        assert!(w[0].message.contains("unsupported"));
        assert_eq!((w[1].key.as_str(), w[1].line), ("jetstream.bogus", 3));
        assert!(w[1].message.contains("unknown"));
    }

    #[test]
    fn unsupported_and_unknown_keys_warn() {
        let (_, w) = sc("port: 1\ncluster { name: x }\nfoo: bar\nOCSP { }\nV: 1\nmax_subs: $V");
        let got: Vec<(&str, usize)> = w.iter().map(|w| (w.key.as_str(), w.line)).collect();
        assert_eq!(
            got,
            [("cluster", 2), ("foo", 3), ("OCSP", 4), ("max_subs", 6)]
        );
        assert!(w[0].message.contains("unsupported option 'cluster'"));
        assert!(w[1].message.contains("unknown field 'foo'"));
    }

    #[test]
    fn tls_block() {
        let (c, w) = sc(
            "tls {\n  cert_file: \"/c.pem\"\n  key_file: '/k.pem'\n  ca_file: /ca.pem\n  verify: true\n  timeout: 0.5\n  handshake_first: true\n}",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.tls,
            Some(TlsConf {
                cert_file: Some("/c.pem".into()),
                key_file: Some("/k.pem".into()),
                ca_file: Some("/ca.pem".into()),
                verify: true,
                timeout: Some(Duration::from_millis(500)),
                handshake_first: true,
            })
        );
        let timeout = |t: &str| {
            sc(&format!("tls {{ timeout: {t} }}"))
                .0
                .tls
                .and_then(|t| t.timeout)
        };
        assert_eq!(timeout("3"), Some(Duration::from_secs(3)));
        assert_eq!(timeout("\"1500ms\""), Some(Duration::from_millis(1500)));
        assert!(sc_err("tls { foo: 1 }").contains("unknown field \"foo\""));
        assert!(sc_err("tls { timeout: \"abc\" }").contains("tls.timeout"));
        assert!(sc_err("tls { verify_and_map: true }").contains("refusing to start"));
        assert!(sc_err("tls { handshake_first: \"300ms\" }").contains("handshake_first"));
        assert!(sc_err("tls: 1").contains("expected a map"));
    }

    #[test]
    fn authorization_is_kept_raw() {
        let (c, w) = sc("authorization {\n  token: \"s3cret\"\n  timeout: 1\n}");
        assert!(w.is_empty());
        let auth = c.authorization.expect("auth");
        assert_eq!(auth.line, 1);
        assert_eq!(auth.get("token").and_then(Located::as_str), Some("s3cret"));
        assert_eq!(auth.get("timeout").map(|t| t.line), Some(3));
    }

    #[test]
    fn empty_config_is_an_error() {
        let e = server_conf(&p("# nothing\n")).expect_err("empty");
        assert_eq!(e.to_string(), "test.conf: config has no values or is empty");
        let e = server_conf(&Located::new(Value::Integer(1), 1)).expect_err("not a map");
        assert!(e.to_string().contains("must be a map"));
    }
}
