//! Cross-site request forgery: which requests may change something.
//!
//! A hostile page the user visits can make the browser send requests to this server,
//! with its session cookie where the cookie allows it. Two independent rules keep such
//! requests from changing anything ([`guard`], on every `/api` route):
//!
//! 1. **Content type.** `POST`, `PUT` and `PATCH` must declare `Content-Type:
//!    application/json` (an empty body included); the raw-body routes
//!    ([`RAW_BODY_ROUTES`]) take exactly `application/octet-stream`. A `DELETE` with a
//!    body must declare it the same way. A page can send neither type across sites
//!    without a CORS preflight, which this server never answers.
//! 2. **Origin.** The browser's `Origin` must be this server's own (the host the
//!    request was addressed to) or one of `[server] allowed_origins`; a `Sec-Fetch-Site`
//!    other than `same-origin` or `none` is refused unless the `Origin` is one of the
//!    configured ones. Requests that carry neither header do not come from a current
//!    browser (every one sends `Origin` on a `POST` and on a WebSocket upgrade): `curl`,
//!    scripts and tests pass, still bound by rule 1 and by the session cookie's
//!    `SameSite=Strict`. Requests signed in with an API token (`Authorization: Bearer`,
//!    which no browser attaches by itself) skip this rule, not rule 1.
//!
//! On a loopback address, [`Origins::check_host`] also refuses any `/api` request whose
//! `Host` is not a loopback name or a configured origin's host (DNS rebinding).
//!
//! [`Origins::check`] is the one decision "is this request from our own pages", used
//! by the middleware and by the language-server WebSocket upgrade.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;

/// Routes whose body is stored as it is, with the one content type they accept.
pub const RAW_BODY_ROUTES: [&str; 2] = ["/test-data", "/production-data"];
pub const RAW_BODY_TYPE: &str = "application/octet-stream";
pub const JSON_TYPE: &str = "application/json";

/// An origin as `(scheme, host, port)`, lower-case, with the scheme's default port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Parses `scheme://host[:port]` (an `Origin` header or a configured origin); `None`
/// for anything else, the opaque origin `null` included.
pub fn parse_origin(s: &str) -> Option<Origin> {
    let s = s.trim().trim_end_matches('/');
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (host, port) = split_host(rest, default)?;
    Some(Origin { scheme, host, port })
}

/// `host[:port]` (an authority without user info or path) into a lower-case host and port.
fn split_host(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal without a port, `[::1]`.
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (authority, None),
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
}

/// This server's origins: its own (whatever host a request names) and the configured ones.
#[derive(Debug, Default)]
pub struct Origins {
    allowed: Vec<Origin>,
    /// Listening on a loopback address: only loopback names (and configured origins'
    /// hosts) may appear in `Host`, against DNS rebinding.
    loopback: bool,
}

impl Origins {
    /// `allowed` are `[server] allowed_origins`, checked by the configuration already;
    /// an entry that does not parse is ignored. `listen` is the configured address.
    pub fn new(allowed: &[String], listen: std::net::SocketAddr) -> Origins {
        Origins {
            allowed: allowed.iter().filter_map(|o| parse_origin(o)).collect(),
            loopback: listen.ip().is_loopback(),
        }
    }

