//! What new scripts start from: the template of a new script, and the shipped examples
//! seeded on `prod` at first start.

use super::{Committer, ScriptStore};
use crate::deps;
use crate::error::Result;
use crate::scripts::gitstore::PROD;

impl ScriptStore {
    /// The template of a new script: docstring, `argv[1]` handling, and the interpreters.
    pub(crate) fn template(&self) -> String {
        let mut t = String::from(
            "\"\"\"New script\n\nDescribe what this script does. The first line above is its name in the list.\n\"\"\"\n",
        );
        t.push_str(
            "# Input: the runner writes this script's test data (or the production data) to a\n",
        );
        t.push_str(
            "# file and passes its path as the first argument, sys.argv[1]. Files written to\n",
        );
        t.push_str("# the working directory are kept as the run's artifacts.\n#\n");
        t.push_str("# Available interpreters (choose one when running):\n");
        if self.interpreters_note.is_empty() {
            t.push_str("#   (none detected; see interpreters.toml)\n");
        }
        for line in &self.interpreters_note {
            t.push_str(&format!("#   {line}\n"));
        }
        t.push_str("#\n# Packages this script needs, from the package index (PEP 723), e.g.\n");
        t.push_str("# dependencies = [\"tabulate>=0.9\"]; saving locks them with uv.\n");
        t.push_str(deps::pep723::TEMPLATE_BLOCK);
        t.push_str(concat!(
            "import sys\n\n\n",
            "def main(argv: list[str]) -> int:\n",
            "    if len(argv) < 2:\n",
            "        print(\"usage: script INPUT_FILE\", file=sys.stderr)\n",
            "        return 2\n",
            "    with open(argv[1], encoding=\"utf-8\") as f:\n",
            "        data = f.read()\n",
            "    print(f\"read {len(data)} characters from {argv[1]}\")\n",
            "    return 0\n\n\n",
            "if __name__ == \"__main__\":\n",
            "    sys.exit(main(sys.argv))\n",
        ));
        t
    }

    /// Creates, fills and publishes the shipped examples on `prod` (an empty store only).
    pub(super) fn seed_examples(&mut self) -> Result<()> {
        let who = Committer::system(self.editors.first().map(String::as_str).unwrap_or(PROD));
        let seeded: Vec<_> = crate::scripts::examples::EXAMPLES
            .iter()
            .filter_map(|e| e.seeded_at.map(|o| (o, e)))
            .collect();
        for (ordering, e) in &seeded {
            let id = self.create(
                &who,
                Some(e.content.to_string()),
                Some(e.filename.to_string()),
                Some(ordering.parse().expect("example ordering")),
            )?;
            self.put_test_data(&who, id, e.test_data.as_bytes(), None)?;
            self.publish(&who, id, None)?;
        }
        tracing::info!(count = seeded.len(), "seeded example scripts on prod");
        Ok(())
    }
}
