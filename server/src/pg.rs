//! [`Metadata`] in PostgreSQL, so several stateless server processes can
//! serve one team: every decision that must be made once (which record of a
//! key wins, whether a project name is taken) is made by PostgreSQL
//! (`INSERT … ON CONFLICT DO NOTHING`, unique constraints), never by a
//! process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};

use crate::error::ApiError;
use crate::storage::{Eval, KeyRecord, Metadata, ProjectId, Scope, SideRuntime, blob_missing};

/// Connections per server process.
const POOL: usize = 4;

/// How long a request waits for a connection, or for a new one to be made,
/// before it is answered `503 storage_unavailable` (never a hang).
const WAIT: Duration = Duration::from_secs(10);

/// The schema's versions in order; `hitsave_schema.version` says how many
/// were applied. Version 1 is the schema before versions were recorded (so
/// it creates only what is missing); never edit a published step, add one.
const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2];

/// Retention and the collector (as SQLite's version 2).
const SCHEMA_V2: &str = "
ALTER TABLE evals ADD COLUMN used BIGINT NOT NULL DEFAULT 0;
UPDATE evals SET used = created;
ALTER TABLE blobs ADD COLUMN touched BIGINT NOT NULL DEFAULT 0;
UPDATE blobs SET touched = EXTRACT(EPOCH FROM now())::BIGINT;
CREATE INDEX evals_by_use ON evals(used);
CREATE INDEX evals_by_blob ON evals(project, blob);
CREATE INDEX blobs_by_digest ON blobs(digest);
";

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS projects (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    project BIGINT NOT NULL REFERENCES projects(id),
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    created BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE IF NOT EXISTS blobs (
    project BIGINT NOT NULL,
    digest TEXT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (project, digest)
);
CREATE TABLE IF NOT EXISTS evals (
    project BIGINT NOT NULL,
    key TEXT NOT NULL,
    function_id TEXT NOT NULL,
    function_name TEXT NOT NULL,
    language TEXT NOT NULL,
    arguments TEXT NOT NULL,
    codec TEXT NOT NULL,
    blob TEXT NOT NULL,
    size BIGINT NOT NULL,
    compute_micros BIGINT NOT NULL,
    signature TEXT,
    graph TEXT,
    created BIGINT NOT NULL,
    PRIMARY KEY (project, key)
);
CREATE INDEX IF NOT EXISTS evals_by_function ON evals(project, function_name, key);
";

/// Metadata in a PostgreSQL database (optionally in one schema).
///
/// The [`Metadata`] trait is synchronous (its callers run on tokio's
/// blocking pool), so the pool's connections live on a small runtime of
/// their own, which each call blocks on; a connection that failed its check
/// (the database restarted) is replaced, not handed out again.
pub struct PostgresMetadata {
    pool: Pool,
    runtime: SideRuntime,
    /// Keys that authenticated lately, by id: a lookup is then one round
    /// trip (its records) instead of two. See [`KEY_TTL`].
    keys: Mutex<HashMap<String, (Instant, KeyRecord)>>,
}

/// How long an authenticated key is remembered. Revoking it through this
/// server forgets it at once; another server (or `hitsave-server keys
/// revoke`) is seen within this time. Unknown ids are never remembered, so a
/// key just created anywhere works at once and guessing fills nothing.
pub const KEY_TTL: Duration = Duration::from_secs(5);

/// At most this many keys are remembered (the expired ones are dropped first).
const KEYS_REMEMBERED: usize = 10_000;

fn db(error: tokio_postgres::Error) -> ApiError {
    if error.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
        return ApiError::new(axum::http::StatusCode::CONFLICT, "conflict", error.to_string());
    }
    if error.is_closed() || error.code().is_none() {
        return unavailable(describe(&error));
    }
    ApiError::internal(format!("metadata database: {}", describe(&error)))
}

/// The error with what caused it (tokio-postgres says only "db error" and
/// keeps the server's message, or the TLS failure, in its source).
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        format!("metadata database: {error}"),
    )
}

