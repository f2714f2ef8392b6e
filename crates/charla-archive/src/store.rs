//! The archive's table and its queries.

use std::str::FromStr;
use std::time::Duration;

use charla_core::Message;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool, Row};

use crate::ArchiveError;

/// The archive in one PostgreSQL database.
#[derive(Clone)]
pub struct Archive {
    pool: PgPool,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").finish_non_exhaustive()
    }
}

/// Longest search text accepted.
const MAX_QUERY: usize = 256;

impl Archive {
    /// Connect (creating the database if it does not exist) and bring the schema up to date.
    pub async fn open(url: &str) -> Result<Archive, ArchiveError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ArchiveError::Url(format!(
                "{}: expected postgres://USER@HOST:PORT/DATABASE",
                crate::redact(url)
            )));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| ArchiveError::Url(format!("{}: {e}", crate::redact(url))))?;
        let pool = match connect(&options).await {
            Ok(pool) => pool,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("3D000") => {
                create_database(&options).await?;
                connect(&options).await?
            }
            Err(e) => return Err(e.into()),
        };
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| ArchiveError::Migrate(e.to_string()))?;
        Ok(Archive { pool })
    }

    /// Store messages; those already stored (same id) are left as they are. How many were new.
    pub async fn store(&self, messages: &[Message]) -> Result<u64, ArchiveError> {
        if messages.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(messages.len());
        let mut rooms = Vec::with_capacity(messages.len());
        let mut users = Vec::with_capacity(messages.len());
        let mut texts = Vec::with_capacity(messages.len());
        let mut horas = Vec::with_capacity(messages.len());
        let mut stamps = Vec::with_capacity(messages.len());
        for m in messages {
            ids.push(m.id.as_str());
            rooms.push(m.room.as_str());
            // PostgreSQL text cannot hold NUL; a chat message could.
            users.push(m.usuario.replace('\0', "\u{fffd}"));
            texts.push(m.mensaje.replace('\0', "\u{fffd}"));
            horas.push(m.hora.as_str());
            stamps.push(m.ts_us);
        }
        let done = sqlx::query(
            "INSERT INTO charla_messages (id, room, usuario, mensaje, hora, ts_us)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[])
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&ids)
        .bind(&rooms)
        .bind(&users)
        .bind(&texts)
        .bind(&horas)
        .bind(&stamps)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// A room's messages, oldest first: the last `limit`, or the `limit` before message
    /// `before`; with `query`, only those matching it (full-text, words of the text or name).
    pub async fn page(
        &self,
        room: &str,
        limit: usize,
        before: Option<&str>,
        query: Option<&str>,
    ) -> Result<Vec<Message>, ArchiveError> {
        if let Some(q) = query {
            if q.trim().is_empty() || q.len() > MAX_QUERY {
                return Err(ArchiveError::InvalidArgument(format!(
                    "q: 1 to {MAX_QUERY} bytes of words to look for"
                )));
            }
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        if let Some(id) = before {
            let known = sqlx::query("SELECT 1 FROM charla_messages WHERE id = $1 AND room = $2")
                .bind(id)
                .bind(room)
                .fetch_optional(&self.pool)
                .await?;
            if known.is_none() {
                return Err(ArchiveError::InvalidArgument(format!(
                    "before={id}: no such message in room '{room}'"
                )));
            }
        }
        let rows = sqlx::query(
            "SELECT id, room, usuario, mensaje, hora, ts_us FROM charla_messages m
             WHERE room = $1
               AND ($2::text IS NULL OR (ts_us, id) < (SELECT ts_us, id FROM charla_messages WHERE id = $2))
               AND ($3::text IS NULL OR search @@ websearch_to_tsquery('simple', $3))
             ORDER BY ts_us DESC, id DESC
             LIMIT $4",
        )
        .bind(room)
        .bind(before)
        .bind(query)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut messages: Vec<Message> = rows.iter().map(message).collect::<Result<_, _>>()?;
        messages.reverse();
        Ok(messages)
    }

    /// How many messages a room has in the archive, and how many distinct ids (equal, by
    /// the key; kept as a check the tests read).
    pub async fn count(&self, room: &str) -> Result<(i64, i64), ArchiveError> {
        let row =
            sqlx::query("SELECT count(*), count(DISTINCT id) FROM charla_messages WHERE room = $1")
                .bind(room)
                .fetch_one(&self.pool)
                .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Whether the database answers now.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

fn message(row: &sqlx::postgres::PgRow) -> Result<Message, ArchiveError> {
    let mut m = Message::new(
        row.try_get::<String, _>("usuario")?,
        row.try_get::<String, _>("mensaje")?,
        row.try_get::<String, _>("room")?,
    );
    m.id = row.try_get("id")?;
    m.hora = row.try_get("hora")?;
    m.ts_us = row.try_get("ts_us")?;
    Ok(m)
}

async fn connect(options: &PgConnectOptions) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(4)
        // Short: a request for history must fail fast when the database is down (the chat
        // goes on without it), and the archiver retries on its own schedule.
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(options.clone().disable_statement_logging())
        .await
}

async fn create_database(options: &PgConnectOptions) -> Result<(), ArchiveError> {
    let name = options
        .get_database()
        .ok_or_else(|| ArchiveError::Url("no database name".into()))?
        .to_owned();
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ArchiveError::InvalidArgument(format!(
            "database '{name}' does not exist; charla creates one only with a plain name \
             (letters, digits, '_'): create it yourself (createdb)"
        )));
    }
    let admin = options.clone().database("postgres");
    let mut conn = admin.connect().await?;
    tracing::info!("creating the archive database '{name}'");
    let created = sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await;
    match created {
        Ok(_) => Ok(()),
        // Someone else created it meanwhile: 42P04 duplicate_database, or 23505 when the two
        // CREATE DATABASE ran at the same moment (the catalog's unique index caught it).
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42P04") | Some("23505")) =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
