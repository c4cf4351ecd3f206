//! The Redis serialization protocol (RESP2 and RESP3) as bytes: a request parser and a reply
//! writer, with no IO (the connection loop is `resp_server`).
//!
//! **Requests** are what Redis accepts: multibulk frames (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`,
//! what every client library sends) and inline commands (`GET k\r\n`, what a person types into
//! `nc` or `telnet`, with Redis's quoting: `"a b\n"`, `'it''s'`). Everything is bounded: a
//! frame has at most [`RequestLimits::max_args`] arguments, each at most
//! [`RequestLimits::max_bulk`] bytes, and a whole frame at most [`RequestLimits::max_frame`]
//! bytes; an inline line or a length line at most [`INLINE_BYTES_MAX`]. A frame past a bound
//! is a [`ProtocolError`], after which the connection answers the error and closes, as Redis
//! does. The parser never panics on any input (the `resp_request` fuzz target).
//!
//! **Replies** are written by [`Reply`] into a buffer in the connection's protocol version:
//! RESP3 types (null, map, set, double, boolean) fall back to their RESP2 shapes after
//! `HELLO 2`, as Redis does.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The longest inline command, and the longest `*N`/`$N` line, Redis accepts (64 KiB).
pub const INLINE_BYTES_MAX: usize = 64 * 1024;

/// How big a request may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    /// Arguments in one command (the command name counts).
    pub max_args: usize,
    /// Bytes in one argument (Redis's `proto-max-bulk-len`).
    pub max_bulk: usize,
    /// Bytes in one whole command, headers included.
    pub max_frame: usize,
}

/// A request that breaks the protocol. The connection answers `-ERR Protocol error: ...` and
/// closes: after it, the stream cannot be framed again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid multibulk length")]
    MultibulkLength,
    #[error("invalid bulk length")]
    BulkLength,
    #[error("expected '$', got '{0}'")]
    ExpectedDollar(char),
    #[error("expected CRLF after a bulk string")]
    ExpectedCrlf,
    #[error("too big mbulk count string")]
    LongLengthLine,
    #[error("too big inline request")]
    LongInline,
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("the command is larger than max_body_bytes ({0} bytes)")]
    FrameTooLarge(usize),
}

/// Takes one command off the front of `buf`: `Ok(Some(args))` (never empty), `Ok(None)` if
/// `buf` does not hold a whole command yet. Empty inline lines and `*0` frames are skipped, as
/// Redis skips them. Arguments share the buffer's memory (no copy).
pub fn parse(
    buf: &mut BytesMut,
    limits: &RequestLimits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    loop {
        if buf.is_empty() {
            return Ok(None);
        }
        let parsed = if buf[0] == b'*' { multibulk(buf, limits)? } else { inline(buf, limits)? };
        match parsed {
            Frame::Incomplete => return Ok(None),
            Frame::Skip(n) => buf.advance(n),
            Frame::Whole { len, args } => {
                let frame = buf.split_to(len).freeze();
                return Ok(Some(args.into_iter().map(|r| frame.slice(r)).collect()));
            }
            Frame::Inline { len, args } => {
                buf.advance(len);
                if !args.is_empty() {
                    return Ok(Some(args));
                }
            }
        }
    }
}

enum Frame {
    Incomplete,
    /// Nothing to run: skip this many bytes.
    Skip(usize),
    /// A multibulk frame of `len` bytes; the arguments are these ranges of it.
    Whole {
        len: usize,
        args: Vec<std::ops::Range<usize>>,
    },
    /// An inline command of `len` bytes (its arguments unquoted, so copied).
    Inline {
        len: usize,
        args: Vec<Bytes>,
    },
}

/// The line starting at `at` (without its `\r\n`) and the index after it, or `None` if the
/// line is not complete yet.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    match buf[at..].iter().position(|&b| b == b'\n') {
        Some(n) => {
            let text = &buf[at..at + n];
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            Ok(Some((text, at + n + 1)))
        }
        None if buf.len() - at > INLINE_BYTES_MAX => Err(ProtocolError::LongLengthLine),
        None => Ok(None),
    }
}

