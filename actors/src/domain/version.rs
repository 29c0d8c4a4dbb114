//! Script versions: `Major.Minor` as two integers, so 0.9 is followed by 0.10.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ts_rs::TS)]
#[ts(type = "string")]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    /// The version of a script's first save.
    pub const FIRST: Version = Version { major: 0, minor: 1 };

    pub fn new(major: u32, minor: u32) -> Version {
        Version { major, minor }
    }

    /// The version a save produces.
    pub fn next_minor(self) -> Version {
        Version {
            major: self.major,
            minor: self.minor + 1,
        }
    }

    /// The version a Major bump produces: 0.7 → 1.0.
    pub fn next_major(self) -> Version {
        Version {
            major: self.major + 1,
            minor: 0,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("`{0}` is not a version; write it as Major.Minor, e.g. `0.10`")]
pub struct BadVersion(pub String);

impl FromStr for Version {
    type Err = BadVersion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadVersion(s.to_string());
        let (major, minor) = s.split_once('.').ok_or_else(bad)?;
        let num = |p: &str| {
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                Err(bad())
            } else {
                p.parse::<u32>().map_err(|_| bad())
            }
        };
        Ok(Version {
            major: num(major)?,
            minor: num(minor)?,
        })
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_counts_past_nine() {
        let v: Version = "0.9".parse().unwrap();
        assert_eq!(v.next_minor().to_string(), "0.10");
        assert!(v.next_minor() > v);
        assert_ne!(
            "0.1".parse::<Version>().unwrap(),
            "0.10".parse::<Version>().unwrap()
        );
    }

    #[test]
    fn major_bump_resets_minor() {
        assert_eq!(
            "0.7".parse::<Version>().unwrap().next_major().to_string(),
            "1.0"
        );
    }

    #[test]
    fn malformed_versions_are_rejected() {
        for bad in ["", "1", "1.", ".1", "1.2.3", "a.b", "-1.0", "1.+2", "1.1e3"] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }
}
