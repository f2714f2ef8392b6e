//! Who is on the other end: `charla web --auth none|password|jwt|proxy`.
//!
//! - `none` (the default): anyone picks a name; the gateway only keeps a name online in a room
//!   for the client that has it ([`Names`]: another client asking for it is refused), and on a
//!   non-loopback bind the page says names are not verified.
//! - `password`: a site password, or one per room (`--auth-password-file`), proves that a client
//!   may come in; it does not say who is who, so names are held as in `none`.
//! - `jwt`: a token signed with HS256 (`--jwt-secret-file`) or RS256 (`--jwt-public-key-file`):
//!   its `sub` is the name, its optional `rooms` (or Centrifugo's `channels`) the rooms it may
//!   use, its `exp` (when present) is checked.
//! - `proxy`: a reverse proxy that authenticated the user says who in a header
//!   (`--auth-header`, `X-Forwarded-User` by default), believed only from `--trusted-proxy`.
//!
//! Under `jwt` and `proxy` every name is an identity that was proved: nobody can take another's,
//! one identity may have several pages, and its messages carry `verificado: true`.
//!
//! Where a credential comes from: `?token=` on `/ws` (browsers cannot set headers on a
//! WebSocket), `Authorization: Bearer …` or `Basic …` (the password part), or
//! `X-Charla-Password` on the API. Passwords are compared in constant time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use subtle::ConstantTimeEq;

use charla_i18n::Said;

use crate::client::{Client, ClientKey};

/// How clients are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    None,
    Password,
    Jwt,
    Proxy,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Password => "password",
            Mode::Jwt => "jwt",
            Mode::Proxy => "proxy",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "none" => Ok(Mode::None),
            "password" => Ok(Mode::Password),
            "jwt" => Ok(Mode::Jwt),
            "proxy" => Ok(Mode::Proxy),
            _ => Err(format!("'{s}': use none, password, jwt or proxy")),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The header a reverse proxy names its authenticated user in, by default.
pub const DEFAULT_AUTH_HEADER: &str = "X-Forwarded-User";

/// The API's own header for a password (besides `Authorization`).
pub const PASSWORD_HEADER: &str = "x-charla-password";

/// Why an authenticator cannot be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password file: {0}")]
    Passwords(String),
    #[error("JWT key: {0}")]
    Key(String),
    #[error("--auth-header: {0}")]
    Header(String),
}

/// The passwords of `--auth password`.
#[derive(Clone, Default)]
struct Passwords {
    /// For every room without its own.
    site: Option<Vec<u8>>,
    rooms: HashMap<String, Vec<u8>>,
}

impl Passwords {
    /// One per line: `room:password` for a room (a room name before the first `:`), `*:password`
    /// or a line without such a prefix for the site. Blank lines and `#` comments are skipped.
    fn parse(text: &str) -> Result<Passwords, AuthError> {
        let mut passwords = Passwords::default();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some(("*", password)) => passwords.site = Some(password.as_bytes().to_vec()),
                Some((room, password)) if charla_chat::check_room(room).is_ok() => {
                    passwords
                        .rooms
                        .insert(room.to_owned(), password.as_bytes().to_vec());
                }
                _ => passwords.site = Some(line.as_bytes().to_vec()),
            }
        }
        if passwords.site.is_none() && passwords.rooms.is_empty() {
            return Err(AuthError::Passwords("no password in it".into()));
        }
        if passwords
            .site
            .iter()
            .chain(passwords.rooms.values())
            .any(Vec::is_empty)
        {
            return Err(AuthError::Passwords("an empty password".into()));
        }
        Ok(passwords)
    }

    /// Whether `given` opens `room` (its own password, else the site's; rooms with neither
    /// are closed); without a room, whether it is any password of the gateway.
    fn opens(&self, room: Option<&str>, given: &[u8]) -> bool {
        let same = |want: &Vec<u8>| bool::from(want.as_slice().ct_eq(given));
        match room {
            Some(room) => match self.rooms.get(room).or(self.site.as_ref()) {
                Some(want) => same(want),
                None => false,
            },
            // Every password is compared, so the time does not say which one matched.
            None => self
                .site
                .iter()
                .chain(self.rooms.values())
                .fold(false, |any, want| any | same(want)),
        }
    }
}

