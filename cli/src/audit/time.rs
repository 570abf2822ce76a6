//! The `--since`/`--until` argument of `audit decrypt`: a fixed point in
//! time (an audit is about a past period, so no "1h ago" here): RFC 3339
//! or unix seconds.

use std::time::UNIX_EPOCH;

/// Parses T into unix milliseconds. Never panics, whatever the input.
pub fn parse_arg(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .ok()
            .and_then(|secs| secs.checked_mul(1000))
            .ok_or_else(|| format!("{s}: unix seconds out of range"));
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|_| {
        format!(
            "`{s}`: give a time as RFC 3339 (2026-12-02T10:00:00Z) or unix seconds (1764669600)"
        )
    })?;
    let d = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("`{s}`: before 1970"))?;
    u64::try_from(d.as_millis()).map_err(|_| format!("`{s}`: out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc3339_and_unix_seconds() {
        assert_eq!(parse_arg("0"), Ok(0));
        assert_eq!(parse_arg("1764669600"), Ok(1_764_669_600_000));
        assert_eq!(parse_arg("2025-12-02T10:00:00Z"), Ok(1_764_669_600_000));
        assert_eq!(parse_arg("2025-12-02T10:00:00.5Z"), Ok(1_764_669_600_500));
        assert!(parse_arg("99999999999999999999").is_err());
        assert!(parse_arg("").is_err());
        assert!(parse_arg("1h").is_err());
        assert!(parse_arg("-5").is_err());
    }

    proptest! {
        #[test]
        fn any_string_is_parsed_or_refused(s in ".{0,64}") {
            let _ = parse_arg(&s);
        }

        #[test]
        fn unix_seconds_round_trip(n in 0u64..=u64::MAX / 1000) {
            prop_assert_eq!(parse_arg(&n.to_string()), Ok(n * 1000));
        }
    }
}
