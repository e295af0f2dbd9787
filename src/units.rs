//! Unit parsers: the durations (`250ms`, `5m`, `400d`) and sizes (`64KiB`) written in the config,
//! the admin API's filters and the CLI. A leaf: it imports nothing from the crate, so the config
//! and every component can share one grammar.

use std::time::Duration;

/// A duration written with a unit: `250ms`, `10s`, `5m`, `2h`, `400d`.
///
/// # Errors
/// A missing or unknown unit, or a value too large for milliseconds in a `u64`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("invalid duration \"{s}\": missing unit (ms, s, m, h, d)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration \"{s}\": expected a number then a unit"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => {
            return Err(format!(
                "invalid duration \"{s}\": unknown unit \"{unit}\" (use ms, s, m, h or d)"
            ))
        }
    }
    .ok_or_else(|| format!("invalid duration \"{s}\": too large"))?;
    Ok(Duration::from_millis(ms))
}

/// A size in bytes: a plain number, or with a unit `B`, `KiB`, `MiB`, `GiB` (also `KB`, `MB`,
/// `GB` for powers of 1000).
///
/// # Errors
/// An unknown unit, or a value too large for a `u64`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size \"{s}\": expected a number then a unit"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "invalid size \"{s}\": unknown unit \"{other}\" (use B, KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size \"{s}\": too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(
            parse_duration("400d").unwrap(),
            Duration::from_secs(400 * 86_400)
        );
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10y").is_err());
        assert_eq!(parse_size("64KiB").unwrap(), 65_536);
        assert_eq!(parse_size("1024").unwrap(), 1_024);
        assert!(parse_size("1 parsec").is_err());
    }
}