/// What `--auth` checks, built once at start.
#[derive(Clone, Default)]
pub struct Auth {
    mode: Mode,
    passwords: Passwords,
    jwt: Option<(jsonwebtoken::DecodingKey, jsonwebtoken::Validation)>,
    header: Option<HeaderName>,
}

impl std::fmt::Debug for Auth {
    // Never the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("mode", &self.mode).finish()
    }
}

/// A token's claims charla reads (Centrifugo's names: `sub`, `channels`, and ours, `rooms`).
#[derive(Debug, serde::Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    rooms: Option<Vec<String>>,
    #[serde(default)]
    channels: Option<Vec<String>>,
}

impl Auth {
    /// `--auth password`: the password file's text.
    pub fn password(text: &str) -> Result<Auth, AuthError> {
        Ok(Auth {
            mode: Mode::Password,
            passwords: Passwords::parse(text)?,
            ..Auth::default()
        })
    }

    /// `--auth jwt` with a shared HS256 secret.
    pub fn jwt_hs256(secret: &[u8]) -> Result<Auth, AuthError> {
        if secret.len() < 16 {
            return Err(AuthError::Key(
                "the HS256 secret is shorter than 16 bytes: anyone could guess it".into(),
            ));
        }
        Ok(Auth::jwt(
            jsonwebtoken::DecodingKey::from_secret(secret),
            jsonwebtoken::Algorithm::HS256,
        ))
    }

    /// `--auth jwt` with an RS256 public key (PEM).
    pub fn jwt_rs256(pem: &[u8]) -> Result<Auth, AuthError> {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(pem)
            .map_err(|e| AuthError::Key(format!("not an RSA public key in PEM: {e}")))?;
        Ok(Auth::jwt(key, jsonwebtoken::Algorithm::RS256))
    }

    fn jwt(key: jsonwebtoken::DecodingKey, algorithm: jsonwebtoken::Algorithm) -> Auth {
        // Only the one algorithm (no "none", no HS256 signed with the RSA public key);
        // `exp` checked when present (Centrifugo's tokens may have none), `aud` not used.
        let mut validation = jsonwebtoken::Validation::new(algorithm);
        validation.set_required_spec_claims(&["sub"]);
        validation.validate_aud = false;
        validation.leeway = 30;
        Auth {
            mode: Mode::Jwt,
            jwt: Some((key, validation)),
            ..Auth::default()
        }
    }