    /// Against DNS rebinding (a hostile name that resolves to 127.0.0.1, so its pages
    /// are "same-origin" with this server): on a loopback address, `Host` must be a
    /// loopback name or a configured origin's host. A request without `Host` passes.
    pub fn check_host(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
        if !self.loopback {
            return Ok(());
        }
        // HTTP/1.1 names the host in `Host`, HTTP/2 in the URI's authority.
        let host = match (headers.get(header::HOST), uri.authority()) {
            (Some(h), _) => h.to_str().unwrap_or("(not text)").to_string(),
            (None, Some(a)) => a.as_str().to_string(),
            (None, None) => return Ok(()),
        };
        let name = split_host(&host, 0).map(|(h, _)| h);
        let ok = name.as_deref().is_some_and(|h| {
            h == "localhost"
                || h.ends_with(".localhost")
                || h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
                || self.allowed.iter().any(|o| o.host == h)
        });
        if ok {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "this server listens on a loopback address and does not answer to the name `{}`; open it as \
             http://127.0.0.1 or http://localhost, or add the name's origin to `[server] allowed_origins`",
            host
        )))
    }

    fn configured(&self, origin: &str) -> bool {
        parse_origin(origin).is_some_and(|o| self.allowed.contains(&o))
    }

    /// Is `origin` ours: one of the configured origins, or the host the request was
    /// addressed to (`Host`, or the URI's authority under HTTP/2)?
    pub fn is_ours(&self, origin: &str, host: Option<&str>) -> bool {
        let Some(o) = parse_origin(origin) else {
            return false;
        };
        if self.allowed.contains(&o) {
            return true;
        }
        let default = if o.scheme == "https" { 443 } else { 80 };
        host.and_then(|h| split_host(h, default))
            .is_some_and(|(h, p)| h == o.host && p == o.port)
    }

    /// Refuses a request that a browser says comes from another site.
    pub fn check(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
        let origin = headers
            .get(header::ORIGIN)
            .map(|v| v.to_str().unwrap_or("(not text)"));
        let site = headers
            .get("sec-fetch-site")
            .map(|v| v.to_str().unwrap_or("(not text)"));
        if let Some(o) = origin {
            if self.configured(o) {
                return Ok(());
            }
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .or_else(|| uri.authority().map(|a| a.as_str()));
            if !self.is_ours(o, host) {
                return Err(refusal(&format!(
                    "this request comes from a page at `{o}`, not from this server's own pages"
                )));
            }
        }
        match site {
            None | Some("same-origin") | Some("none") => Ok(()),
            Some(s) => Err(refusal(&format!(
                "the browser says this request comes from another site (Sec-Fetch-Site: {s})"
            ))),
        }
    }
}

fn refusal(what: &str) -> ApiError {
    ApiError::Forbidden(format!(
        "{what}; pages of other sites may not change anything here. If you reach Scriptorium through a reverse proxy, \
         add its address to `[server] allowed_origins` (or SCRIPTORIUM_ALLOWED_ORIGINS); scripts and agents use an API token"
    ))
}

/// The content type a state-changing request must declare, if any.
fn required_type(method: &Method, path: &str, headers: &HeaderMap) -> Option<&'static str> {
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
        || headers.contains_key(header::CONTENT_TYPE);
    let raw = *method == Method::PUT && RAW_BODY_ROUTES.iter().any(|r| path.ends_with(r));
    match *method {
        Method::POST | Method::PUT | Method::PATCH => {
            Some(if raw { RAW_BODY_TYPE } else { JSON_TYPE })
        }
        Method::DELETE if has_body => Some(JSON_TYPE),
        _ => None,
    }
}

