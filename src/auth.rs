//! Users, sessions and the one place where access is decided.
//!
//! [`required_role`] maps every API route to the role it needs; the [`authorize`]
//! middleware applies it to every request before any handler runs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::UserConfig;
use crate::error::ApiError;
use scriptorium_actors::Committer;
use scriptorium_actors::domain::clock;

pub const COOKIE: &str = "scriptorium_session";
/// Personal API tokens start with this, so they are easy to recognise (and to scan for).
pub const TOKEN_PREFIX: &str = "scr_";

/// A personal API token as its owner sees it (never the token itself).
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    /// The first characters, to tell tokens apart.
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
}

/// The signed-in user, put into each authorised request's extensions.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(rename = "Me")]
pub struct CurrentUser {
    pub username: String,
    pub roles: Vec<Role>,
    #[serde(skip)]
    pub email: String,
    /// Signed in with a personal API token rather than the web session.
    #[serde(skip)]
    pub via_token: bool,
}

impl CurrentUser {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn committer(&self) -> Committer {
        Committer {
            username: self.username.clone(),
            email: self.email.clone(),
            branch: self.username.clone(),
        }
    }
}

/// What a route needs. `None`: open to anyone (only logging in and the health check).
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    match (method, path) {
        (&Method::POST, "/api/login") | (&Method::GET, "/api/health") => None,
        // Anyone signed in may sign out.
        (&Method::POST, "/api/logout") => Some(Role::Viewer),
        // Production data is for editors only, reading included.
        (_, p) if p.ends_with("/production-data") => Some(Role::Editor),
        // Everyone signed in manages their own API tokens.
        (_, p) if p == "/api/tokens" || p.starts_with("/api/tokens/") => Some(Role::Viewer),
        // Reading is for viewers (the language server socket is read-only for them).
        (&Method::GET | &Method::HEAD, _) => Some(Role::Viewer),
        // Everything that changes something is for editors.
        _ => Some(Role::Editor),
    }
}

pub struct Auth {
    users: HashMap<String, UserConfig>,
    sessions: Mutex<Connection>,
    session_centis: i64,
    /// Verified against for unknown users, so timing does not reveal who exists.
    dummy_hash: String,
    /// Failures per user name and address, and the bound on concurrent password checks.
    pub throttle: crate::throttle::LoginThrottle,
}

impl Auth {
    pub fn new(
        users: &[UserConfig],
        db_path: &Path,
        session_hours: u64,
    ) -> Result<Auth, rusqlite::Error> {
        let conn = scriptorium_actors::db::open_existing(db_path)?;
        Ok(Auth {
            users: users
                .iter()
                .map(|u| (u.username.clone(), u.clone()))
                .collect(),
            sessions: Mutex::new(conn),
            session_centis: session_hours as i64 * 3600 * 100,
            dummy_hash: users
                .first()
                .map(|u| u.password_hash.clone())
                .unwrap_or_default(),
            throttle: crate::throttle::LoginThrottle::new(
                crate::throttle::ThrottleConfig::default(),
            ),
        })
    }

    fn current(&self, u: &UserConfig) -> CurrentUser {
        CurrentUser {
            username: u.username.clone(),
            roles: u.roles.clone(),
            email: u
                .email
                .clone()
                .unwrap_or_else(|| format!("{}@scriptorium.local", u.username)),
            via_token: false,
        }
    }

