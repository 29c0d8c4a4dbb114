//! `requires-python` (a PEP 440 specifier set such as `>=3.10,<3.13` or `==3.11.*`)
//! checked against an interpreter's exact version.

use std::cmp::Ordering;

/// Whether `version` (e.g. `3.11.7`) satisfies `spec`. An unreadable specifier is an
/// error that says what form it must take.
pub(crate) fn satisfies(version: &str, spec: &str) -> Result<bool, String> {
    let have = release(version)
        .ok_or_else(|| format!("the interpreter's version `{version}` is not a Python version"))?;
    for clause in spec.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        if !clause_holds(&have, clause).ok_or_else(|| {
            format!(
                "`requires-python = \"{spec}\"` is not a version specifier; write e.g. \">=3.10\" or \">=3.10,<3.14\""
            )
        })? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The numeric release of a version (`3.11.7rc1` → [3, 11, 7]).
fn release(v: &str) -> Option<Vec<u64>> {
    let v = v.trim().trim_start_matches('v');
    let mut out = Vec::new();
    for part in v.split('.') {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            break;
        }
        out.push(digits.parse().ok()?);
        if digits.len() != part.len() {
            break;
        }
    }
    (!out.is_empty()).then_some(out)
}

fn cmp(a: &[u64], b: &[u64]) -> Ordering {
    let n = a.len().max(b.len());
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    (0..n)
        .map(|i| at(a, i).cmp(&at(b, i)))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

fn clause_holds(have: &[u64], clause: &str) -> Option<bool> {
    let op_len = clause
        .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
        .unwrap_or(clause.len());
    let (op, rest) = clause.split_at(op_len);
    let rest = rest.trim();
    if let Some(prefix) = rest.strip_suffix(".*") {
        let want = release(prefix)?;
        let matches = have.len() >= want.len() && have[..want.len()] == want[..];
        return match op {
            "==" => Some(matches),
            "!=" => Some(!matches),
            _ => None,
        };
    }
    let want = release(rest)?;
    let o = cmp(have, &want);
    Some(match op {
        ">=" => o.is_ge(),
        ">" => o.is_gt(),
        "<=" => o.is_le(),
        "<" => o.is_lt(),
        "==" | "===" => o.is_eq(),
        "!=" => o.is_ne(),
        // `~=3.10` means `>=3.10, ==3.*`: the last given part may grow.
        "~=" if want.len() >= 2 => {
            let stem = &want[..want.len() - 1];
            o.is_ge() && have.len() >= stem.len() && have[..stem.len()] == stem[..]
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::satisfies;

    #[test]
    fn specifiers_are_checked_against_the_exact_version() {
        assert_eq!(satisfies("3.11.7", ">=3.9"), Ok(true));
        assert_eq!(satisfies("3.11.7", ">=3.12"), Ok(false));
        assert_eq!(satisfies("3.11.7", ">=3.10,<3.12"), Ok(true));
        assert_eq!(satisfies("3.11.7", ">=3.10, <3.11"), Ok(false));
        assert_eq!(satisfies("3.11.7", "==3.11.*"), Ok(true));
        assert_eq!(satisfies("3.14.0", "==3.11.*"), Ok(false));
        assert_eq!(satisfies("3.11.7", "~=3.10"), Ok(true));
        assert_eq!(satisfies("4.0", "~=3.10"), Ok(false));
        assert_eq!(satisfies("3.11.7", "!=3.11.7"), Ok(false));
        assert_eq!(satisfies("3.14.0rc1", ">=3.14"), Ok(true));
    }

    #[test]
    fn an_unreadable_specifier_says_what_to_write() {
        let e = satisfies("3.11.7", "python3").unwrap_err();
        assert!(e.contains(">=3.10"), "{e}");
        assert!(satisfies("3.11.7", "=>3.9").is_err());
    }
}
