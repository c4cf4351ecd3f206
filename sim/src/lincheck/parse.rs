//! Readers for Jepsen histories: etcd register logs and `kv` EDN lines.
//!
//! Both formats list invocations and completions as separate events; a completion belongs to the
//! open invocation of the same process. Time is the 1-based line number, so every event has its
//! own instant. Jepsen's completion types mean:
//!
//! - `:ok`: the operation took effect and returned the value shown;
//! - `:fail`: it did not take effect (for an etcd read, which has no effect anyway, Jepsen uses
//!   `:fail :read :timed-out` for a read whose answer was lost, so it becomes an unknown outcome;
//!   a failed etcd compare-and-set is kept as a completed [`RegisterOutput::Failed`]);
//! - `:info`: indeterminate; the operation may take effect at any point after its invocation,
//!   or never.
//!
//! An operation still open at the end of the input is indeterminate as well.

use std::collections::BTreeMap;
use std::fmt;

use super::{History, KvInput, KvOp, KvOutput, Operation, RegisterInput, RegisterOutput};

/// Why an input could not be read as a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The 1-based line at fault; `None` when the problem is the input as a whole.
    pub line: Option<usize>,
    pub message: String,
}

impl ParseError {
    fn at(line: usize, message: impl Into<String>) -> Self {
        Self { line: Some(line), message: message.into() }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// What became of an invocation.
enum Fate<O> {
    Open,
    Completed {
        ret: u64,
        output: O,
    },
    Unknown,
    /// It did not take effect, so it is left out of the history.
    Dropped,
}

struct Invocation<I, O> {
    client: u64,
    input: I,
    call: u64,
    fate: Fate<O>,
}

/// Pairs completions with invocations by process, keeping operations in invocation order.
struct Pairing<I, O> {
    invocations: Vec<Invocation<I, O>>,
    /// Process -> index of its open invocation.
    open: BTreeMap<u64, usize>,
}

impl<I, O> Pairing<I, O> {
    fn new() -> Self {
        Self { invocations: Vec::new(), open: BTreeMap::new() }
    }

    fn invoke(&mut self, line: usize, process: u64, input: I) -> Result<(), ParseError> {
        if let Some(&index) = self.open.get(&process) {
            let since = self.invocations[index].call;
            return Err(ParseError::at(
                line,
                format!(
                    "process {process} invokes again while its operation from line {since} is open"
                ),
            ));
        }
        self.open.insert(process, self.invocations.len());
        self.invocations.push(Invocation {
            client: process,
            input,
            call: line as u64,
            fate: Fate::Open,
        });
        Ok(())
    }

    /// The open invocation of `process`, which the completion on `line` closes.
    fn complete(&mut self, line: usize, process: u64) -> Result<&mut Invocation<I, O>, ParseError> {
        let index = self.open.remove(&process).ok_or_else(|| {
            ParseError::at(
                line,
                format!("process {process} completes an operation it never invoked"),
            )
        })?;
        Ok(&mut self.invocations[index])
    }

    fn finish(self, lines: usize) -> Result<History<I, O>, ParseError> {
        if self.invocations.is_empty() {
            return Err(ParseError {
                line: None,
                message: format!("no operations in {lines} lines"),
            });
        }
        let mut history = History::new();
        for invocation in self.invocations {
            let Invocation { client, input, call, fate } = invocation;
            let op = match fate {
                Fate::Open | Fate::Unknown => Operation::unknown(client, input, call),
                Fate::Completed { ret, output } => {
                    Operation::completed(client, input, call, ret, output)
                }
                Fate::Dropped => continue,
            };
            history.push(op).expect("line numbers put every completion after its invocation");
        }
        Ok(history)
    }
}

/// Reads a Jepsen etcd log (see `sim/tests/data/README.md`) as a register history.
///
/// Lines of interest look like `INFO  jepsen.util - 3\t:ok\t:cas\t[1 4]`. Lines without
/// `jepsen.util - `, or whose process is not a number (the nemesis), are noise. A line that
/// names a client process but is malformed, or that does not pair up, is an error.
pub fn parse_etcd_log(text: &str) -> Result<History<RegisterInput, RegisterOutput>, ParseError> {
    const MARKER: &str = "jepsen.util - ";
    let mut pairing = Pairing::new();
    let mut lines = 0;
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        lines = number;
        let Some((_, event)) = line.split_once(MARKER) else {
            continue;
        };
        let mut fields = event.split_whitespace();
        let Some(Ok(process)) = fields.next().map(str::parse::<u64>) else {
            continue;
        };
        let (Some(kind), Some(f)) = (fields.next(), fields.next()) else {
            return Err(ParseError::at(number, "expected a type and a function after the process"));
        };
        let value = fields.collect::<Vec<_>>().join(" ");
        let value = value.as_str();
        match kind {
            ":invoke" => {
                let input = match f {
                    ":read" => RegisterInput::Read,
                    ":write" => RegisterInput::Write(parse_int(number, value)?),
                    ":cas" => {
                        let (from, to) = parse_pair(number, value)?;
                        RegisterInput::Cas { from, to }
                    }
                    other => {
                        return Err(ParseError::at(number, format!("unknown function {other}")));
                    }
                };
                pairing.invoke(number, process, input)?;
            }
            ":ok" | ":fail" | ":info" => {
                let invocation = pairing.complete(number, process)?;
                let function = match invocation.input {
                    RegisterInput::Read => ":read",
                    RegisterInput::Write(_) => ":write",
                    RegisterInput::Cas { .. } => ":cas",
                };
                if f != function {
                    return Err(ParseError::at(
                        number,
                        format!("completes {f} but process {process} invoked {function}"),
                    ));
                }
                let ret = number as u64;
                invocation.fate = match (kind, invocation.input) {
                    (":info", _) => Fate::Unknown,
                    (":ok", RegisterInput::Read) => Fate::Completed {
                        ret,
                        output: RegisterOutput::Read(parse_optional_int(number, value)?),
                    },
                    (":fail", RegisterInput::Read) => Fate::Unknown,
                    (":ok", RegisterInput::Write(written)) => {
                        expect_same(number, parse_int(number, value)?, written)?;
                        Fate::Completed { ret, output: RegisterOutput::Ok }
                    }
                    (":fail", RegisterInput::Write(_)) => Fate::Dropped,
                    (_, RegisterInput::Cas { from, to }) => {
                        expect_same(number, parse_pair(number, value)?, (from, to))?;
                        Fate::Completed {
                            ret,
                            output: if kind == ":ok" {
                                RegisterOutput::Ok
                            } else {
                                RegisterOutput::Failed
                            },
                        }
                    }
                    _ => unreachable!("the outer match admits only :ok, :fail and :info"),
                };
            }
            other => return Err(ParseError::at(number, format!("unknown type {other}"))),
        }
    }
    pairing.finish(lines)
}

fn parse_int(line: usize, text: &str) -> Result<i64, ParseError> {
    text.parse().map_err(|_| ParseError::at(line, format!("expected an integer, found {text:?}")))
}

fn parse_optional_int(line: usize, text: &str) -> Result<Option<i64>, ParseError> {
    if text == "nil" { Ok(None) } else { parse_int(line, text).map(Some) }
}

/// `[A B]`
fn parse_pair(line: usize, text: &str) -> Result<(i64, i64), ParseError> {
    let inner = text
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or_else(|| ParseError::at(line, format!("expected [A B], found {text:?}")))?;
    let mut parts = inner.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), None) => Ok((parse_int(line, a)?, parse_int(line, b)?)),
        _ => Err(ParseError::at(line, format!("expected [A B], found {text:?}"))),
    }
}