    /// Creates a personal API token for `user`; the token is returned once, only its
    /// hash is kept.
    pub fn create_token(&self, user: &str, name: &str) -> Result<(ApiToken, String), ApiError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(ApiError::BadRequest(
                "give the token a name of 1–100 characters, e.g. `ci-nightly`".into(),
            ));
        }
        let mut raw = [0u8; 24];
        rand::rng().fill_bytes(&mut raw);
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(raw));
        let prefix: String = token.chars().take(TOKEN_PREFIX.len() + 6).collect();
        let now = clock::now();
        let conn = self.sessions.lock().expect("sessions lock");
        conn.execute(
            "INSERT INTO api_tokens (username, name, token_hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user, name, token_hash(&token), prefix, now],
        )?;
        let id = conn.last_insert_rowid();
        Ok((
            ApiToken {
                id,
                name: name.to_string(),
                prefix,
                created_at: clock::format(now),
                revoked_at: None,
            },
            token,
        ))
    }

    pub fn tokens(&self, user: &str) -> Result<Vec<ApiToken>, ApiError> {
        let conn = self.sessions.lock().expect("sessions lock");
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, prefix, created_at, revoked_at FROM api_tokens WHERE username = ?1 ORDER BY id DESC",
        )?;
        let rows = stmt
            .query_map([user], |r| {
                Ok(ApiToken {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    prefix: r.get(2)?,
                    created_at: clock::format(r.get(3)?),
                    revoked_at: r.get::<_, Option<i64>>(4)?.map(clock::format),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Revokes one of `user`'s tokens; false if it was not theirs or did not exist.
    pub fn revoke_token(&self, user: &str, id: i64) -> Result<bool, ApiError> {
        let conn = self.sessions.lock().expect("sessions lock");
        let n = conn.execute(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?3) WHERE id = ?1 AND username = ?2",
            params![id, user, clock::now()],
        )?;
        Ok(n == 1)
    }

    /// The user behind a live API token, with the roles configured for them now.
    pub fn token_user(&self, token: &str) -> Result<Option<CurrentUser>, ApiError> {
        let conn = self.sessions.lock().expect("sessions lock");
        let name: Option<String> = conn
            .query_row(
                "SELECT username FROM api_tokens WHERE token_hash = ?1 AND revoked_at IS NULL",
                [token_hash(token)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(name.and_then(|n| self.users.get(&n)).map(|u| CurrentUser {
            via_token: true,
            ..self.current(u)
        }))
    }

    /// Checks a password (slow on purpose: argon2) and opens a session.
    /// Returns the user and the session token for the cookie.
    pub fn login(&self, username: &str, password: &str) -> Result<(CurrentUser, String), ApiError> {
        let user = self.users.get(username);
        let hash = user
            .map(|u| u.password_hash.as_str())
            .unwrap_or(&self.dummy_hash);
        let ok = PasswordHash::new(hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        let user = match (ok, user) {
            (true, Some(u)) => u,
            _ => return Err(ApiError::Unauthorized("wrong user name or password".into())),
        };
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = hex::encode(raw);
        let now = clock::now();
        let conn = self.sessions.lock().expect("sessions lock");
        conn.execute("DELETE FROM sessions WHERE expires_at < ?1", [now])?;
        conn.execute(
            "INSERT INTO sessions (token_hash, username, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![token_hash(&token), user.username, now, now + self.session_centis],
        )?;
        Ok((self.current(user), token))
    }

    pub fn logout(&self, token: &str) -> Result<(), ApiError> {
        let conn = self.sessions.lock().expect("sessions lock");
        conn.execute(
            "DELETE FROM sessions WHERE token_hash = ?1",
            [token_hash(token)],
        )?;
        Ok(())
    }

    /// The user behind a session token, if the session is live and the user still exists.
    pub fn session_user(&self, token: &str) -> Result<Option<CurrentUser>, ApiError> {
        let conn = self.sessions.lock().expect("sessions lock");
        let name: Option<String> = conn
            .query_row(
                "SELECT username FROM sessions WHERE token_hash = ?1 AND expires_at > ?2",
                params![token_hash(token), clock::now()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(name
            .and_then(|n| self.users.get(&n))
            .map(|u| self.current(u)))
    }

    pub fn cookie(&self, token: &str) -> String {
        format!(
            "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            self.session_centis / 100
        )
    }
}

pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The session token from the request's cookie.
pub fn session_token(req_headers: &axum::http::HeaderMap) -> Option<String> {
    req_headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// Middleware on every `/api` route: who is asking, and may they?
pub async fn authorize(
    State(auth): State<Arc<Auth>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    // Inside `nest("/api", …)` the URI is stripped; the policy speaks of full paths.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.path().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let Some(needed) = required_role(req.method(), &path) else {
        return Ok(next.run(req).await);
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let user = match (bearer, session_token(req.headers())) {
        (Some(token), _) => {
            let auth = auth.clone();
            let user = tokio::task::spawn_blocking(move || auth.token_user(&token)).await??;
            if user.is_none() {
                return Err(ApiError::Unauthorized(
                    "the API token is unknown or revoked; create a new one in the UI".into(),
                ));
            }
            user
        }
        (None, Some(token)) => {
            let auth = auth.clone();
            tokio::task::spawn_blocking(move || auth.session_user(&token)).await??
        }
        (None, None) => None,
    };
    let Some(user) = user else {
        return Err(ApiError::Unauthorized(
            "sign in first: POST /api/login with your user name and password, or send `Authorization: Bearer <API token>`".into(),
        ));
    };
    if !user.has(needed) {
        return Err(ApiError::Forbidden(format!(
            "user `{}` does not have the {} role needed to {} {}",
            user.username,
            match needed {
                Role::Viewer => "viewer",
                Role::Editor => "editor",
            },
            req.method(),
            path
        )));
    }
    req.extensions_mut().insert(user);
    Ok(next.run(req).await)
}

/// Makes an argon2id PHC hash of a password, for `scriptorium.toml`.
pub fn hash_password(password: &str) -> String {
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_is_for_viewers_and_changing_for_editors() {
        assert_eq!(required_role(&Method::POST, "/api/login"), None);
        assert_eq!(
            required_role(&Method::GET, "/api/scripts"),
            Some(Role::Viewer)
        );
        assert_eq!(
            required_role(&Method::PUT, "/api/scripts/1"),
            Some(Role::Editor)
        );
        assert_eq!(
            required_role(&Method::POST, "/api/logout"),
            Some(Role::Viewer)
        );
        assert_eq!(
            required_role(&Method::DELETE, "/api/anything"),
            Some(Role::Editor)
        );
        assert_eq!(
            required_role(&Method::GET, "/api/scripts/1/production-data"),
            Some(Role::Editor)
        );
        assert_eq!(
            required_role(&Method::GET, "/api/runs/1/events"),
            Some(Role::Viewer)
        );
    }

    #[test]
    fn hashes_verify() {
        let h = hash_password("1editor");
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"1editor", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"2viewer", &parsed)
                .is_err()
        );
    }
}
