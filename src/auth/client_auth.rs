//! `private_key_jwt` client authentication (RFC 7523 §2.2, OpenID Core §9): the client's
//! private key (PEM) and the short-lived, single-use JWT assertion signed with it, sent as
//! `client_assertion` instead of a client secret. Key ids default to the RFC 7638 thumbprint.
//!
//! Signing uses `ring`, already in the tree through rustls (no second crypto stack in the
//! addon), and PEM is read with `rustls-pki-types`, also already there. The key and the
//! assertions never reach a log: `Debug` prints only the algorithm and key id.

use crate::secret::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: long enough for one token request, short enough that a
/// leaked one is useless soon (servers also reject a reused `jti`).
const LIFETIME_SECS: u64 = 60;

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair, Curve),
    Ed(Ed25519KeyPair),
}

#[derive(Clone, Copy)]
enum Curve {
    P256,
    P384,
}

/// A client's private key for `private_key_jwt`, with its key id.
pub struct ClientKey {
    signer: Signer,
    kid: String,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKey({}, kid={})", self.alg(), self.kid)
    }
}

impl ClientKey {
    /// Read a PEM private key file: PKCS#8 (`BEGIN PRIVATE KEY`: RSA, EC P-256/P-384,
    /// Ed25519) or PKCS#1 (`BEGIN RSA PRIVATE KEY`). `kid`: the key id registered with the
    /// authorization server; `None`: the key's JWK thumbprint (RFC 7638).
    pub fn load(path: &Path, kid: Option<String>) -> Result<ClientKey, String> {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
        ClientKey::from_pem(&pem, kid)
    }