fn expect_same<T: PartialEq + fmt::Debug>(
    line: usize,
    found: T,
    invoked: T,
) -> Result<(), ParseError> {
    if found == invoked {
        Ok(())
    } else {
        Err(ParseError::at(
            line,
            format!("completion value {found:?} differs from the invoked {invoked:?}"),
        ))
    }
}

/// An EDN value, as far as Jepsen's history lines need.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    Str(String),
    Keyword(String),
}

/// Reads one EDN map of scalars, such as `{:process 0, :type :ok, :value "x 0 0 y"}`. Keys must be
/// keywords; commas are whitespace, as in EDN.
fn parse_edn_map(line: usize, text: &str) -> Result<BTreeMap<String, Edn>, ParseError> {
    let error = |message: String| ParseError::at(line, message);
    let mut chars = text.trim().chars().peekable();
    if chars.next() != Some('{') {
        return Err(error("expected an EDN map starting with '{'".into()));
    }
    let mut map = BTreeMap::new();
    let mut pending_key: Option<String> = None;
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let Some(&first) = chars.peek() else {
            return Err(error("the map is not closed with '}'".into()));
        };
        if first == '}' {
            chars.next();
            break;
        }
        let value = match first {
            '"' => {
                chars.next();
                let mut string = String::new();
                loop {
                    match chars.next() {
                        None => return Err(error("unterminated string".into())),
                        Some('"') => break,
                        Some('\\') => string.push(match chars.next() {
                            Some('n') => '\n',
                            Some('t') => '\t',
                            Some('r') => '\r',
                            Some(c @ ('"' | '\\')) => c,
                            other => {
                                return Err(error(format!(
                                    "unsupported escape \\{other:?} in a string"
                                )));
                            }
                        }),
                        Some(c) => string.push(c),
                    }
                }
                Edn::Str(string)
            }
            _ => {
                let mut token = String::new();
                while let Some(c) =
                    chars.next_if(|c| !c.is_whitespace() && !matches!(c, ',' | '{' | '}' | '"'))
                {
                    token.push(c);
                }
                if let Some(name) = token.strip_prefix(':').filter(|name| !name.is_empty()) {
                    Edn::Keyword(name.to_owned())
                } else if token == "nil" {
                    Edn::Nil
                } else if token == "true" || token == "false" {
                    Edn::Bool(token == "true")
                } else if let Ok(int) = token.parse() {
                    Edn::Int(int)
                } else {
                    return Err(error(format!("unsupported EDN value {token:?}")));
                }
            }
        };
        match pending_key.take() {
            None => match value {
                Edn::Keyword(key) => pending_key = Some(key),
                other => {
                    return Err(error(format!("expected a keyword as map key, found {other:?}")));
                }
            },
            Some(key) => {
                if map.insert(key.clone(), value).is_some() {
                    return Err(error(format!("duplicate key :{key}")));
                }
            }
        }
    }
    if let Some(key) = pending_key {
        return Err(error(format!("key :{key} has no value")));
    }
    if let Some(c) = chars.find(|c| !c.is_whitespace()) {
        return Err(error(format!("unexpected {c:?} after the map")));
    }
    Ok(map)
}

