//! The original tool's size syntax: an integer with an optional unit `M`, `G`
//! or `T` (either case, powers of 1024); no unit means MB. `-m 16G` is 16384
//! MB. The same syntax gives rates in MB/s. Also: lengths of time given in
//! seconds or ms, checked once, and the strict readers ([`de`]) that the
//! configurations use for what a user or a Python caller passes in.

use std::time::Duration;

use crate::error::{Error, Result};

/// The longest run or interval mig_mon accepts: a year, in seconds.
pub const MAX_SECONDS: f64 = 366.0 * 86400.0;

/// A number as a user would write it in a message: `1e300`, not 301
/// digits.
pub fn num(v: f64) -> String {
    if v.is_finite() && v != 0.0 && !(1e-3..1e9).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// `s` seconds as a Duration: finite, greater than zero and at most a year;
/// otherwise a config error in `field`.
pub fn seconds(field: &str, s: f64) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0 && s <= MAX_SECONDS) {
        return Err(Error::field(
            field,
            format!(
                "must be greater than 0 and at most {MAX_SECONDS} s, not {}",
                num(s)
            ),
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

/// A run's optional length in seconds (`duration_s`), checked as
/// [`seconds`] is.
pub fn run_length(duration_s: Option<f64>) -> Result<Option<Duration>> {
    duration_s.map(|d| seconds("duration_s", d)).transpose()
}

/// `ms` milliseconds as a Duration, checked as [`seconds`] is.
pub fn millis(field: &str, ms: f64) -> Result<Duration> {
    if !(ms.is_finite() && ms > 0.0 && ms <= MAX_SECONDS * 1000.0) {
        return Err(Error::field(
            field,
            format!(
                "must be greater than 0 and at most {} ms, not {}",
                MAX_SECONDS * 1000.0,
                num(ms)
            ),
        ));
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

/// One mebibyte in bytes: the original's "MB".
pub const MB: u64 = 1 << 20;

/// Parses a size such as `512`, `16G` or `2t` into MB (MiB).
///
/// Accepts an optional trailing `B` or `iB` after the unit (`16GB`, `16GiB`)
/// and surrounding white space. Zero, negative, fractional or overflowing
/// values are rejected with a message naming the input.
pub fn parse_size_mb(text: &str) -> Result<u64> {
    let bad = |why: &str| {
        Error::config(format!(
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

/// "a, b or c": a list of names as the messages say it.
pub fn either(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// A text enum: the enum, `parse` (any case, aliases after `|`), `name`,
/// `NAMES` (what the help and the stubs list) and its serde form, the
/// name as text. `what` is what the error calls a value it cannot parse.
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$m:meta])*
        pub enum $t:ident: $what:literal {
            $( $(#[$vm:meta])* $v:ident = $name:literal $(| $alias:literal)* ),* $(,)?
        }
    ) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $t {
            $( $(#[$vm])* $v, )*
        }

        impl $t {
            /// Every name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// Parses a name or an alias, in any case.
            pub fn parse(s: &str) -> $crate::Result<Self> {
                let l = s.trim().to_ascii_lowercase();
                $( if l == $name $(|| l == $alias)* { return Ok(Self::$v); } )*
                Err($crate::Error::config(format!(
                    "unknown {} '{s}' (expected {})",
                    $what,
                    $crate::units::either(Self::NAMES)
                )))
            }

            /// The name as written.
            pub fn name(self) -> &'static str {
                match self {
                    $( Self::$v => $name, )*
                }
            }
        }

        $crate::text_serde!($t);
    };
}

/// Gives a type with `parse(&str) -> Result<Self>` and `name(self) -> &str`
/// its serde form: the name as text.
#[macro_export]
macro_rules! text_serde {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Strict readers for configuration fields (`#[serde(deserialize_with)]`):
/// a whole number is not a bool or a float, a flag is not a string, a size
/// may be given in the original's syntax. Each failure names what it got.
pub mod de {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{self, Deserializer, Visitor};

    #[derive(Clone, Copy, PartialEq)]
    enum Want {
        Int,
        Size,
        Float,
    }

    struct Num<T> {
        want: Want,
        _t: PhantomData<T>,
    }

    /// A number a field accepts: from a u64 (whole) or an f64.
    pub trait FromNum: Sized {
        /// From a whole number; None if out of range.
        fn from_u64(v: u64) -> Option<Self>;
        /// From a float; None where the type is whole.
        fn from_f64(v: f64) -> Option<Self>;
    }

    macro_rules! whole {
        ($($t:ty),*) => {$(
            impl FromNum for $t {
                fn from_u64(v: u64) -> Option<Self> { <$t>::try_from(v).ok() }
                fn from_f64(_: f64) -> Option<Self> { None }
            }
        )*};
    }
    whole!(u16, u32, u64, usize);

    impl FromNum for f64 {
        fn from_u64(v: u64) -> Option<Self> {
            Some(v as f64)
        }
        fn from_f64(v: f64) -> Option<Self> {
            Some(v)
        }
    }

    impl<'de, T: FromNum> Visitor<'de> for Num<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self.want {
                Want::Int => "a whole number",
                Want::Size => "a whole number or a size such as 512, 16G",
                Want::Float => "a number",
            })
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Err(E::custom(format!(
                "expected {}, not {v}",
                Expect(self.want)
            )))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            T::from_u64(v)
                .map(Some)
                .ok_or_else(|| E::custom(format!("{v} is too large")))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            if v < 0 {
                return Err(E::custom(format!("must not be negative, not {v}")));
            }
            self.visit_u64(v as u64)
        }

        fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format!("{v} is too large"))),
            }
        }

        fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) if v < 0 => Err(E::custom(format!("must not be negative, not {v}"))),
                Err(_) => Err(E::custom(format!("{v} is too large"))),
            }
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            T::from_f64(v).map(Some).ok_or_else(|| {
                E::custom(format!(
                    "expected {}, not the float {}",
                    Expect(self.want),
                    float_text(v)
                ))
            })
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if self.want == Want::Size {
                let mb = super::parse_size_mb(v).map_err(E::custom)?;
                return T::from_u64(mb)
                    .map(Some)
                    .ok_or_else(|| E::custom(format!("{v} is too large")));
            }
            Err(E::custom(format!(
                "expected {}, not '{v}'",
                Expect(self.want)
            )))
        }
    }

    /// A float as Python writes it: 2.0 and 1000.0, not 2 and 1000 (which
    /// would read as the whole numbers they were refused for being).
    fn float_text(v: f64) -> String {
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e16 {
            format!("{v:.1}")
        } else {
            format!("{v}")
        }
    }

    struct Expect(Want);

    impl fmt::Display for Expect {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self.0 {
                Want::Int => "a whole number",
                Want::Size => "a size (a whole number of MB, or e.g. 16G)",
                Want::Float => "a number",
            })
        }
    }

    fn read<'de, D: Deserializer<'de>, T: FromNum>(
        d: D,
        want: Want,
    ) -> Result<Option<T>, D::Error> {
        d.deserialize_any(Num::<T> {
            want,
            _t: PhantomData,
        })
    }

    fn required<'de, D: Deserializer<'de>, T>(v: Option<T>) -> Result<T, D::Error> {
        v.ok_or_else(|| de::Error::custom("a value is required here, not None"))
    }

    /// A whole number (not a bool, a float or a string).
    pub fn int<'de, D: Deserializer<'de>, T: FromNum>(d: D) -> Result<T, D::Error> {
        required::<D, T>(read(d, Want::Int)?)
    }

    /// A whole number, or None.
    pub fn opt_int<'de, D: Deserializer<'de>, T: FromNum>(d: D) -> Result<Option<T>, D::Error> {
        read(d, Want::Int)
    }

    /// MB: a whole number or the original's size text (`16G`).
    pub fn size<'de, D: Deserializer<'de>, T: FromNum>(d: D) -> Result<T, D::Error> {
        required::<D, T>(read(d, Want::Size)?)
    }

    /// MB as [`size`], or None.
    pub fn opt_size<'de, D: Deserializer<'de>, T: FromNum>(d: D) -> Result<Option<T>, D::Error> {
        read(d, Want::Size)
    }

    /// A number (whole or not; not a bool).
    pub fn float<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        required::<D, f64>(read(d, Want::Float)?)
    }

    /// A number, or None.
    pub fn opt_float<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        read(d, Want::Float)
    }

    struct Flag;

    impl<'de> Visitor<'de> for Flag {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("True or False")
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
    }

    /// True or False, nothing else (a string "no" is not False).
    pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        d.deserialize_any(Flag)
    }
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
