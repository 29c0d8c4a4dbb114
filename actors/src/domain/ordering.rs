//! Ordering numbers: exact decimals such as `3.01`, never floats.
//!
//! The integer part names the run-all group; the fraction orders scripts inside it.
//! A number is kept as its integer part and its fractional digits without trailing
//! zeros, so `3.10` and `3.1` are the same number and digit strings compare correctly.

use std::cmp::Ordering as CmpOrdering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest integer part accepted.
pub const MAX_GROUP: u64 = 999_999;
/// The most fractional digits accepted.
pub const MAX_FRACTION_DIGITS: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq, Hash, ts_rs::TS)]
#[ts(type = "string")]
pub struct Ordering {
    group: u64,
    fraction: String,
}

impl Ordering {
    /// `N.0`.
    pub fn whole(group: u64) -> Ordering {
        Ordering {
            group,
            fraction: String::new(),
        }
    }

    pub fn from_parts(group: u64, fraction: &str) -> Ordering {
        Ordering {
            group,
            fraction: fraction.trim_end_matches('0').to_string(),
        }
    }

    /// The integer part: scripts that share it run concurrently in one group.
    pub fn group(&self) -> u64 {
        self.group
    }

    /// Fractional digits without trailing zeros (empty for `N.0`).
    pub fn fraction(&self) -> &str {
        &self.fraction
    }
}

impl PartialOrd for Ordering {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordering {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // Digit strings without trailing zeros compare like the decimals they spell.
        self.group
            .cmp(&other.group)
            .then_with(|| self.fraction.cmp(&other.fraction))
    }
}

impl fmt::Display for Ordering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fraction.is_empty() {
            write!(f, "{}.0", self.group)
        } else {
            write!(f, "{}.{}", self.group, self.fraction)
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "`{0}` is not an ordering number; write a non-negative decimal such as `4.0` or `3.01` (at most {MAX_GROUP} and {MAX_FRACTION_DIGITS} decimals)"
)]
pub struct BadOrdering(pub String);

impl FromStr for Ordering {
    type Err = BadOrdering;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadOrdering(s.to_string());
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty()
            || int.len() > 7
            || !digits(int)
            || !digits(frac)
            || frac.len() > MAX_FRACTION_DIGITS
        {
            return Err(bad());
        }
        if s.ends_with('.') {
            return Err(bad());
        }
        let group: u64 = int.parse().map_err(|_| bad())?;
        if group > MAX_GROUP {
            return Err(bad());
        }
        Ok(Ordering::from_parts(group, frac))
    }
}

impl Serialize for Ordering {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ordering {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Ordering {
        s.parse().unwrap()
    }

    #[test]
    fn decimals_compare_exactly() {
        assert!(o("3.01") < o("3.1"));
        assert!(o("3.09") < o("3.1"));
        assert!(o("3.99") < o("4"));
        assert_eq!(o("3.10"), o("3.1"));
        assert!(o("3.1") < o("3.11"));
        assert!(o("2.999999") < o("3.0"));
    }

    #[test]
    fn display_keeps_one_decimal_for_whole_numbers() {
        assert_eq!(o("4").to_string(), "4.0");
        assert_eq!(o("3.01").to_string(), "3.01");
        assert_eq!(o("3.10").to_string(), "3.1");
        assert_eq!(o("3.01").group(), 3);
    }

    #[test]
    fn malformed_numbers_are_rejected() {
        for bad in [
            "",
            ".5",
            "5.",
            "-1",
            "1e3",
            "1.2.3",
            " 1",
            "1.1234567",
            "12345678",
            "1,5",
            "NaN",
        ] {
            assert!(bad.parse::<Ordering>().is_err(), "{bad}");
        }
    }
}