/// Rule 1: the declared content type, by its essence (`application/json; charset=utf-8` is JSON).
pub fn check_content_type(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(needed) = required_type(method, path, headers) else {
        return Ok(());
    };
    let declared = headers.get(header::CONTENT_TYPE).map(|v| {
        v.to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    match declared {
        Some(t) if t == needed => Ok(()),
        Some(t) => Err(ApiError::UnsupportedMediaType(format!(
            "{method} {path} was sent as `{t}`; send it with `Content-Type: {needed}`{}",
            if needed == JSON_TYPE {
                " (an empty body is fine where there is nothing to send)"
            } else {
                " (the body is stored as it is)"
            }
        ))),
        None => Err(ApiError::UnsupportedMediaType(format!(
            "{method} {path} has no content type; send it with `Content-Type: {needed}`{}",
            if needed == JSON_TYPE {
                " (an empty body is fine where there is nothing to send)"
            } else {
                ""
            }
        ))),
    }
}

/// Middleware on every `/api` route: rules 1 and 2 for requests that change something.
pub async fn guard(
    State(origins): State<Arc<Origins>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let method = req.method().clone();
    if let Err(e) = origins.check_host(req.headers(), req.uri()) {
        tracing::warn!(%method, host = ?req.headers().get(header::HOST), "refused a request for a foreign host name");
        return Err(e);
    }
    if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(next.run(req).await);
    }
    // Inside `nest("/api", …)` the URI is stripped; messages speak of full paths.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.path().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    // Signed in with a valid token (`authorize` ran first); a bearer header on an open
    // route such as the login proves nothing and does not exempt.
    let bearer = req
        .extensions()
        .get::<crate::auth::CurrentUser>()
        .is_some_and(|u| u.via_token);
    let verdict = check_content_type(&method, &path, req.headers()).and_then(|()| {
        if bearer {
            Ok(())
        } else {
            origins.check(req.headers(), req.uri())
        }
    });
    if let Err(e) = verdict {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::warn!(%method, %path, %origin, reason = %e, "refused a cross-site or mistyped request");
        return Err(e);
    }
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let o = Origins::new(
            &["https://proxy.example.org".into()],
            "127.0.0.1:8080".parse().unwrap(),
        );
        assert!(o.is_ours("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(o.is_ours("http://LOCALHOST", Some("localhost:80")));
        assert!(o.is_ours("http://[::1]:8080", Some("[::1]:8080")));
        assert!(o.is_ours("https://proxy.example.org:443", Some("127.0.0.1:8080")));
        assert!(!o.is_ours("http://127.0.0.1:8081", Some("127.0.0.1:8080")));
        assert!(!o.is_ours("https://127.0.0.1:8080", Some("127.0.0.1")));
        assert!(!o.is_ours("http://evil.example", Some("127.0.0.1:8080")));
        assert!(!o.is_ours("null", Some("127.0.0.1:8080")));
        assert!(!o.is_ours("http://127.0.0.1:8080", None));
        assert!(!o.is_ours("http://a@127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert_eq!(parse_origin("ftp://x"), None);
        assert_eq!(parse_origin("https://x/path"), None);
    }

    #[test]
    fn sec_fetch_site_decides_without_an_origin() {
        let o = Origins::default();
        let uri: Uri = "/api/scripts".parse().unwrap();
        assert!(o.check(&headers(&[]), &uri).is_ok());
        assert!(
            o.check(&headers(&[("sec-fetch-site", "same-origin")]), &uri)
                .is_ok()
        );
        assert!(
            o.check(&headers(&[("sec-fetch-site", "cross-site")]), &uri)
                .is_err()
        );
        assert!(
            o.check(&headers(&[("sec-fetch-site", "same-site")]), &uri)
                .is_err()
        );
        assert!(
            o.check(
                &headers(&[
                    ("origin", "http://h:1"),
                    ("host", "h:1"),
                    ("sec-fetch-site", "cross-site")
                ]),
                &uri
            )
            .is_err()
        );
    }

    #[test]
    fn on_loopback_only_loopback_names_and_configured_hosts_are_served() {
        let o = Origins::new(
            &["https://proxy.example.org".into()],
            "127.0.0.1:8080".parse().unwrap(),
        );
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "app.localhost",
            "proxy.example.org",
            "127.0.0.2",
        ] {
            assert!(
                o.check_host(&headers(&[("host", ok)]), &Uri::from_static("/"))
                    .is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
        ] {
            assert!(
                o.check_host(&headers(&[("host", bad)]), &Uri::from_static("/"))
                    .is_err(),
                "{bad}"
            );
        }
        assert!(o.check_host(&headers(&[]), &Uri::from_static("/")).is_ok());
        assert!(
            o.check_host(
                &headers(&[]),
                &Uri::from_static("http://evil.example:8080/api/scripts")
            )
            .is_err(),
            "HTTP/2 authority"
        );
        let public = Origins::new(&[], "0.0.0.0:8080".parse().unwrap());
        assert!(
            public
                .check_host(
                    &headers(&[("host", "scriptorium.lan:8080")]),
                    &Uri::from_static("/")
                )
                .is_ok()
        );
    }

    #[test]
    fn content_types_by_route_and_method() {
        let json = headers(&[("content-type", "Application/JSON; charset=utf-8")]);
        let raw = headers(&[("content-type", "application/octet-stream")]);
        let none = headers(&[]);
        assert!(check_content_type(&Method::POST, "/api/scripts", &json).is_ok());
        assert!(check_content_type(&Method::POST, "/api/scripts/1/publish", &none).is_err());
        assert!(check_content_type(&Method::PUT, "/api/scripts/1/test-data", &raw).is_ok());
        assert!(check_content_type(&Method::PUT, "/api/scripts/1/test-data", &json).is_err());
        assert!(check_content_type(&Method::PUT, "/api/scripts/1", &raw).is_err());
        assert!(check_content_type(&Method::DELETE, "/api/tokens/1", &none).is_ok());
        assert!(
            check_content_type(
                &Method::DELETE,
                "/api/tokens/1",
                &headers(&[("content-length", "3")])
            )
            .is_err()
        );
        assert!(check_content_type(&Method::GET, "/api/scripts", &none).is_ok());
    }
}
