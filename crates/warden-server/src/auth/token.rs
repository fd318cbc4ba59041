//! Token exchange: a key is traded for a short-lived EdDSA-signed JWT that
//! carries its tenant and scopes. Tokens name their key, so revoking the key
//! ends them too.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use warden_core::api_key::{secret_tag, ApiKey};
use warden_core::time::Millis;

/// How long a token lives, at most.
pub const TOKEN_LIFETIME_SECS: i64 = 3600;
const ISSUER: &str = "warden";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The key the token was exchanged for.
    pub sub: String,
    pub org: String,
    pub env: String,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The secret the key was exchanged with ([`secret_tag`]): a rotation
    /// ends the tokens of the secret it replaces with that secret.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sec: String,
}

pub struct IssuedToken {
    pub token: String,
    pub expires_in: i64,
}

/// Signs and checks tokens with the installation's Ed25519 key.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenIssuer {
    /// A new PKCS#8 Ed25519 private key, to be sealed and stored.
    pub fn generate_key() -> Vec<u8> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .expect("the system random source works")
            .as_ref()
            .to_vec()
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, String> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| format!("token key: {e}"))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Ok(TokenIssuer {
            encoding: EncodingKey::from_ed_der(pkcs8),
            decoding: DecodingKey::from_ed_der(pair.public_key().as_ref()),
            validation,
        })
    }

    /// A token for `key`, exchanged with the secret of `digest`, never
    /// outliving the key nor that secret.
    pub fn issue(&self, key: &ApiKey, digest: &str, now: Millis) -> Result<IssuedToken, String> {
        let iat = now / 1000;
        let mut exp = iat + TOKEN_LIFETIME_SECS;
        if let Some(ends) = key.secret_ends_at(digest) {
            exp = exp.min(ends / 1000);
        }
        let claims = Claims {
            iss: ISSUER.into(),
            sub: key.id.clone(),
            org: key.org_id.clone(),
            env: key.environment.as_str().into(),
            scopes: key.scopes.names(),
            agent_id: key.agent_id.clone(),
            iat,
            exp,
            jti: warden_core::id::new_id(warden_core::id::prefix::TOKEN),
            sec: secret_tag(digest),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .map_err(|e| format!("signing a token: {e}"))?;
        Ok(IssuedToken {
            token,
            expires_in: exp - iat,
        })
    }

    /// The claims of a valid, unexpired token signed by this installation.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::scope::ScopeSet;
    use warden_core::Environment;

    fn key() -> ApiKey {
        ApiKey {
            id: "key_1".into(),
            org_id: "org_1".into(),
            environment: Environment::Test,
            name: "k".into(),
            last_four: "abcd".into(),
            secret_digest: "d".into(),
            previous_digest: None,
            previous_valid_until: None,
            scopes: ScopeSet::parse(&["agents.read"]).unwrap(),
            agent_id: None,
            allowed_cidrs: vec![],
            expires_at: None,
            created_at: 0,
            last_used_at: None,
            revoked_at: None,
            rotated_at: None,
        }
    }

    #[test]
    fn issued_tokens_verify_and_others_do_not() {
        let issuer = TokenIssuer::from_pkcs8(&TokenIssuer::generate_key()).unwrap();
        let now = warden_core::time::now_ms();
        let issued = issuer.issue(&key(), "d", now).unwrap();
        assert_eq!(issued.expires_in, 3600);
        let claims = issuer.verify(&issued.token).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.env.as_str()),
            ("key_1", "test")
        );
        assert_eq!(claims.scopes, vec!["agents.read"]);

        let other = TokenIssuer::from_pkcs8(&TokenIssuer::generate_key()).unwrap();
        assert!(other.verify(&issued.token).is_none());
        assert!(issuer.verify("not.a.token").is_none());
    }
}