fn pool_error(error: PoolError) -> ApiError {
    match error {
        PoolError::Backend(error) => db(error),
        other => unavailable(other),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl PostgresMetadata {
    /// Connects to `url` (`postgres://user@host:port/db`); with `schema`,
    /// everything lives in that schema (created if missing).
    pub fn open(url: &str, schema: Option<&str>) -> Result<Self, ApiError> {
        if let Some(schema) = schema
            && !schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(ApiError::bad_request("a schema name is letters, digits and _"));
        }
        let (url, tls) = crate::pg_tls::connector(url)?;
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|err| ApiError::bad_request(format!("database URL: {err}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(WAIT);
        }
        if let Some(schema) = schema {
            // Every connection, also one made after a restart, starts in the schema.
            config.options(format!("-c search_path={schema}"));
        }
        let runtime = SideRuntime::new("hitsave-pg", "metadata database")?;
        let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Verified });
        let pool = Pool::builder(manager)
            .max_size(POOL)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT))
            .create_timeout(Some(WAIT))
            .recycle_timeout(Some(WAIT))
            .build()
            .map_err(|err| ApiError::internal(format!("metadata database pool: {err}")))?;
        let metadata = Self { pool, runtime, keys: Mutex::new(HashMap::new()) };
        let create = match schema {
            Some(schema) => format!("CREATE SCHEMA IF NOT EXISTS {schema};"),
            None => String::new(),
        };
        // Concurrent starts of several servers: one migrates (in one transaction,
        // DDL included), the others wait on the lock and then see its version.
        let applied = metadata.with(async |c| {
            if !create.is_empty() {
                c.batch_execute(&create).await?;
            }
            let tx = c.transaction().await?;
            tx.batch_execute(
                "SELECT pg_advisory_xact_lock(7242);
                 CREATE TABLE IF NOT EXISTS hitsave_schema (version INTEGER NOT NULL);",
            )
            .await?;
            let applied: i32 =
                tx.query_opt("SELECT version FROM hitsave_schema", &[]).await?.map_or(0, |row| row.get(0));
            if applied as usize <= MIGRATIONS.len() {
                for step in &MIGRATIONS[applied as usize..] {
                    tx.batch_execute(step).await?;
                }
                tx.execute("DELETE FROM hitsave_schema", &[]).await?;
                tx.execute("INSERT INTO hitsave_schema (version) VALUES ($1)", &[&(MIGRATIONS.len() as i32)]).await?;
            }
            tx.commit().await?;
            Ok(applied)
        })?;
        if applied as usize > MIGRATIONS.len() {
            return Err(ApiError::internal(format!(
                "the metadata database has schema version {applied}, newer than this server's {}: run a newer hitsave-server",
                MIGRATIONS.len()
            )));
        }
        Ok(metadata)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, KeyRecord)>> {
        self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with<T>(
        &self,
        work: impl AsyncFnOnce(&mut deadpool_postgres::Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, ApiError> {
        self.runtime.get().block_on(async {
            let mut client = self.pool.get().await.map_err(pool_error)?;
            work(&mut client).await.map_err(db)
        })
    }
}

fn eval_from_row(row: &tokio_postgres::Row) -> Eval {
    Eval {
        key: row.get(0),
        function_id: row.get(1),
        function_name: row.get(2),
        language: row.get(3),
        arguments: row.get(4),
        codec: row.get(5),
        blob: row.get(6),
        size: row.get::<_, i64>(7) as u64,
        compute_micros: row.get::<_, i64>(8) as u64,
        signature: row.get(9),
        graph: row.get(10),
        created: row.get::<_, i64>(11) as u64,
    }
}

const EVAL_COLUMNS: &str = "key, function_id, function_name, language, arguments, codec, blob, size, compute_micros, signature, graph, created";

fn key_from_row(row: &tokio_postgres::Row) -> KeyRecord {
    let scope: String = row.get(2);
    let hash: Vec<u8> = row.get(4);
    let mut secret_hash = [0u8; 32];
    if hash.len() == 32 {
        secret_hash.copy_from_slice(&hash);
    }
    KeyRecord {
        id: row.get(0),
        project: row.get(1),
        scope: Scope::parse(&scope).unwrap_or(Scope::Read),
        name: row.get(3),
        secret_hash,
        created: row.get::<_, i64>(5) as u64,
        revoked: row.get(6),
    }
}

impl Metadata for PostgresMetadata {
    fn ping(&self) -> Result<(), ApiError> {
        self.with(async |c| c.simple_query("SELECT 1").await.map(drop))
    }

    fn create_project(&self, name: &str) -> Result<ProjectId, ApiError> {
        self.with(async |c| {
            let row = c
                .query_one("INSERT INTO projects (name, created) VALUES ($1, $2) RETURNING id", &[&name, &now()])
                .await?;
            Ok(row.get(0))
        })
    }

    fn project_name(&self, project: ProjectId) -> Result<Option<String>, ApiError> {
        self.with(async |c| {
            Ok(c.query_opt("SELECT name FROM projects WHERE id = $1", &[&project]).await?.map(|row| row.get(0)))
        })
    }

    fn add_key(&self, key: &KeyRecord) -> Result<(), ApiError> {
        self.with(async |c| {
            c.execute(
                "INSERT INTO api_keys (id, project, scope, name, secret_hash, created, revoked) VALUES ($1, $2, $3, $4, $5, $6, FALSE)",
                &[&key.id, &key.project, &key.scope.as_str(), &key.name, &&key.secret_hash[..], &(key.created as i64)],
            ).await?;
            Ok(())
        })
    }

    fn key(&self, id: &str) -> Result<Option<KeyRecord>, ApiError> {
        if let Some((at, record)) = self.remembered().get(id)
            && at.elapsed() < KEY_TTL
        {
            return Ok(Some(record.clone()));
        }
        let record = self.with(async |c| {
            Ok(c.query_opt(
                "SELECT id, project, scope, name, secret_hash, created, revoked FROM api_keys WHERE id = $1",
                &[&id],
            )
            .await?
            .map(|row| key_from_row(&row)))
        })?;
        let mut remembered = self.remembered();
        match &record {
            Some(key) if !key.revoked => {
                if remembered.len() >= KEYS_REMEMBERED {
                    remembered.retain(|_, (at, _)| at.elapsed() < KEY_TTL);
                    if remembered.len() >= KEYS_REMEMBERED {
                        remembered.clear();
                    }
                }
                remembered.insert(id.to_owned(), (Instant::now(), key.clone()));
            }
            _ => {
                remembered.remove(id);
            }
        }
        Ok(record)
    }

    fn keys(&self, project: ProjectId) -> Result<Vec<KeyRecord>, ApiError> {
        self.with(async |c| {
            Ok(c.query(
                "SELECT id, project, scope, name, secret_hash, created, revoked FROM api_keys WHERE project = $1 ORDER BY created, id",
                &[&project],
            ).await?
            .iter()
            .map(key_from_row)
            .collect())
        })
    }

    fn revoke_key(&self, project: ProjectId, id: &str) -> Result<bool, ApiError> {
        self.remembered().remove(id);
        let revoked = self.with(async |c| {
            Ok(c.execute("UPDATE api_keys SET revoked = TRUE WHERE project = $1 AND id = $2", &[&project, &id]).await?
                > 0)
        });
        // Again: a lookup that read the row before the update may have remembered it meanwhile.
        self.remembered().remove(id);
        revoked
    }

    fn add_blob(&self, project: ProjectId, digest: &str, size: u64) -> Result<(), ApiError> {
        self.with(async |c| {
            c.execute(
                "INSERT INTO blobs (project, digest, size, touched) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (project, digest) DO UPDATE SET touched = EXCLUDED.touched",
                &[&project, &digest, &(size as i64), &now()],
            )
            .await?;
            Ok(())
        })
    }

    fn blob_size(&self, project: ProjectId, digest: &str) -> Result<Option<u64>, ApiError> {
        self.with(async |c| {
            Ok(c.query_opt("SELECT size FROM blobs WHERE project = $1 AND digest = $2", &[&project, &digest])
                .await?
                .map(|row| row.get::<_, i64>(0) as u64))
        })
    }

    fn project_bytes(&self, project: ProjectId) -> Result<u64, ApiError> {
        self.with(async |c| {
            let row =
                c.query_one("SELECT COALESCE(SUM(size), 0)::BIGINT FROM blobs WHERE project = $1", &[&project]).await?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    fn put_evals(&self, project: ProjectId, evals: &[Eval]) -> Result<Vec<bool>, ApiError> {
        self.with(async |c| -> Result<Result<Vec<bool>, ApiError>, tokio_postgres::Error> {
            let tx = c.transaction().await?;
            let insert = tx.prepare(
                "INSERT INTO evals (project, key, function_id, function_name, language, arguments, codec, blob, size,
                    compute_micros, signature, graph, created, used)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) ON CONFLICT DO NOTHING",
            ).await?;
            let touch = tx.prepare("UPDATE blobs SET touched = $3 WHERE project = $1 AND digest = $2").await?;
            let mut stored = Vec::with_capacity(evals.len());
            for eval in evals {
                // Under the row lock this takes, a collector's DELETE of the row either
                // happened (0 rows: refused) or sees it touched now (kept).
                if tx.execute(&touch, &[&project, &eval.blob, &now()]).await? == 0 {
                    return Ok(Err(blob_missing(eval)));
                }
                let changed = tx
                    .execute(
                        &insert,
                        &[
                            &project,
                            &eval.key,
                            &eval.function_id,
                            &eval.function_name,
                            &eval.language,
                            &eval.arguments,
                            &eval.codec,
                            &eval.blob,
                            &(eval.size as i64),
                            &(eval.compute_micros as i64),
                            &eval.signature,
                            &eval.graph,
                            &now(),
                        ],
                    )
                    .await?;
                stored.push(changed > 0);
            }
            tx.commit().await?;
            Ok(Ok(stored))
        })?
    }

    fn get_evals(&self, project: ProjectId, keys: &[String], touch_before: u64) -> Result<Vec<Eval>, ApiError> {
        self.with(async |c| {
            let rows = c
                .query(
                    &format!(
                        "SELECT {EVAL_COLUMNS}, used FROM evals WHERE project = $1 AND key = ANY($2) ORDER BY key"
                    ),
                    &[&project, &keys],
                )
                .await?;
            let stale: Vec<&str> =
                rows.iter().filter(|row| (row.get::<_, i64>(12) as u64) < touch_before).map(|row| row.get(0)).collect();
            if !stale.is_empty() {
                c.execute(
                    "UPDATE evals SET used = $3 WHERE project = $1 AND key = ANY($2)",
                    &[&project, &stale, &now()],
                )
                .await?;
            }
            Ok(rows.iter().map(eval_from_row).collect())
        })
    }

    fn expire_evals(&self, before: u64) -> Result<u64, ApiError> {
        self.with(async |c| c.execute("DELETE FROM evals WHERE used < $1", &[&(before as i64)]).await)
    }

    fn drop_unnamed_blobs(&self, before: u64) -> Result<u64, ApiError> {
        self.with(async |c| {
            c.execute(
                "DELETE FROM blobs WHERE touched < $1 AND NOT EXISTS
                    (SELECT 1 FROM evals WHERE evals.project = blobs.project AND evals.blob = blobs.digest)",
                &[&(before as i64)],
            )
            .await
        })
    }

    fn blob_held(&self, digest: &str) -> Result<bool, ApiError> {
        self.with(async |c| {
            Ok(c.query_opt("SELECT 1 FROM blobs WHERE digest = $1 LIMIT 1", &[&digest]).await?.is_some())
        })
    }

    fn list_evals(
        &self,
        project: ProjectId,
        function_name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Eval>, ApiError> {
        self.with(async |c| {
            Ok(c.query(
                &format!(
                    "SELECT {EVAL_COLUMNS} FROM evals WHERE project = $1 AND function_name = $2 AND key > $3 ORDER BY key LIMIT $4"
                ),
                &[&project, &function_name, &after.unwrap_or(""), &(limit as i64)],
            ).await?
            .iter()
            .map(eval_from_row)
            .collect())
        })
    }
}