/// Reads a Jepsen `kv` history: one EDN map per line,
/// `{:process P, :type :invoke|:ok|:fail|:info, :f :get|:put|:append, :key "K", :value V}`.
///
/// Blank lines are skipped, as are events whose `:process` is not an integer (the nemesis);
/// other keys in a map are ignored. A get's `:ok` value may be `nil`, read as `""`.
pub fn parse_jepsen_kv(text: &str) -> Result<History<KvInput, KvOutput>, ParseError> {
    let mut pairing = Pairing::new();
    let mut lines = 0;
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        lines = number;
        if line.trim().is_empty() {
            continue;
        }
        let map = parse_edn_map(number, line)?;
        let field = |name: &str| {
            map.get(name).ok_or_else(|| ParseError::at(number, format!("missing :{name}")))
        };
        let keyword = |name: &str| match field(name)? {
            Edn::Keyword(keyword) => Ok(keyword.as_str()),
            other => Err(ParseError::at(number, format!(":{name} is {other:?}, not a keyword"))),
        };
        let string = |name: &str| match field(name)? {
            Edn::Str(string) => Ok(string.clone()),
            other => Err(ParseError::at(number, format!(":{name} is {other:?}, not a string"))),
        };
        let process = match field("process")? {
            Edn::Int(process) => u64::try_from(*process)
                .map_err(|_| ParseError::at(number, format!("negative process {process}")))?,
            _ => continue,
        };
        let kind = keyword("type")?;
        let f = keyword("f")?;
        let key = string("key")?;
        match kind {
            "invoke" => {
                let op = match f {
                    "get" => KvOp::Get,
                    "put" => KvOp::Put(string("value")?),
                    "append" => KvOp::Append(string("value")?),
                    other => {
                        return Err(ParseError::at(number, format!("unknown function :{other}")));
                    }
                };
                pairing.invoke(number, process, KvInput { key, op })?;
            }
            "ok" | "fail" | "info" => {
                let invocation = pairing.complete(number, process)?;
                let function = match invocation.input.op {
                    KvOp::Get => "get",
                    KvOp::Put(_) => "put",
                    KvOp::Append(_) => "append",
                };
                if f != function || key != invocation.input.key {
                    return Err(ParseError::at(
                        number,
                        format!(
                            "completes :{f} of {key:?} but process {process} invoked :{function} of {:?}",
                            invocation.input.key
                        ),
                    ));
                }
                invocation.fate = match kind {
                    "fail" => Fate::Dropped,
                    "info" => Fate::Unknown,
                    _ => {
                        let output = match &invocation.input.op {
                            KvOp::Get => KvOutput::Value(match field("value")? {
                                Edn::Nil => String::new(),
                                Edn::Str(value) => value.clone(),
                                other => {
                                    return Err(ParseError::at(
                                        number,
                                        format!(":value is {other:?}, not a string"),
                                    ));
                                }
                            }),
                            KvOp::Put(written) | KvOp::Append(written) => {
                                expect_same(number, &string("value")?, written)?;
                                KvOutput::Ok
                            }
                        };
                        Fate::Completed { ret: number as u64, output }
                    }
                };
            }
            other => return Err(ParseError::at(number, format!("unknown type :{other}"))),
        }
    }
    pairing.finish(lines)
}