    /// `--auth proxy`: the header the proxy names its user in.
    pub fn proxy(header: &str) -> Result<Auth, AuthError> {
        let name = HeaderName::try_from(header)
            .map_err(|_| AuthError::Header(format!("'{header}' is not a header name")))?;
        Ok(Auth {
            mode: Mode::Proxy,
            header: Some(name),
            ..Auth::default()
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether names are proved (their messages marked `verificado`).
    pub fn verifies_names(&self) -> bool {
        matches!(self.mode, Mode::Jwt | Mode::Proxy)
    }

    /// Whether `client` may use `room` (`None`: no room in particular, such as the room
    /// list), and who it proved to be, if this mode proves names. `token`: `?token=`.
    pub fn admit(
        &self,
        client: &Client,
        headers: &HeaderMap,
        token: Option<&str>,
        room: Option<&str>,
        max_name_chars: usize,
    ) -> Result<Option<Identity>, Refusal> {
        match self.mode {
            Mode::None => Ok(None),
            Mode::Password => {
                let given = credential(headers, token)
                    .ok_or_else(|| Refusal::Unauthorized(Said::new("gw-password-needed")))?;
                if self.passwords.opens(room, given.as_bytes()) {
                    Ok(None)
                } else {
                    Err(Refusal::Unauthorized(match room {
                        Some(room) => Said::new("gw-password-wrong-room").arg("room", room),
                        None => Said::new("gw-password-wrong"),
                    }))
                }
            }
            Mode::Jwt => {
                let token = credential(headers, token)
                    .ok_or_else(|| Refusal::Unauthorized(Said::new("gw-token-needed")))?;
                let identity = self.verify_token(&token, max_name_chars)?;
                identity.check_room(room)?;
                Ok(Some(identity))
            }
            Mode::Proxy => {
                let refused = |id: &'static str| Refusal::Forbidden(Said::new(id));
                if !client.via_trusted_proxy {
                    return Err(refused("gw-proxy-only"));
                }
                let header = self
                    .header
                    .as_ref()
                    .ok_or_else(|| refused("gw-proxy-silent"))?;
                let user = headers
                    .get(header)
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| refused("gw-proxy-silent"))?;
                let name = charla_chat::check_name(user, max_name_chars).map_err(|e| {
                    Refusal::Forbidden(Said::new("gw-proxy-user").arg_said("reason", e.said()))
                })?;
                Ok(Some(Identity { name, rooms: None }))
            }
        }
    }

    /// A token's identity, if its signature, algorithm and expiry hold.
    fn verify_token(&self, token: &str, max_name_chars: usize) -> Result<Identity, Refusal> {
        let Some((key, validation)) = &self.jwt else {
            return Err(Refusal::Unauthorized(Said::new("gw-token-no-key")));
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            Refusal::Unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => Said::new("gw-token-expired"),
                ErrorKind::InvalidSignature => Said::new("gw-token-signature"),
                ErrorKind::InvalidAlgorithm => Said::new("gw-token-algorithm"),
                // The library's own words, as technical detail.
                _ => Said::new("gw-token-invalid").arg("detail", e),
            })
        })?;
        let claims = data.claims;
        let name = charla_chat::check_name(&claims.sub, max_name_chars).map_err(|e| {
            Refusal::Forbidden(Said::new("gw-token-sub").arg_said("reason", e.said()))
        })?;
        let rooms = match (claims.rooms, claims.channels) {
            (None, None) => None,
            (a, b) => Some(a.into_iter().chain(b).flatten().collect()),
        };
        Ok(Identity { name, rooms })
    }
}

/// Who a client proved to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The name (a token's `sub`, the proxy's user), checked as any name.
    pub name: String,
    /// The rooms it may use; `None`: any.
    rooms: Option<Vec<String>>,
}

impl Identity {
    fn check_room(&self, room: Option<&str>) -> Result<(), Refusal> {
        match (room, &self.rooms) {
            (Some(room), Some(rooms)) if !rooms.iter().any(|r| r == room) => Err(
                Refusal::Forbidden(Said::new("gw-token-room").arg("room", room)),
            ),
            _ => Ok(()),
        }
    }
}

/// A request refused by [`Auth::admit`] or [`Names`], with its reason not yet in a language
/// (each page or client reads it in its own: [`crate::language`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credential, or a wrong one (401).
    Unauthorized(Said),
    /// A credential that does not open this (403), or a name someone else holds.
    Forbidden(Said),
    /// Not a name at all (400).
    Invalid(Said),
}

impl From<charla_chat::Refusal> for Refusal {
    /// A chat rule's refusal (a name that is not a name): 400.
    fn from(rule: charla_chat::Refusal) -> Refusal {
        Refusal::Invalid(rule.said())
    }
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
        }
    }

    pub fn reason(&self) -> &Said {
        match self {
            Refusal::Unauthorized(r) | Refusal::Forbidden(r) | Refusal::Invalid(r) => r,
        }
    }
}