    pub fn from_pem(pem: &[u8], kid: Option<String>) -> Result<ClientKey, String> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "it holds no PEM private key (an encrypted key must be decrypted first)".to_string()
            }
            other => format!("not a PEM private key: {other}"),
        })?;
        let rejected = |e: ring::error::KeyRejected| format!("the key is not usable: {e}");
        let signer = match &der {
            PrivateKeyDer::Pkcs1(k) => Signer::Rsa(RsaKeyPair::from_der(k.secret_pkcs1_der()).map_err(rejected)?),
            PrivateKeyDer::Pkcs8(k) => Self::from_pkcs8(k.secret_pkcs8_der())?,
            PrivateKeyDer::Sec1(_) => {
                return Err("an EC key in SEC1 form (`BEGIN EC PRIVATE KEY`) is not read; convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8`".into())
            }
            _ => return Err("unsupported private key format".into()),
        };
        let mut key = ClientKey {
            signer,
            kid: String::new(),
        };
        key.kid = match kid.map(|k| k.trim().to_string()).filter(|k| !k.is_empty()) {
            Some(k) => k,
            None => thumbprint(&key.public_jwk_members()),
        };
        Ok(key)
    }

    fn from_pkcs8(der: &[u8]) -> Result<Signer, String> {
        let rng = SystemRandom::new();
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng) {
            return Ok(Signer::Ec(k, Curve::P256));
        }
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, der, &rng) {
            return Ok(Signer::Ec(k, Curve::P384));
        }
        if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(Signer::Ed(k));
        }
        RsaKeyPair::from_pkcs8(der).map(Signer::Rsa).map_err(|e| {
            format!("the key is not RSA (2048 bits or more), EC P-256/P-384 or Ed25519 in PKCS#8 form ({e})")
        })
    }

    /// The JWS algorithm: RS256, ES256, ES384 or EdDSA.
    pub fn alg(&self) -> &'static str {
        match &self.signer {
            Signer::Rsa(_) => "RS256",
            Signer::Ec(_, Curve::P256) => "ES256",
            Signer::Ec(_, Curve::P384) => "ES384",
            Signer::Ed(_) => "EdDSA",
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The required members of the public JWK (RFC 7638 §3.2), in lexicographic order.
    fn public_jwk_members(&self) -> Vec<(&'static str, String)> {
        match &self.signer {
            Signer::Rsa(k) => {
                let c: signature::RsaPublicKeyComponents<Vec<u8>> = k.public().into();
                vec![
                    ("e", B64.encode(strip_zeros(&c.e))),
                    ("kty", "RSA".into()),
                    ("n", B64.encode(strip_zeros(&c.n))),
                ]
            }
            Signer::Ec(k, curve) => {
                // Uncompressed point: 0x04 || x || y.
                let point = &k.public_key().as_ref()[1..];
                let (x, y) = point.split_at(point.len() / 2);
                let crv = match curve {
                    Curve::P256 => "P-256",
                    Curve::P384 => "P-384",
                };
                vec![
                    ("crv", crv.into()),
                    ("kty", "EC".into()),
                    ("x", B64.encode(x)),
                    ("y", B64.encode(y)),
                ]
            }
            Signer::Ed(k) => vec![
                ("crv", "Ed25519".into()),
                ("kty", "OKP".into()),
                ("x", B64.encode(k.public_key().as_ref())),
            ],
        }
    }

    /// The public key as a JWK (for the `jwks` an administrator registers).
    pub fn public_jwk(&self) -> serde_json::Value {
        let mut jwk = serde_json::Map::new();
        for (k, v) in self.public_jwk_members() {
            jwk.insert(k.into(), v.into());
        }
        jwk.insert("kid".into(), self.kid.clone().into());
        jwk.insert("alg".into(), self.alg().into());
        jwk.insert("use".into(), "sig".into());
        serde_json::Value::Object(jwk)
    }

    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        let rng = SystemRandom::new();
        let failed = |_| "signing the client assertion failed".to_string();
        match &self.signer {
            Signer::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, input, &mut sig)
                    .map_err(failed)?;
                Ok(sig)
            }
            Signer::Ec(k, _) => k.sign(&rng, input).map(|s| s.as_ref().to_vec()).map_err(failed),
            Signer::Ed(k) => Ok(k.sign(input).as_ref().to_vec()),
        }
    }

    /// A signed JWT of `claims` with this key's `alg` and `kid` (and `typ` when given).
    pub fn sign_jwt(&self, typ: Option<&str>, claims: &serde_json::Value) -> Result<Secret<String>, String> {
        let mut header = serde_json::json!({ "alg": self.alg(), "kid": self.kid });
        if let Some(t) = typ {
            header["typ"] = t.into();
        }
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let sig = self.sign(input.as_bytes())?;
        Ok(Secret::new(format!("{input}.{}", B64.encode(sig))))
    }

    /// The client assertion for one token request (RFC 7523 §3): `iss` and `sub` are the
    /// client ID, `aud` the authorization server's issuer identifier (RFC 7523bis: the
    /// issuer, not the token endpoint, so the assertion is good at that server only), a
    /// random `jti`, and a one-minute lifetime from `now` (seconds since the epoch).
    pub fn assertion(&self, client_id: &str, audience: &str, now: u64) -> Result<Secret<String>, String> {
        let mut jti = [0u8; 16];
        rand::Rng::fill(&mut rand::thread_rng(), &mut jti);
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": B64.encode(jti),
            "iat": now,
            "exp": now + LIFETIME_SECS,
        });
        self.sign_jwt(None, &claims)
    }

    /// The two token request parameters that authenticate `client_id` with this key.
    pub fn token_params(&self, client_id: &str, audience: &str) -> Result<[(&'static str, Secret<String>); 2], String> {
        let assertion = self.assertion(client_id, audience, crate::token_cache::now())?;
        Ok([
            ("client_assertion_type", Secret::new(ASSERTION_TYPE.to_string())),
            ("client_assertion", assertion),
        ])
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len().saturating_sub(1));
    &b[first..]
}

