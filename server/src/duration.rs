//! A strict parser for Go's duration syntax (`time.ParseDuration`), which the seed's clients send
//! in the `expire` field: a sequence of decimal numbers, each with an optional fraction and a
//! required unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), such as `1m30s`, `500ms` or `1.5h`.
//!
//! Differences from Go, on purpose: a sign is rejected (a negative TTL is a client bug, not
//! "already expired"), and so is anything above Go's own limit of `i64::MAX` nanoseconds.
//! `"0"` is accepted as Go does.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("negative or signed durations are not allowed")]
    Signed,
    #[error("expected a number at `{0}`")]
    MissingNumber(String),
    #[error("missing unit after `{0}` (use ns, us, ms, s, m or h)")]
    MissingUnit(String),
    #[error("unknown unit `{0}` (use ns, us, ms, s, m or h)")]
    UnknownUnit(String),
    #[error("duration is too large")]
    Overflow,
}

/// The largest duration Go can represent, in nanoseconds.
const NANOS_MAX: u128 = i64::MAX as u128;

pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with(['-', '+']) {
        return Err(DurationError::Signed);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(DurationError::MissingNumber(rest.to_string()));
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "" => return Err(DurationError::MissingUnit(s[..s.len() - after.len()].to_string())),
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => return Err(DurationError::UnknownUnit(other.to_string())),
        };
        // Integer part: reject before it can overflow u128 (39 digits).
        let int_value: u128 = if int_part.is_empty() {
            0
        } else if int_part.len() > 30 {
            return Err(DurationError::Overflow);
        } else {
            int_part.parse().map_err(|_| DurationError::Overflow)?
        };
        let mut nanos = int_value.checked_mul(unit_nanos).ok_or(DurationError::Overflow)?;
        // Fraction: only digits that can still matter at nanosecond resolution are used.
        let mut scale = unit_nanos;
        for d in frac_part.bytes().take(20) {
            scale /= 10;
            nanos += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(nanos).ok_or(DurationError::Overflow)?;
        if total > NANOS_MAX {
            return Err(DurationError::Overflow);
        }
        rest = next;
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u128 {
        parse_go_duration(s).unwrap().as_millis()
    }

    // The forms Go clients send parse to the same durations Go computes.
    #[test]
    fn go_forms_parse() {
        assert_eq!(ms("1m30s"), 90_000);
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("2h"), 7_200_000);
        assert_eq!(ms("1.5h"), 5_400_000);
        assert_eq!(ms(".5s"), 500);
        assert_eq!(ms("1h2m3s4ms"), 3_723_004);
        assert_eq!(parse_go_duration("300us").unwrap(), Duration::from_micros(300));
        assert_eq!(parse_go_duration("300µs").unwrap(), Duration::from_micros(300));
        assert_eq!(parse_go_duration("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("0s").unwrap(), Duration::ZERO);
    }

    // Anything Go would reject, and signed durations, are errors; none panics.
    #[test]
    fn bad_durations_are_rejected() {
        assert_eq!(parse_go_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_go_duration("-1s"), Err(DurationError::Signed));
        assert_eq!(parse_go_duration("+1s"), Err(DurationError::Signed));
        assert!(matches!(parse_go_duration("10"), Err(DurationError::MissingUnit(_))));
        assert!(matches!(parse_go_duration("1x"), Err(DurationError::UnknownUnit(_))));
        assert!(matches!(parse_go_duration("1d"), Err(DurationError::UnknownUnit(_))));
        assert!(matches!(parse_go_duration("s"), Err(DurationError::MissingNumber(_))));
        assert!(matches!(parse_go_duration("1s "), Err(DurationError::UnknownUnit(_))));
        assert!(matches!(parse_go_duration("."), Err(DurationError::MissingNumber(_))));
        assert!(matches!(parse_go_duration("1.s.s"), Err(DurationError::MissingNumber(_))));
        assert_eq!(parse_go_duration("9999999999999999999h"), Err(DurationError::Overflow));
        assert_eq!(
            parse_go_duration("99999999999999999999999999999999999999999s"),
            Err(DurationError::Overflow)
        );
        assert_eq!(parse_go_duration("2562048h"), Err(DurationError::Overflow));
        assert!(parse_go_duration("2562047h").is_ok());
    }

    // Arbitrary strings never panic the parser.
    #[test]
    fn arbitrary_input_never_panics() {
        let alphabet = ["1", ".", "s", "m", "h", "µ", "u", "n", "-", "9", "x", " ", "0"];
        let mut seed: u64 = 7;
        for _ in 0..20_000 {
            let mut s = String::new();
            for _ in 0..(seed % 9) {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                s.push_str(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            let _ = parse_go_duration(&s);
        }
    }
}
