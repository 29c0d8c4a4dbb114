//! Security headers on every response, the built UI's and the API's alike.
//!
//! The app's Content-Security-Policy lets only the server's own files run as script
//! (no inline script, no `eval`); styles may be inline because Monaco writes `<style>`
//! elements for its themes and decorations. A response that sets its own policy (an
//! artifact: `sandbox; default-src 'none'`) keeps it.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The policy of the app's own pages and API answers.
///
/// - `script-src 'self'`: the bundled modules only; Monaco's editor worker is a bundled
///   file too (`worker-src 'self'`).
/// - `style-src 'unsafe-inline'`: Monaco injects `<style>` elements; style cannot run code.
/// - `img-src`/`connect-src` `blob:`: three.js decodes a GLB's embedded textures from blob URLs.
/// - `connect-src 'self'` covers the same host's `ws:`/`wss:` (the language server).
/// - `frame-ancestors 'none'`: no page may frame the app (clickjacking).
pub const APP_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self' blob:; worker-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers, keeping a `Content-Security-Policy` the handler set.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(APP_POLICY));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    res
}