/// The credential a request carries: `?token=`, `Authorization: Bearer`, `Authorization:
/// Basic` (its password part), or [`PASSWORD_HEADER`].
pub fn credential(headers: &HeaderMap, token: Option<&str>) -> Option<String> {
    use base64::Engine;
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        return Some(t.to_owned());
    }
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(rest.trim().to_owned());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            return text
                .split_once(':')
                .map(|(_, password)| password.to_owned());
        }
    }
    headers
        .get(PASSWORD_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// How long a name stays with its client after its last page left (a reload, a dropped
/// connection coming back): as long as presence takes to see someone gone.
const NAME_GRACE: Duration = charla_core::presence::EXPIRY;

/// Most names held at once beyond those with a page open (the rest are let go as they expire).
const MAX_NAMES: usize = 100_000;

/// Which client has each name in each room on this gateway, for `none` and `password` (where
/// names are not proved): the first client to take a name keeps it while it has a page in the
/// room, and a little after; others are refused it. The same client (address) may open
/// several pages with it.
///
/// The table is keyed by a keyed hash of (room, name) rather than the two strings: a gateway
/// holds one entry per page's name, and the strings (twice, in the table and in each page's
/// hold) cost most of a KiB a page in `bench/web_fanout.sh`. Two names sharing a 64-bit
/// SipHash with this process's random keys is not a risk anyone can aim at.
#[derive(Default)]
pub struct Names {
    held: Mutex<HashMap<u64, Holder>>,
    hasher: std::collections::hash_map::RandomState,
}

struct Holder {
    client: ClientKey,
    pages: usize,
    /// When its last page left.
    left: Option<Instant>,
}

impl Holder {
    fn current(&self, now: Instant) -> bool {
        self.pages > 0
            || self
                .left
                .is_some_and(|t| now.duration_since(t) < NAME_GRACE)
    }
}

/// A page's hold on its name; let go when dropped.
pub struct NameHold {
    names: Arc<Names>,
    key: u64,
}

impl Drop for NameHold {
    fn drop(&mut self) {
        let mut held = self.names.lock();
        if let Some(h) = held.get_mut(&self.key) {
            h.pages = h.pages.saturating_sub(1);
            if h.pages == 0 {
                h.left = Some(Instant::now());
            }
        }
    }
}

impl Names {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Holder>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(&self, room: &str, name: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one((room, name))
    }

    /// Whether `client` may use `name` in `room` now. `online`: presence shows the name in
    /// the room (from this gateway or another, or a terminal chat).
    pub fn check(
        &self,
        room: &str,
        name: &str,
        client: &ClientKey,
        online: bool,
    ) -> Result<(), Refusal> {
        let held = self.lock();
        let key = self.key(room, name);
        Names::verdict(&held, key, room, name, client, online, Instant::now())
    }

    fn verdict(
        held: &HashMap<u64, Holder>,
        key: u64,
        room: &str,
        name: &str,
        client: &ClientKey,
        online: bool,
        now: Instant,
    ) -> Result<(), Refusal> {
        let taken = || {
            Refusal::Forbidden(
                Said::new("gw-name-held")
                    .arg("name", charla_core::visible(name))
                    .arg("room", room),
            )
        };
        match held.get(&key) {
            Some(h) if h.current(now) => {
                if &h.client == client {
                    Ok(())
                } else {
                    Err(taken())
                }
            }
            _ if online => Err(taken()),
            _ => Ok(()),
        }
    }

    /// Take `name` in `room` for a page of `client`, as [`Names::check`] allows.
    pub fn hold(
        self: &Arc<Self>,
        room: &str,
        name: &str,
        client: &ClientKey,
        online: bool,
    ) -> Result<NameHold, Refusal> {
        let now = Instant::now();
        let key = self.key(room, name);
        let mut held = self.lock();
        Names::verdict(&held, key, room, name, client, online, now)?;
        if held.len() >= MAX_NAMES {
            held.retain(|_, h| h.current(now));
            if held.len() >= MAX_NAMES {
                return Err(Refusal::Forbidden(Said::new("gw-names-full")));
            }
        }
        let holder = held.entry(key).or_insert(Holder {
            client: client.clone(),
            pages: 0,
            left: None,
        });
        if !holder.current(now) {
            holder.client = client.clone();
        }
        holder.pages += 1;
        holder.left = None;
        Ok(NameHold {
            names: self.clone(),
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    const SECRET: &[u8] = b"a secret of more than sixteen bytes";

    fn client(trusted: bool) -> Client {
        Client {
            ip: IpAddr::from([127, 0, 0, 1]),
            via_trusted_proxy: trusted,
        }
    }

    fn token(claims: serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .expect("encode")
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    }

    #[test]
    fn passwords_per_site_and_room() {
        let auth =
            Auth::password("# the workshop\nsecreto\nprofes:otra:con:dos-puntos\n").expect("parse");
        let c = client(false);
        let h = HeaderMap::new();
        let admit = |t: &str, room| auth.admit(&c, &h, Some(t), room, 32);
        assert_eq!(admit("secreto", Some("general")), Ok(None));
        assert!(admit("secret", Some("general")).is_err());
        assert_eq!(admit("otra:con:dos-puntos", Some("profes")), Ok(None));
        assert!(
            admit("secreto", Some("profes")).is_err(),
            "a room's own password only"
        );
        assert_eq!(
            admit("otra:con:dos-puntos", None),
            Ok(None),
            "any password for the list"
        );
        assert_eq!(
            auth.admit(&c, &h, None, Some("general"), 32)
                .map_err(|r| r.status()),
            Err(StatusCode::UNAUTHORIZED)
        );
        // Rooms without a password of their own are closed when there is no site password.
        let rooms_only = Auth::password("a:1\n").expect("parse");
        assert!(rooms_only.admit(&c, &h, Some("1"), Some("b"), 32).is_err());
        assert!(Auth::password("\n# nothing\n").is_err());
    }

    #[test]
    fn credentials_from_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc.def".parse().expect("v"));
        assert_eq!(credential(&h, None).as_deref(), Some("abc.def"));
        assert_eq!(credential(&h, Some("q")).as_deref(), Some("q"));
        // "ana:secreto"
        h.insert(
            header::AUTHORIZATION,
            "Basic YW5hOnNlY3JldG8=".parse().expect("v"),
        );
        assert_eq!(credential(&h, None).as_deref(), Some("secreto"));
        let mut h = HeaderMap::new();
        h.insert(PASSWORD_HEADER, "pw".parse().expect("v"));
        assert_eq!(credential(&h, None).as_deref(), Some("pw"));
        assert_eq!(credential(&HeaderMap::new(), None), None);
    }

    #[test]
    fn tokens_fix_the_name_and_the_rooms() {
        let auth = Auth::jwt_hs256(SECRET).expect("key");
        let c = client(false);
        let h = HeaderMap::new();
        let good = token(
            serde_json::json!({"sub": "Vic", "exp": now() + 600, "rooms": ["general"]}),
            SECRET,
        );
        let who = auth
            .admit(&c, &h, Some(&good), Some("general"), 32)
            .expect("admitted");
        assert_eq!(who.map(|i| i.name).as_deref(), Some("Vic"));
        let other_room = auth.admit(&c, &h, Some(&good), Some("profes"), 32);
        assert_eq!(
            other_room.map_err(|r| r.status()),
            Err(StatusCode::FORBIDDEN)
        );
        // Centrifugo's `channels`; no rooms claim: every room.
        let channels = token(serde_json::json!({"sub": "Ana", "channels": ["b"]}), SECRET);
        assert!(auth.admit(&c, &h, Some(&channels), Some("b"), 32).is_ok());
        assert!(auth.admit(&c, &h, Some(&channels), Some("c"), 32).is_err());
        let any = token(serde_json::json!({"sub": "Ana"}), SECRET);
        assert!(auth.admit(&c, &h, Some(&any), Some("c"), 32).is_ok());
        // Expired, forged, or a name that is not a name.
        let expired = token(
            serde_json::json!({"sub": "Vic", "exp": now() - 3600}),
            SECRET,
        );
        let why = auth
            .admit(&c, &h, Some(&expired), None, 32)
            .expect_err("expired");
        assert!(why.reason().to_string().contains("expired"), "{why:?}");
        let forged = token(
            serde_json::json!({"sub": "Vic"}),
            b"another secret, also long enough",
        );
        let why = auth
            .admit(&c, &h, Some(&forged), None, 32)
            .expect_err("forged");
        assert!(why.reason().to_string().contains("signature"), "{why:?}");
        let bidi = token(serde_json::json!({"sub": "\u{202E}ciV"}), SECRET);
        assert!(auth.admit(&c, &h, Some(&bidi), None, 32).is_err());
        assert!(auth.admit(&c, &h, Some("garbage"), None, 32).is_err());
        assert!(auth.admit(&c, &h, None, None, 32).is_err());
        assert!(Auth::jwt_hs256(b"short").is_err());
    }

    #[test]
    fn rs256_tokens_and_no_algorithm_confusion() {
        let private = include_bytes!("../testdata/jwt-rs256.pem");
        let public = include_bytes!("../testdata/jwt-rs256.pub");
        let auth = Auth::jwt_rs256(public).expect("key");
        let signed = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &serde_json::json!({"sub": "Vic"}),
            &jsonwebtoken::EncodingKey::from_rsa_pem(private).expect("private key"),
        )
        .expect("encode");
        let c = client(false);
        let h = HeaderMap::new();
        assert!(auth.admit(&c, &h, Some(&signed), None, 32).is_ok());
        // HS256 "signed" with the public key as the secret: refused.
        let confused = token(serde_json::json!({"sub": "Vic"}), public);
        assert!(auth.admit(&c, &h, Some(&confused), None, 32).is_err());
        assert!(Auth::jwt_rs256(b"not a key").is_err());
    }

    #[test]
    fn the_proxy_header_only_from_a_trusted_proxy() {
        let auth = Auth::proxy(DEFAULT_AUTH_HEADER).expect("header");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-user", "Vic".parse().expect("v"));
        let who = auth
            .admit(&client(true), &h, None, Some("r"), 32)
            .expect("trusted");
        assert_eq!(who.map(|i| i.name).as_deref(), Some("Vic"));
        assert!(auth.admit(&client(false), &h, None, Some("r"), 32).is_err());
        assert!(auth
            .admit(&client(true), &HeaderMap::new(), None, None, 32)
            .is_err());
    }

    #[test]
    fn a_name_stays_with_its_client() {
        let names = Arc::new(Names::default());
        let ana = ClientKey::of_ip(IpAddr::from([10, 0, 0, 1]));
        let eve = ClientKey::of_ip(IpAddr::from([10, 0, 0, 2]));
        let first = names.hold("r", "Vic", &ana, false).expect("free");
        let second = names
            .hold("r", "Vic", &ana, true)
            .expect("the same client, another page");
        assert!(names.hold("r", "Vic", &eve, true).is_err());
        assert!(names.check("r", "Vic", &eve, true).is_err());
        assert!(
            names.check("other", "Vic", &eve, false).is_ok(),
            "another room"
        );
        drop((first, second));
        // Just left: still the holder's for a grace period.
        assert!(names.check("r", "Vic", &eve, false).is_err());
        assert!(names.check("r", "Vic", &ana, false).is_ok());
        // Online through another gateway or a terminal chat: nobody here takes it.
        assert!(names.check("r", "Ana", &eve, true).is_err());
    }
}
