//! Who is chatting: guest nicknames, or HS256 JWTs when a secret is
//! configured. The same check serves STOMP's CONNECT and the REST API.

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use stomp_broker::store::is_invisible_char;
use stomp_broker::{Authenticator, ConnectRequest, Principal, Rejection};

/// The longest nickname, in characters.
pub(crate) const MAX_NICKNAME_CHARS: usize = 32;

/// How far a token's `exp` and `nbf` may be off, in seconds: clocks of
/// the issuer and of the server differ a little.
const LEEWAY_SECS: u64 = 30;

/// The claims a token must carry.
#[derive(Debug, Deserialize)]
struct Claims {
    /// The subject: who the token is for.
    sub: String,
    /// A display name; the subject when absent.
    name: Option<String>,
}

/// Who a valid token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    /// The `sub` claim: what limits per user are counted by.
    pub(crate) subject: String,
    /// The nickname: the `name` claim, or `sub`.
    pub(crate) name: String,
}

/// How identities are established.
#[derive(Clone)]
pub(crate) enum Identity {
    /// CONNECT's `login` is the nickname; REST is open.
    Guest,
    /// A valid token is required.
    Jwt(Box<(DecodingKey, Validation)>),
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Guest => "Guest",
            Self::Jwt(_) => "Jwt",
        })
    }
}

impl Identity {
    pub(crate) fn new(jwt_secret: Option<&str>) -> Self {
        match jwt_secret {
            None => Self::Guest,
            Some(secret) => {
                let mut validation = Validation::new(Algorithm::HS256);
                validation.set_required_spec_claims(&["exp", "sub"]);
                // A token issued for later is not valid yet (`nbf` is
                // optional; when present it is checked like `exp`).
                validation.validate_nbf = true;
                validation.leeway = LEEWAY_SECS;
                Self::Jwt(Box::new((DecodingKey::from_secret(secret.as_bytes()), validation)))
            }
        }
    }

    /// Whether tokens are required.
    pub(crate) fn requires_token(&self) -> bool {
        matches!(self, Self::Jwt(_))
    }

    /// Who a valid `token` stands for.
    pub(crate) fn verify(&self, token: &str) -> Result<Verified, String> {
        let Self::Jwt(jwt) = self else { return Err("no tokens are accepted".to_owned()) };
        let (key, validation) = &**jwt;
        let data = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|e| format!("invalid token: {e}"))?;
        let Claims { sub, name } = data.claims;
        let name = name.unwrap_or_else(|| sub.clone());
        check_nickname(&name).map_err(|e| format!("invalid token: {e}"))?;
        Ok(Verified { subject: sub, name })
    }
}

/// Checks a nickname: 1 to 32 characters, not blank, no control or
/// invisible characters (zero-width, bidirectional controls...: a name
/// with them can pass for someone else's).
pub(crate) fn check_nickname(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the nickname is empty".to_owned());
    }
    if name.chars().count() > MAX_NICKNAME_CHARS {
        return Err(format!("the nickname is longer than {MAX_NICKNAME_CHARS} characters"));
    }
    if let Some(c) = name.chars().find(|&c| is_invisible_char(c)) {
        return Err(format!(
            "the nickname contains a control or invisible character (U+{:04X})",
            u32::from(c)
        ));
    }
    Ok(())
}

/// The token of an `Authorization: Bearer ...` value.
pub(crate) fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[async_trait]
impl Authenticator for Identity {
    async fn authenticate(&self, request: &ConnectRequest<'_>) -> Result<Principal, Rejection> {
        match self {
            Self::Guest => {
                let login = request.login.unwrap_or_default();
                if login.is_empty() {
                    return Ok(Principal::new(format!("guest-{}", request.session_id)));
                }
                check_nickname(login).map_err(|e| {
                    Rejection::new(format!("invalid login: {e}"))
                        .with_detail("In guest mode the login header is your nickname.")
                })?;
                Ok(Principal::new(login))
            }
            Self::Jwt(_) => {
                let token = request
                    .passcode
                    .filter(|p| !p.is_empty())
                    .or_else(|| request.frame.header("Authorization").and_then(bearer))
                    .ok_or_else(|| {
                        Rejection::new("invalid token: none given").with_detail(
                            "This server requires an HS256 JWT as the passcode header or as \
                             Authorization: Bearer <token>.",
                        )
                    })?;
                let verified = self.verify(token).map_err(Rejection::new)?;
                Ok(Principal::new(verified.name))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_are_checked() {
        assert!(check_nickname("alice").is_ok());
        assert!(check_nickname("민수 🎉").is_ok());
        assert!(check_nickname(" ").is_err());
        assert!(check_nickname("a\nb").is_err());
        for invisible in ["gen\u{200B}eral", "a\u{202E}b", "\u{FEFF}x", "soft\u{AD}", "\u{3164}"] {
            assert!(check_nickname(invisible).is_err(), "{invisible:?}");
        }
        assert!(check_nickname(&"x".repeat(33)).is_err());
    }

    #[test]
    fn bearer_values_are_parsed() {
        assert_eq!(bearer(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer(b"bearer  abc "), Some("abc"));
        assert_eq!(bearer(b"Basic abc"), None);
    }
}
