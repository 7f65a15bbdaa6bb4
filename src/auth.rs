//! Access control for the dispatch console, the JSON API and the live alert feed: one shared
//! access token from `CITYPULSE_TOKEN`, presented either as `Authorization: Bearer <token>`
//! (API clients, the feed) or through the console's login form, which sets a session cookie.
//!
//! Sits in front of the protected routes of `http.rs` as a middleware. `/healthz`, `/readyz`,
//! `/metrics`, the login page and its stylesheet stay open (probes and Prometheus carry no
//! token). The cookie holds an HMAC of a fixed label keyed with the token, never the token
//! itself; both checks go through `hmac`'s constant-time `verify_slice`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The environment variable `run` and `demo` read the token from.
pub const TOKEN_ENV: &str = "CITYPULSE_TOKEN";
/// Shorter tokens are refused: the token is the only thing between the network and the API.
pub const MIN_TOKEN_BYTES: usize = 16;
/// The console's session cookie.
pub const COOKIE_NAME: &str = "citypulse_session";
/// A dispatcher's shift, plus margin: the cookie lapses after this and the form asks again.
const SESSION_MAX_AGE: cookie::time::Duration = cookie::time::Duration::hours(12);
/// What the session cookie is an HMAC of. Changing it logs every console out.
const SESSION_LABEL: &[u8] = b"citypulse console session v1";
/// A failed login waits this long before the answer, so guessing costs time (the token's
/// length already makes guessing hopeless; this keeps logs from filling at line rate).
const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(250);

const LOGIN_PAGE: &str = include_str!("console/login.html");

type HmacSha256 = Hmac<Sha256>;

/// Why no usable token was found.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("${var} is not set: the console, the API and the alert feed need an access token of at least {min} bytes")]
    Missing { var: String, min: usize },
    #[error("${var} is not valid UTF-8")]
    NotUnicode { var: String },
    #[error("${var} is {len} bytes long; the access token needs at least {min}")]
    TooShort { var: String, len: usize, min: usize },
}

/// The access token, and the session tag derived from it. Never printed (see `Debug`).
#[derive(Clone)]
pub struct AccessToken {
    token: Arc<[u8]>,
    /// HMAC-SHA256(key = token, SESSION_LABEL): the session cookie's value, and what a
    /// presented bearer token is checked against.
    session_tag: Arc<[u8]>,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

fn session_tag(key: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(SESSION_LABEL);
    mac
}

impl AccessToken {
    /// A token read from `var` (named in errors), surrounding whitespace removed.
    pub fn new(var: &str, token: &str) -> Result<AccessToken, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Missing {
                var: var.into(),
                min: MIN_TOKEN_BYTES,
            });
        }
        if token.len() < MIN_TOKEN_BYTES {
            return Err(TokenError::TooShort {
                var: var.into(),
                len: token.len(),
                min: MIN_TOKEN_BYTES,
            });
        }
        let session_tag = session_tag(token.as_bytes())
            .finalize()
            .into_bytes()
            .to_vec();
        Ok(AccessToken {
            token: token.as_bytes().into(),
            session_tag: session_tag.into(),
        })
    }

    /// The token in environment variable `var`.
    pub fn from_env(var: &str) -> Result<AccessToken, TokenError> {
        match std::env::var(var) {
            Ok(value) => AccessToken::new(var, &value),
            Err(std::env::VarError::NotPresent) => Err(TokenError::Missing {
                var: var.into(),
                min: MIN_TOKEN_BYTES,
            }),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(TokenError::NotUnicode { var: var.into() })
            }
        }
    }

    /// A fresh random token (192 bits, hex) for the demo, and its text to show the user.
    pub fn generate() -> (AccessToken, String) {
        let text = hex::encode(rand::random::<[u8; 24]>());
        let token = AccessToken::new("generated", &text).expect("48 hex digits are long enough");
        (token, text)
    }

    /// Is `presented` the token? Compared as HMAC tags in constant time, so neither the
    /// content nor the length of the real token leaks through timing.
    pub fn verify_token(&self, presented: &str) -> bool {
        session_tag(presented.trim().as_bytes())
            .verify_slice(&self.session_tag)
            .is_ok()
    }

    /// Is `value` (a cookie value, hex) this token's session tag? Constant time.
    pub fn verify_session(&self, value: &str) -> bool {
        let Ok(tag) = hex::decode(value) else {
            return false;
        };
        session_tag(&self.token).verify_slice(&tag).is_ok()
    }

    /// The session cookie a successful login sets.
    pub fn session_cookie(&self) -> Cookie<'static> {
        Cookie::build((COOKIE_NAME, hex::encode(&self.session_tag)))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path("/")
            .max_age(SESSION_MAX_AGE)
            .build()
    }

    /// Whether the request carries the token (bearer) or a valid session cookie.
    pub fn authorizes(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(|value| value.strip_prefix("Bearer "))
            .any(|token| self.verify_token(token));
        bearer
            || headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(Cookie::split_parse)
                .filter_map(Result::ok)
                .any(|c| c.name() == COOKIE_NAME && self.verify_session(c.value()))
    }
}

