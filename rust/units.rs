//! The original tool's size syntax: an integer with an optional unit `M`, `G`
//! or `T` (either case, powers of 1024); no unit means MB. `-m 16G` is 16384
//! MB. The same syntax gives rates in MB/s.

use crate::error::{Error, Result};

/// One mebibyte in bytes: the original's "MB".
pub const MB: u64 = 1 << 20;

/// Parses a size such as `512`, `16G` or `2t` into MB (MiB).
///
/// Accepts an optional trailing `B` or `iB` after the unit (`16GB`, `16GiB`)
/// and surrounding white space. Zero, negative, fractional or overflowing
/// values are rejected with a message naming the input.
pub fn parse_size_mb(text: &str) -> Result<u64> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "invalid size '{text}': {why} (expected an integer with an optional unit M, G or T, e.g. 512, 16G)"
        ))
    };
    let s = text.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    if num.is_empty() {
        return Err(bad(if s.starts_with('-') {
            "must be positive"
        } else {
            "no number"
        }));
    }
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => 0,
        "g" | "gb" | "gib" => 10,
        "t" | "tb" | "tib" => 20,
        _ => return Err(bad("unknown unit")),
    };
    let value: u64 = num.parse().map_err(|_| bad("number too large"))?;
    if value == 0 {
        return Err(bad("must be greater than zero"));
    }
    value
        .checked_mul(1u64 << shift)
        .filter(|mb| mb.checked_mul(MB).is_some())
        .ok_or_else(|| bad("number too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_and_units() {
        assert_eq!(parse_size_mb("512").unwrap(), 512);
        assert_eq!(parse_size_mb("16G").unwrap(), 16384);
        assert_eq!(parse_size_mb("16g").unwrap(), 16384);
        assert_eq!(parse_size_mb("2T").unwrap(), 2 * 1024 * 1024);
        assert_eq!(parse_size_mb("100M").unwrap(), 100);
        assert_eq!(parse_size_mb(" 1GiB ").unwrap(), 1024);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "0",
            "0G",
            "-5",
            "1.5G",
            "abc",
            "12K",
            "1P",
            "G",
            "99999999999999999999",
        ] {
            let err = parse_size_mb(bad).unwrap_err().to_string();
            assert!(err.contains("invalid size"), "{bad}: {err}");
        }
        assert!(parse_size_mb("-5")
            .unwrap_err()
            .to_string()
            .contains("positive"));
    }

    proptest! {
        #[test]
        fn roundtrip(v in 1u64..1_000_000, unit in 0usize..3) {
            let (suffix, mul) = [("", 1), ("G", 1024), ("T", 1024 * 1024)][unit];
            prop_assert_eq!(parse_size_mb(&format!("{v}{suffix}")).unwrap(), v * mul);
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = parse_size_mb(&s);
        }
    }
}
