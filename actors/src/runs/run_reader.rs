//! The read side of runs and passes, for the server: records, output, stored events,
//! artifacts, production data. Each read runs on the blocking pool with a pooled read
//! connection (SQLite in WAL mode lets it read while the scheduler writes); the SQL
//! stays in [`run_store`](super::run_store).

use std::sync::Arc;

use rusqlite::Connection;

use crate::error::Result;
use crate::runs::events::Event;
use crate::runs::run_store::{self, Collected, Log, PassRecord, PassSummary, RunRecord};
use crate::scripts::catalog::Catalog;

#[derive(Clone)]
pub struct RunReader {
    catalog: Arc<Catalog>,
}

impl RunReader {
    pub fn new(catalog: Arc<Catalog>) -> RunReader {
        RunReader { catalog }
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let catalog = self.catalog.clone();
        tokio::task::spawn_blocking(move || catalog.with_conn(f)).await?
    }

    /// Runs newest first, of one script or of all, older than run `before` when given
    /// (a page cursor), at most `limit`.
    pub async fn runs(
        &self,
        script_id: Option<i64>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RunRecord>> {
        self.read(move |c| run_store::runs(c, script_id, before, limit))
            .await
    }

    /// Passes newest first with their outcome, older than pass `before` when given.
    pub async fn passes(&self, before: Option<i64>, limit: u32) -> Result<Vec<PassSummary>> {
        self.read(move |c| run_store::passes(c, before, limit))
            .await
    }

    /// The pass running now, with its groups so far.
    pub async fn current_pass(&self) -> Result<Option<PassRecord>> {
        self.read(run_store::current_pass).await
    }

    pub async fn run(&self, id: i64) -> Result<Option<RunRecord>> {
        self.read(move |c| run_store::run(c, id)).await
    }

    /// A run's output lines as `(stream, line)`.
    pub async fn output(&self, id: i64) -> Result<Vec<(String, String)>> {
        self.read(move |c| run_store::output(c, id)).await
    }

    /// What a run left in its directory; `None` when the run does not exist.
    pub async fn artifacts(&self, id: i64) -> Result<Option<Collected>> {
        self.read(move |c| run_store::artifacts(c, id)).await
    }

    pub async fn pass(&self, id: i64) -> Result<Option<PassRecord>> {
        self.read(move |c| run_store::pass(c, id)).await
    }

    /// The last pass over every published script.
    pub async fn latest_full_pass(&self) -> Result<Option<PassRecord>> {
        self.read(run_store::latest_full_pass).await
    }

    /// A script's last successful run.
    pub async fn last_success(&self, script_id: i64) -> Result<Option<RunRecord>> {
        self.read(move |c| run_store::last_success(c, script_id))
            .await
    }

    pub async fn production_data(&self, script_id: i64) -> Result<Option<Vec<u8>>> {
        self.read(move |c| run_store::production_data(c, script_id))
            .await
    }

    /// The stored events of a run or pass after sequence number `after`.
    pub async fn events(&self, log: Log, after: u64) -> Result<Vec<Event>> {
        self.read(move |c| run_store::events(c, log, after)).await
    }
}