/// Middleware for the protected routes: pass with the token, otherwise 401 (JSON, with
/// `WWW-Authenticate`) — except the console page itself, which sends a browser to the form.
pub async fn require_token(
    State(token): State<AccessToken>,
    request: Request,
    next: Next,
) -> Response {
    if token.authorizes(request.headers()) {
        return next.run(request).await;
    }
    if request.method() == Method::GET && request.uri().path() == "/" {
        return Redirect::to("/login").into_response();
    }
    unauthorized()
}

fn unauthorized() -> Response {
    let body = serde_json::json!({
        "error": "unauthorized",
        "detail": format!("send `Authorization: Bearer <token>` (the value of ${TOKEN_ENV}) or log in at /login"),
    });
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"citypulse\""),
        )],
        Json(body),
    )
        .into_response()
}

/// The login page; `failed` shows its error line.
fn login_page_html(failed: bool) -> String {
    if failed {
        LOGIN_PAGE.replace("class=\"login-error\" hidden", "class=\"login-error\"")
    } else {
        LOGIN_PAGE.to_string()
    }
}

/// `GET /login`.
pub async fn login_page() -> Response {
    (crate::http::page_headers(), login_page_html(false)).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /login` (form field `token`): the session cookie and back to the console, or the form
/// again with an error.
pub async fn login(State(token): State<AccessToken>, Form(form): Form<LoginForm>) -> Response {
    if token.verify_token(&form.token) {
        tracing::info!("console login");
        let cookie = token.session_cookie().to_string();
        return match HeaderValue::from_str(&cookie) {
            Ok(cookie) => ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        };
    }
    tracing::warn!("console login with a wrong token");
    tokio::time::sleep(FAILED_LOGIN_DELAY).await;
    (
        StatusCode::UNAUTHORIZED,
        crate::http::page_headers(),
        login_page_html(true),
    )
        .into_response()
}

/// `POST /logout`: the cookie expires at once.
pub async fn logout() -> Response {
    let cookie = Cookie::build((COOKIE_NAME, ""))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string();
    match HeaderValue::from_str(&cookie) {
        Ok(cookie) => ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    #[test]
    fn short_missing_and_blank_tokens_are_refused_naming_the_variable() {
        assert_eq!(
            AccessToken::new("CITYPULSE_TOKEN", "short").unwrap_err(),
            TokenError::TooShort {
                var: "CITYPULSE_TOKEN".into(),
                len: 5,
                min: MIN_TOKEN_BYTES
            }
        );
        let blank = AccessToken::new("CITYPULSE_TOKEN", "   ").unwrap_err();
        assert!(blank.to_string().contains("$CITYPULSE_TOKEN is not set"));
        let missing = AccessToken::from_env("CITYPULSE_TEST_TOKEN_SURELY_UNSET").unwrap_err();
        assert!(missing
            .to_string()
            .contains("$CITYPULSE_TEST_TOKEN_SURELY_UNSET"));
    }

    #[test]
    fn only_the_exact_token_verifies() {
        let token = AccessToken::new("T", TOKEN).unwrap();
        assert!(token.verify_token(TOKEN));
        assert!(
            token.verify_token(&format!(" {TOKEN}\n")),
            "whitespace is trimmed"
        );
        assert!(!token.verify_token(&TOKEN[..TOKEN.len() - 1]), "a prefix");
        assert!(!token.verify_token(&format!("{TOKEN}x")), "an extension");
        assert!(
            !token.verify_token("0123456789abcdef-tokeN"),
            "last byte differs"
        );
        assert!(!token.verify_token(""));
    }

    #[test]
    fn the_session_cookie_is_not_the_token_and_verifies() {
        let token = AccessToken::new("T", TOKEN).unwrap();
        let cookie = token.session_cookie();
        assert_eq!(cookie.name(), COOKIE_NAME);
        assert!(!cookie.value().contains(TOKEN));
        assert!(token.verify_session(cookie.value()));
        assert!(!token.verify_session("00"), "wrong tag");
        assert!(!token.verify_session("not hex"));
        let other = AccessToken::new("T", "another-token-of-16").unwrap();
        assert!(!other.verify_session(cookie.value()), "tied to the token");
        let text = cookie.to_string();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
            assert!(text.contains(attribute), "{attribute} missing: {text}");
        }
    }

    #[test]
    fn requests_pass_with_bearer_or_cookie_only() {
        let token = AccessToken::new("T", TOKEN).unwrap();
        let mut headers = HeaderMap::new();
        assert!(!token.authorizes(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
        );
        assert!(token.authorizes(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer wrong-token-wrong-token"),
        );
        assert!(!token.authorizes(&headers));
        let session = token.session_cookie();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!(
                "theme=dark; {}={}",
                session.name(),
                session.value()
            ))
            .unwrap(),
        );
        assert!(
            token.authorizes(&headers),
            "a valid cookie beside a wrong bearer"
        );
        headers.remove(header::AUTHORIZATION);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE_NAME}={TOKEN}")).unwrap(),
        );
        assert!(
            !token.authorizes(&headers),
            "the raw token is not a session"
        );
    }

    #[test]
    fn debug_output_hides_the_token() {
        let token = AccessToken::new("T", TOKEN).unwrap();
        assert!(!format!("{token:?}").contains("0123"));
        let (generated, text) = AccessToken::generate();
        assert_eq!(text.len(), 48);
        assert!(generated.verify_token(&text));
    }
}
