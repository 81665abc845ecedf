//! The nats-server configuration file format, generically: text into a
//! tree of [`Located`] values (maps keep their keys in file order and as
//! written), plus Go-style durations. It knows nothing of what the keys
//! mean; `server_conf`, `authorization` and
//! `accounts` read the tree.
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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::error::{ConfError, Loc};

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
    /// `server_conf`.
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

/// Why a duration string is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a Go duration (or too large).
    #[error("invalid duration \"{0}\"")]
    Invalid(String),
    /// A number without a unit (`"5"`).
    #[error("missing unit in duration \"{0}\"")]
    MissingUnit(String),
    /// A unit Go does not know (`"1d"`).
    #[error("unknown unit \"{unit}\" in duration \"{text}\"")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole duration.
        text: String,
    },
    /// A negative duration.
    #[error("negative duration \"{0}\" is not allowed")]
    Negative(String),
}

/// Parses a Go-style duration such as `"2m"`, `"1h30m"`, `"500ms"`, `"1.5h"`
/// (units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`; a lone `"0"` needs no unit).
/// Negative durations are rejected.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(text.to_owned());
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
            "" => return Err(DurationError::MissingUnit(text.to_owned())),
            other => {
                return Err(DurationError::UnknownUnit {
                    unit: other.to_owned(),
                    text: text.to_owned(),
                });
            }
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
        return Err(DurationError::Negative(text.to_owned()));
    }
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// A duration from a configuration value: a duration string like `"2m"` or
/// `"1h30m"`, a [`Value::Duration`], or an integer number of seconds (what
/// nats-server does for `ping_interval: 20`, with a warning that
/// `server_conf` reproduces).
pub fn as_duration(value: &Located) -> Result<Duration, ConfError> {
    duration_of("", value)
}

pub(super) fn duration_of(key: &str, value: &Located) -> Result<Duration, ConfError> {
    let invalid = |message: String| ConfError::Invalid {
        at: value.loc(),
        key: key.to_string(),
        message,
    };
    match &value.value {
        Value::Duration(d) => Ok(*d),
        Value::String(s) => parse_duration(s).map_err(|e| invalid(e.to_string())),
        Value::Integer(i) => u64::try_from(*i)
            .map(Duration::from_secs)
            .map_err(|_| invalid(format!("negative duration {i} is not allowed"))),
        other => Err(invalid(format!(
            "expected a duration such as \"10s\", got {}",
            other.type_name()
        ))),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(crate) fn no_env(_: &str) -> Option<String> {
        None
    }

    /// Parses `text` as `test.conf`, or fails the test.
    pub(crate) fn p(text: &str) -> Located {
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
        let d = |t: &str| parse_duration(t).map_err(|e| e.to_string());
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
}