/// A decimal as Redis's `string2ll` reads it: optional `-`, digits, no leading zeros, no `+`,
/// no `-0`. Lengths in frames and integer arguments of commands are read with it.
pub fn number(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let ok = match digits {
        [] => false,
        [b'0'] => text.len() == 1,
        [first, rest @ ..] => (b'1'..=b'9').contains(first) && rest.iter().all(u8::is_ascii_digit),
    };
    if !ok {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn multibulk(buf: &[u8], limits: &RequestLimits) -> Result<Frame, ProtocolError> {
    let Some((count, mut at)) = line(buf, 1)? else { return Ok(Frame::Incomplete) };
    let count = number(count).ok_or(ProtocolError::MultibulkLength)?;
    if count <= 0 {
        return Ok(Frame::Skip(at));
    }
    if count as u64 > limits.max_args as u64 {
        return Err(ProtocolError::MultibulkLength);
    }
    let mut args = Vec::with_capacity(count as usize);
    for _ in 0..count {
        if at >= buf.len() {
            return Ok(Frame::Incomplete);
        }
        if buf[at] != b'$' {
            return Err(ProtocolError::ExpectedDollar(char::from(buf[at])));
        }
        let Some((len, data)) = line(buf, at + 1)? else { return Ok(Frame::Incomplete) };
        let len = number(len).ok_or(ProtocolError::BulkLength)?;
        if len < 0 || len as u64 > limits.max_bulk as u64 {
            return Err(ProtocolError::BulkLength);
        }
        let end = data + len as usize;
        if end + 2 > limits.max_frame {
            return Err(ProtocolError::FrameTooLarge(limits.max_frame));
        }
        if buf.len() < end + 2 {
            return Ok(Frame::Incomplete);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError::ExpectedCrlf);
        }
        args.push(data..end);
        at = end + 2;
    }
    Ok(Frame::Whole { len: at, args })
}

fn inline(buf: &[u8], limits: &RequestLimits) -> Result<Frame, ProtocolError> {
    let Some(n) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > INLINE_BYTES_MAX {
            Err(ProtocolError::LongInline)
        } else {
            Ok(Frame::Incomplete)
        };
    };
    if n > INLINE_BYTES_MAX {
        return Err(ProtocolError::LongInline);
    }
    let text = &buf[..n];
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let args = split_args(text).ok_or(ProtocolError::UnbalancedQuotes)?;
    if args.len() > limits.max_args {
        return Err(ProtocolError::MultibulkLength);
    }
    Ok(Frame::Inline { len: n + 1, args })
}

/// Splits an inline command as Redis's `sdssplitargs` does: whitespace separates arguments;
/// `"..."` takes the escapes `\n \r \t \b \a \\ \" \xHH`; `'...'` takes `\'`; a closing quote
/// must be followed by whitespace or the end. `None` if quotes do not balance.
pub fn split_args(text: &[u8]) -> Option<Vec<Bytes>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < text.len() && text[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == text.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            if in_double {
                let c = *text.get(i)?;
                if c == b'\\' && i + 3 < text.len() && text[i + 1] == b'x' {
                    let hex = |b: u8| char::from(b).to_digit(16);
                    if let (Some(h), Some(l)) = (hex(text[i + 2]), hex(text[i + 3])) {
                        cur.push((h * 16 + l) as u8);
                        i += 4;
                        continue;
                    }
                }
                if c == b'\\' && i + 1 < text.len() {
                    cur.push(match text[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 2;
                } else if c == b'"' {
                    if text.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return None;
                    }
                    in_double = false;
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                    i += 1;
                }
            } else if in_single {
                let c = *text.get(i)?;
                if c == b'\\' && text.get(i + 1) == Some(&b'\'') {
                    cur.push(b'\'');
                    i += 2;
                } else if c == b'\'' {
                    if text.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return None;
                    }
                    in_single = false;
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                    i += 1;
                }
            } else {
                match text.get(i) {
                    None => break,
                    Some(c) if c.is_ascii_whitespace() => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(&c) => cur.push(c),
                }
                i += 1;
            }
        }
        debug_assert!(!in_double && !in_single);
        args.push(Bytes::from(cur));
    }
}

/// Writes replies in the connection's protocol version (2 or 3).
pub struct Reply<'a> {
    pub out: &'a mut BytesMut,
    pub resp3: bool,
}

