//! A syntax error found in a script, as the editor shows it.

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SyntaxProblem {
    pub message: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub text: Option<String>,
}

impl std::fmt::Display for SyntaxProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}
