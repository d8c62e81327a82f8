//! Bearer-token authentication. Tokens come only from the environment
//! (`SHOPSCRIBE_API_TOKENS="NAME:SCOPE:TOKEN,..."`, scope `read` or `write`; write includes
//! read). Only BLAKE3 hashes of the tokens are kept, and a presented token is hashed and compared
//! with every known hash in constant time (`blake3::Hash` equality is constant-time), without
//! stopping at the first match, so neither the comparison nor the search leaks timing.

use super::error::ApiError;
use axum::http::{HeaderMap, StatusCode, header};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
}

/// The authenticated caller: the token's name (for limits and logs, never the token) and scope.
#[derive(Debug, Clone)]
pub struct Client {
    pub name: String,
    pub scope: Scope,
}

impl Client {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scope >= scope {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token `{}` has the {} scope; this needs {}",
                    self.name,
                    self.scope.as_str(),
                    scope.as_str()
                ),
            ))
        }
    }
}

pub struct Auth {
    tokens: Vec<(blake3::Hash, Client)>,
}

impl std::fmt::Debug for Auth {
    /// Names and scopes only: not even the hashes of the tokens go to logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tokens.iter().map(|(_, c)| c))
            .finish()
    }
}

/// The environment variable holding the tokens.
pub const TOKENS_ENV: &str = "SHOPSCRIBE_API_TOKENS";

/// Why `$SHOPSCRIBE_API_TOKENS` cannot be used; entries are counted from 1.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TokensError {
    /// An entry is not `NAME:SCOPE:TOKEN`.
    #[error("${}: entry {entry} is not NAME:SCOPE:TOKEN", TOKENS_ENV)]
    Malformed { entry: usize },
    /// An entry's scope is neither `read` nor `write`.
    #[error(
        "${}: entry {entry} (`{name}`) has scope `{scope}`; use read or write",
        TOKENS_ENV
    )]
    Scope {
        entry: usize,
        name: String,
        scope: String,
    },
    /// A token too short to be a random secret.
    #[error(
        "${}: the token of `{name}` is shorter than 16 characters; use a random one (openssl rand -hex 32)",
        TOKENS_ENV
    )]
    Short { name: String },
    /// No token at all.
    #[error(
        "${} is empty: the API needs at least one token, e.g. {}=\"admin:write:$(openssl rand -hex 32)\"",
        TOKENS_ENV,
        TOKENS_ENV
    )]
    Empty,
}

impl Auth {
    /// Parses `NAME:SCOPE:TOKEN` entries separated by commas or whitespace.
    pub fn parse(spec: &str) -> Result<Auth, TokensError> {
        let mut tokens = Vec::new();
        for (i, entry) in spec
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(scope), Some(token)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(TokensError::Malformed { entry: i + 1 });
            };
            let scope = match scope {
                "read" => Scope::Read,
                "write" => Scope::Write,
                other => {
                    return Err(TokensError::Scope {
                        entry: i + 1,
                        name: name.to_string(),
                        scope: other.to_string(),
                    });
                }
            };
            if token.len() < 16 {
                return Err(TokensError::Short {
                    name: name.to_string(),
                });
            }
            tokens.push((
                blake3::hash(token.as_bytes()),
                Client {
                    name: name.to_string(),
                    scope,
                },
            ));
        }
        if tokens.is_empty() {
            return Err(TokensError::Empty);
        }
        Ok(Auth { tokens })
    }

    pub fn from_env() -> Result<Auth, TokensError> {
        Auth::parse(&std::env::var(TOKENS_ENV).unwrap_or_default())
    }

    /// The client behind the request's `Authorization: Bearer` header.
    pub fn check(&self, headers: &HeaderMap) -> Result<Client, ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing `Authorization: Bearer TOKEN` header"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header is not `Bearer TOKEN`"))?;
        let presented = blake3::hash(token.as_bytes());
        let mut found = None;
        for (hash, client) in &self.tokens {
            if *hash == presented {
                found = Some(client);
            }
        }
        found.cloned().ok_or_else(|| unauthorized("unknown token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tokens_and_checks_scopes() {
        let auth =
            Auth::parse("ci:write:0123456789abcdef0123, dash:read:fedcba9876543210fedc").unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(auth.check(&h).unwrap_err().status, StatusCode::UNAUTHORIZED);
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert_eq!(auth.check(&h).unwrap_err().code, "unauthorized");
        h.insert(
            header::AUTHORIZATION,
            "Bearer fedcba9876543210fedc".parse().unwrap(),
        );
        let c = auth.check(&h).unwrap();
        assert_eq!((c.name.as_str(), c.scope), ("dash", Scope::Read));
        assert!(c.require(Scope::Read).is_ok());
        assert_eq!(
            c.require(Scope::Write).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        h.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcdef0123".parse().unwrap(),
        );
        assert!(auth.check(&h).unwrap().require(Scope::Write).is_ok());
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(
            Auth::parse("")
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
        assert!(
            Auth::parse("a:admin:0123456789abcdef0123")
                .unwrap_err()
                .to_string()
                .contains("scope")
        );
        assert!(
            Auth::parse("a:read:short")
                .unwrap_err()
                .to_string()
                .contains("16")
        );
        assert!(
            Auth::parse("justatoken")
                .unwrap_err()
                .to_string()
                .contains("NAME:SCOPE:TOKEN")
        );
    }
}