/// The JWK thumbprint (RFC 7638): base64url(SHA-256) of the required members, sorted, as
/// compact JSON.
pub fn thumbprint(members: &[(&str, String)]) -> String {
    let mut sorted: Vec<&(&str, String)> = members.iter().collect();
    sorted.sort_by_key(|(k, _)| *k);
    let mut map = serde_json::Map::new();
    for (k, v) in sorted {
        map.insert((*k).to_string(), v.clone().into());
    }
    // `preserve_order` keeps the insertion (sorted) order; the values are base64url and
    // short names, so serde_json's escaping equals RFC 7638's (no whitespace, no escapes).
    let json = serde_json::Value::Object(map).to_string();
    B64.encode(Sha256::digest(json.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::UnparsedPublicKey;

    // RFC 7638 §3.1 example key and its thumbprint.
    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // Given in any order: the thumbprint sorts the members itself.
        let members = [
            ("n", RFC7638_N.to_string()),
            ("kty", "RSA".into()),
            ("e", "AQAB".into()),
        ];
        assert_eq!(thumbprint(&members), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    fn parts(jwt: &str) -> (serde_json::Value, serde_json::Value, Vec<u8>, String) {
        let mut it = jwt.split('.');
        let (h, c, s) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        assert!(it.next().is_none(), "three parts");
        let json = |p: &str| serde_json::from_slice(&B64.decode(p).unwrap()).unwrap();
        (json(h), json(c), B64.decode(s).unwrap(), format!("{h}.{c}"))
    }

    fn ec_pem(alg: &'static signature::EcdsaSigningAlgorithm) -> Vec<u8> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
        format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n").into_bytes()
    }

    #[test]
    fn es256_assertion_claims_header_and_signature() {
        let key = ClientKey::from_pem(&ec_pem(&signature::ECDSA_P256_SHA256_FIXED_SIGNING), None).unwrap();
        assert_eq!(key.alg(), "ES256");
        let jwt = key.assertion("my-client", "https://as.example", 1_700_000_000).unwrap();
        let (header, claims, sig, input) = parts(jwt.expose());
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], key.kid(), "kid defaults to the thumbprint");
        assert_eq!(key.kid(), thumbprint(&key.public_jwk_members()));
        assert_eq!(claims["iss"], "my-client");
        assert_eq!(claims["sub"], "my-client", "sub = iss = client_id (RFC 7523 §3)");
        assert_eq!(claims["aud"], "https://as.example");
        assert_eq!(claims["iat"], 1_700_000_000u64);
        assert_eq!(claims["exp"], 1_700_000_060u64, "a one-minute lifetime");
        assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
        // The signature verifies with the public key (JWS ES256 is the fixed r||s form).
        let jwk = key.public_jwk();
        let mut point = vec![4u8];
        point.extend(B64.decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(B64.decode(jwk["y"].as_str().unwrap()).unwrap());
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
            .verify(input.as_bytes(), &sig)
            .expect("valid signature");
        // Every assertion is new: a fresh jti.
        let again = key.assertion("my-client", "https://as.example", 1_700_000_000).unwrap();
        assert_ne!(parts(again.expose()).1["jti"], claims["jti"]);
    }

    #[test]
    fn a_configured_key_id_wins_and_other_curves_work() {
        let key = ClientKey::from_pem(
            &ec_pem(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
            Some("key-2024".into()),
        )
        .unwrap();
        assert_eq!((key.alg(), key.kid()), ("ES384", "key-2024"));
        let (header, ..) = parts(key.assertion("c", "https://as.example", 1).unwrap().expose());
        assert_eq!(header["kid"], "key-2024");
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        assert_eq!(ClientKey::from_pem(pem.as_bytes(), None).unwrap().alg(), "EdDSA");
    }

    // A 2048-bit RSA test key (PKCS#8), made for this test only.
    const RSA_PEM: &str = include_str!("testdata/rsa2048.pem");

    #[test]
    fn rs256_assertion_verifies_and_its_thumbprint_uses_n_and_e() {
        let key = ClientKey::from_pem(RSA_PEM.as_bytes(), None).unwrap();
        assert_eq!(key.alg(), "RS256");
        let jwt = key.assertion("rsa-client", "https://as.example/", 10).unwrap();
        let (header, claims, sig, input) = parts(jwt.expose());
        assert_eq!(
            (header["alg"].as_str(), header["kid"].as_str()),
            (Some("RS256"), Some(key.kid()))
        );
        assert_eq!(claims["aud"], "https://as.example/", "the issuer exactly as given");
        let jwk = key.public_jwk();
        assert_eq!(jwk["e"], "AQAB");
        let n = B64.decode(jwk["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), 256, "2048-bit modulus without a leading zero");
        let e = B64.decode(jwk["e"].as_str().unwrap()).unwrap();
        signature::RsaPublicKeyComponents { n: &n, e: &e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &sig)
            .expect("valid RS256 signature");
    }

    #[test]
    fn unusable_keys_say_why() {
        let e = ClientKey::from_pem(b"not pem", None).unwrap_err();
        assert!(e.contains("no PEM private key"), "{e}");
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n";
        let e = ClientKey::from_pem(sec1.as_bytes(), None).unwrap_err();
        assert!(e.contains("openssl pkcs8 -topk8"), "{e}");
        let e = ClientKey::load(Path::new("/nonexistent/key.pem"), None).unwrap_err();
        assert!(e.contains("cannot read it"), "{e}");
        // Debug never shows key material.
        let key = ClientKey::from_pem(RSA_PEM.as_bytes(), Some("k1".into())).unwrap();
        assert_eq!(format!("{key:?}"), "ClientKey(RS256, kid=k1)");
    }
}
