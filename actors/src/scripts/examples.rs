//! The example scripts shipped with the app (`examples/`), with their test data. The
//! first three are seeded on `prod` on first start; every one can be added later from
//! the browser (`POST /api/examples/{id}`).

use serde::Serialize;

/// One shipped example.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Example {
    /// Stable id, e.g. `bracket`.
    pub id: &'static str,
    pub filename: &'static str,
    #[serde(skip)]
    pub content: &'static str,
    #[serde(skip)]
    pub test_data: &'static str,
    /// Its ordering number when seeded on first start; `None`: not seeded.
    #[serde(skip)]
    pub seeded_at: Option<&'static str>,
}

impl Example {
    /// The first line of the module docstring.
    pub fn name(&self) -> &'static str {
        self.content
            .trim_start()
            .strip_prefix("\"\"\"")
            .and_then(|s| s.lines().next())
            .map(str::trim)
            .unwrap_or(self.filename)
    }

    /// The rest of the docstring's first paragraph after the name, joined into one line.
    pub fn summary(&self) -> String {
        let doc = self
            .content
            .trim_start()
            .strip_prefix("\"\"\"")
            .and_then(|s| s.split("\"\"\"").next())
            .unwrap_or("");
        doc.split("\n\n")
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The interpreter its `# interpreter:` line asks for, if any.
    pub fn interpreter(&self) -> Option<&'static str> {
        crate::scripts::python::interpreter_directive(self.content)
    }
}

macro_rules! example {
    ($id:literal, $file:literal, $data:literal, $seeded:expr) => {
        Example {
            id: $id,
            filename: $file,
            content: include_str!(concat!("../../../examples/", $file)),
            test_data: include_str!(concat!("../../../examples/", $data)),
            seeded_at: $seeded,
        }
    };
}

pub const EXAMPLES: &[Example] = &[
    example!("word_count", "word_count.py", "word_count.txt", Some("1.0")),
    example!("csv_totals", "csv_totals.py", "csv_totals.csv", Some("2.0")),
    example!(
        "json_summary",
        "json_summary.py",
        "json_summary.json",
        Some("2.1")
    ),
    example!("bracket", "bracket.py", "bracket.json", None),
    example!("assembly", "assembly.py", "assembly.json", None),
];

pub fn find(id: &str) -> Option<&'static Example> {
    EXAMPLES.iter().find(|e| e.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_has_a_name_and_the_cad_ones_ask_for_build123d() {
        for e in EXAMPLES {
            assert!(!e.name().is_empty() && e.name() != e.filename, "{}", e.id);
            assert!(!e.summary().is_empty(), "{}", e.id);
        }
        assert_eq!(find("bracket").unwrap().name(), "Bracket with a hole");
        assert_eq!(find("assembly").unwrap().interpreter(), Some("build123d"));
        assert_eq!(find("word_count").unwrap().interpreter(), None);
    }
}