impl Reply<'_> {
    fn line(&mut self, prefix: u8, text: &[u8]) {
        self.out.reserve(text.len() + 3);
        self.out.put_u8(prefix);
        self.out.put_slice(text);
        self.out.put_slice(b"\r\n");
    }
    fn len(&mut self, prefix: u8, n: usize) {
        let mut b = itoa_buf();
        self.line(prefix, itoa(&mut b, n as i64));
    }
    /// `+OK`
    pub fn ok(&mut self) {
        self.out.put_slice(b"+OK\r\n");
    }
    /// A status line (no `\r` or `\n` in it: they are replaced by spaces).
    pub fn simple(&mut self, text: &str) {
        let clean: Vec<u8> =
            text.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }).collect();
        self.line(b'+', &clean);
    }
    /// An error line; `text` starts with its prefix (`ERR ...`, `WRONGTYPE ...`).
    pub fn error(&mut self, text: &str) {
        let clean: Vec<u8> =
            text.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }).collect();
        self.line(b'-', &clean);
    }
    pub fn int(&mut self, n: i64) {
        let mut b = itoa_buf();
        self.line(b':', itoa(&mut b, n));
    }
    pub fn bulk(&mut self, data: &[u8]) {
        self.len(b'$', data.len());
        self.out.reserve(data.len() + 2);
        self.out.put_slice(data);
        self.out.put_slice(b"\r\n");
    }
    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    pub fn null(&mut self) {
        self.out.put_slice(if self.resp3 { b"_\r\n" } else { b"$-1\r\n" });
    }
    /// A missing array (`EXEC` after a failed `WATCH`): `*-1` in RESP2, `_` in RESP3.
    pub fn null_array(&mut self) {
        self.out.put_slice(if self.resp3 { b"_\r\n" } else { b"*-1\r\n" });
    }
    pub fn array(&mut self, n: usize) {
        self.len(b'*', n);
    }
    /// A map of `n` pairs: `%n` in RESP3, an array of `2n` in RESP2.
    pub fn map(&mut self, n: usize) {
        if self.resp3 { self.len(b'%', n) } else { self.len(b'*', 2 * n) }
    }
    /// A set: `~n` in RESP3, an array in RESP2.
    pub fn set(&mut self, n: usize) {
        if self.resp3 { self.len(b'~', n) } else { self.len(b'*', n) }
    }
    /// A float: `,` in RESP3, a bulk string in RESP2.
    pub fn double(&mut self, text: &[u8]) {
        if self.resp3 { self.line(b',', text) } else { self.bulk(text) }
    }
    /// Text meant for people (`INFO`, `CLIENT INFO`): a verbatim string in RESP3, bulk in
    /// RESP2.
    pub fn verbatim(&mut self, text: &[u8]) {
        if self.resp3 {
            self.len(b'=', text.len() + 4);
            self.out.put_slice(b"txt:");
            self.out.put_slice(text);
            self.out.put_slice(b"\r\n");
        } else {
            self.bulk(text);
        }
    }
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// `n` in decimal, written into the end of `buf`.
fn itoa(buf: &mut [u8; 20], n: i64) -> &[u8] {
    let mut i = buf.len();
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RequestLimits = RequestLimits { max_args: 8, max_bulk: 16, max_frame: 100 };

    fn all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        let mut cmds = Vec::new();
        while let Some(c) = parse(&mut buf, &LIMITS)? {
            cmds.push(c);
        }
        Ok(cmds)
    }

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    // Pipelined multibulk frames come out in order; the rest waits for more bytes.
    #[test]
    fn multibulk_frames_pipeline() {
        let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET";
        let mut buf = BytesMut::from(&input[..]);
        assert_eq!(parse(&mut buf, &LIMITS).unwrap(), Some(args(&["GET", "k"])));
        assert_eq!(parse(&mut buf, &LIMITS).unwrap(), Some(args(&["PING"])));
        assert_eq!(parse(&mut buf, &LIMITS).unwrap(), None);
        buf.extend_from_slice(b"\r\n$2\r\nab\r\n");
        assert_eq!(parse(&mut buf, &LIMITS).unwrap(), Some(args(&["GET", "ab"])));
        assert!(buf.is_empty());
    }

    // Every prefix of a frame is incomplete, never an error or a wrong command.
    #[test]
    fn every_prefix_waits() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva\r\nl\r\n";
        for n in 0..input.len() {
            let mut buf = BytesMut::from(&input[..n]);
            assert_eq!(parse(&mut buf, &LIMITS).unwrap(), None, "prefix {n}");
        }
        assert_eq!(all(input).unwrap(), vec![args(&["SET", "k", "va\r\nl"])]);
    }

    // Inline commands with Redis's quoting; empty lines are skipped.
    #[test]
    fn inline_commands() {
        assert_eq!(
            all(b"PING\r\n\r\n  \nset k \"a b\\n\"\n").unwrap(),
            vec![args(&["PING"]), args(&["set", "k", "a b\n"])]
        );
        assert_eq!(
            all(b"set 'it\\'s' \"\\x41\\x4a\"\r\n").unwrap(),
            vec![args(&["set", "it's", "AJ"])]
        );
        assert_eq!(all(b"get \"open\r\n"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(all(b"get \"a\"b\r\n"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(all(b"echo \"\"\r\n").unwrap(), vec![args(&["echo", ""])]);
    }

    // Bounds: counts, lengths, a missing `$`, a missing CRLF, frames and lines too long.
    #[test]
    fn bad_frames_are_protocol_errors() {
        assert_eq!(all(b"*9\r\n"), Err(ProtocolError::MultibulkLength));
        assert_eq!(all(b"*x\r\n"), Err(ProtocolError::MultibulkLength));
        assert_eq!(all(b"*+1\r\n"), Err(ProtocolError::MultibulkLength));
        assert_eq!(all(b"*-0\r\n"), Err(ProtocolError::MultibulkLength));
        assert_eq!(all(b"*1\r\n$17\r\n"), Err(ProtocolError::BulkLength));
        assert_eq!(all(b"*1\r\n$-1\r\n"), Err(ProtocolError::BulkLength));
        assert_eq!(all(b"*1\r\n:1\r\n"), Err(ProtocolError::ExpectedDollar(':')));
        assert_eq!(all(b"*1\r\n$1\r\nabc\r\n"), Err(ProtocolError::ExpectedCrlf));
        let big = vec![b'a'; INLINE_BYTES_MAX + 2];
        assert_eq!(all(&big), Err(ProtocolError::LongInline));
        let mut long_count = b"*".to_vec();
        long_count.extend(vec![b'1'; INLINE_BYTES_MAX + 2]);
        assert_eq!(all(&long_count), Err(ProtocolError::LongLengthLine));
        // `*0` and `*-1` are skipped, as Redis skips them.
        assert_eq!(all(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n").unwrap(), vec![args(&["PING"])]);
    }

    // The frame bound counts every argument, not just one.
    #[test]
    fn the_frame_bound_counts_the_whole_command() {
        let limits = RequestLimits { max_args: 8, max_bulk: 16, max_frame: 40 };
        let mut ok = BytesMut::from(&b"*2\r\n$3\r\nSET\r\n$16\r\n0123456789abcdef\r\n"[..]);
        assert!(parse(&mut ok, &limits).unwrap().is_some());
        let mut big = BytesMut::from(
            &b"*3\r\n$3\r\nSET\r\n$16\r\n0123456789abcdef\r\n$16\r\n0123456789abcdef\r\n"[..],
        );
        assert_eq!(parse(&mut big, &limits), Err(ProtocolError::FrameTooLarge(40)));
    }

    // Replies in both versions.
    #[test]
    fn replies_in_resp2_and_resp3() {
        for (resp3, expected) in [
            (false, &b"+OK\r\n:-12\r\n$2\r\nhi\r\n$-1\r\n*-1\r\n*4\r\n*1\r\n$3\r\n1.5\r\n"[..]),
            (true, &b"+OK\r\n:-12\r\n$2\r\nhi\r\n_\r\n_\r\n%2\r\n~1\r\n,1.5\r\n"[..]),
        ] {
            let mut out = BytesMut::new();
            let mut r = Reply { out: &mut out, resp3 };
            r.ok();
            r.int(-12);
            r.bulk(b"hi");
            r.null();
            r.null_array();
            r.map(2);
            r.set(1);
            r.double(b"1.5");
            assert_eq!(&out[..], expected, "resp3 {resp3}");
        }
        let mut out = BytesMut::new();
        Reply { out: &mut out, resp3: false }.error("ERR bad\r\nthing");
        assert_eq!(&out[..], b"-ERR bad  thing\r\n");
        let mut out = BytesMut::new();
        Reply { out: &mut out, resp3: false }.int(i64::MIN);
        assert_eq!(&out[..], b":-9223372036854775808\r\n");
    }
}
