//! The client side of SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677),
//! as Kafka's `ScramSaslServer` speaks it: no channel binding (`n,,`), no
//! authorization identity, password bytes as given (Kafka applies no
//! SASLprep). The primitives are OpenSSL's, the same library librdkafka's
//! SCRAM uses.
//!
//! Three messages: client-first, then client-final (carrying the proof) from
//! the broker's server-first, then a check of the broker's server-final:
//! its signature proves the broker holds the stored credential, so a
//! mismatch is an authentication failure, not something to carry on after.

use openssl::error::ErrorStack;
use openssl::hash::{MessageDigest, hash};
use openssl::pkey::PKey;
use openssl::sign::Signer;

use super::super::GroupError;
use super::super::GroupResult;
use super::super::codec::WireError;

/// Kafka's brokers use 4096..=16384; this only stops a broker from making
/// the member spin.
const MAX_ITERATIONS: u32 = 1_000_000;

/// The hash of a SCRAM mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    fn digest(self) -> MessageDigest {
        match self {
            ScramHash::Sha256 => MessageDigest::sha256(),
            ScramHash::Sha512 => MessageDigest::sha512(),
        }
    }
}

/// One SCRAM exchange, from the client's side.
pub(super) struct ScramClient {
    hash: ScramHash,
    password: String,
    nonce: String,
    client_first_bare: String,
    /// What the server-final must carry, once client-final is made.
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// A client with a fresh random nonce.
    pub fn new(hash: ScramHash, username: &str, password: &str) -> GroupResult<Self> {
        let mut raw = [0u8; 24];
        openssl::rand::rand_bytes(&mut raw).map_err(crypto)?;
        Ok(Self::with_nonce(
            hash,
            username,
            password,
            &base64_encode(&raw),
        ))
    }

    /// A client with the given nonce (printable, without `,`).
    pub fn with_nonce(hash: ScramHash, username: &str, password: &str, nonce: &str) -> Self {
        ScramClient {
            hash,
            password: password.to_string(),
            nonce: nonce.to_string(),
            client_first_bare: format!("n={},r={nonce}", escape_username(username)),
            server_signature: None,
        }
    }

    /// The client-first message.
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// The client-final message answering `server_first`.
    pub fn client_final(&mut self, server_first: &[u8]) -> GroupResult<String> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| malformed("server-first message is not UTF-8"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in server_first.split(',') {
            match attr.split_once('=') {
                Some(("m", _)) => {
                    return Err(GroupError::Auth(
                        "SCRAM: the broker requires an extension this client does not know (m=)"
                            .into(),
                    ));
                }
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                // Extensions: none is needed.
                Some(_) => {}
                None => return Err(malformed("server-first attribute without '='")),
            }
        }
        let nonce = nonce.ok_or_else(|| malformed("server-first message has no nonce (r=)"))?;
        let salt = salt
            .and_then(base64_decode)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| malformed("server-first message has no valid salt (s=)"))?;
        let iterations = iterations
            .and_then(|i| i.parse::<u32>().ok())
            .filter(|i| (1..=MAX_ITERATIONS).contains(i))
            .ok_or_else(|| malformed("server-first message has no valid iteration count (i=)"))?;
        if nonce.len() <= self.nonce.len() || !nonce.starts_with(&self.nonce) {
            return Err(GroupError::Auth(
                "SCRAM: the broker's nonce does not extend the client's; the exchange was \
                 tampered with or the broker is not a Kafka broker"
                    .into(),
            ));
        }

        let md = self.hash.digest();
        let mut salted = vec![0u8; md.size()];
        openssl::pkcs5::pbkdf2_hmac(
            self.password.as_bytes(),
            &salt,
            iterations as usize,
            md,
            &mut salted,
        )
        .map_err(crypto)?;
        let client_key = hmac(md, &salted, b"Client Key")?;
        let stored_key = hash(md, &client_key).map_err(crypto)?;
        // "biws" is base64("n,,"): the GS2 header of client-first.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac(md, &stored_key, auth_message.as_bytes())?;
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac(md, &salted, b"Server Key")?;
        self.server_signature = Some(hmac(md, &server_key, auth_message.as_bytes())?);
        Ok(format!("{without_proof},p={}", base64_encode(&proof)))
    }

    /// Checks the server-final message: the broker's proof that it knows
    /// the credential.
    pub fn check_server_final(&self, server_final: &[u8]) -> GroupResult<()> {
        let expected = self
            .server_signature
            .as_deref()
            .ok_or_else(|| malformed("server-final before server-first"))?;
        let text = std::str::from_utf8(server_final)
            .map_err(|_| malformed("server-final message is not UTF-8"))?;
        let mut signature = None;
        for attr in text.split(',') {
            match attr.split_once('=') {
                Some(("e", e)) => {
                    return Err(GroupError::Auth(format!(
                        "SCRAM authentication failed: the broker says '{e}'. Check \
                         sasl.username and sasl.password"
                    )));
                }
                Some(("v", v)) => signature = Some(v),
                _ => {}
            }
        }
        let signature = signature
            .and_then(base64_decode)
            .ok_or_else(|| malformed("server-final message has no valid signature (v=)"))?;
        if signature.len() != expected.len() || !openssl::memcmp::eq(&signature, expected) {
            return Err(GroupError::Auth(
                "SCRAM: the broker's server signature does not match, so it did not prove that \
                 it holds the credential of sasl.username: it may not be the cluster in \
                 bootstrap.servers, or the exchange was tampered with"
                    .into(),
            ));
        }
        Ok(())
    }
}

fn hmac(md: MessageDigest, key: &[u8], data: &[u8]) -> GroupResult<Vec<u8>> {
    let key = PKey::hmac(key).map_err(crypto)?;
    let mut signer = Signer::new(md, &key).map_err(crypto)?;
    signer.update(data).map_err(crypto)?;
    signer.sign_to_vec().map_err(crypto)
}

fn crypto(e: ErrorStack) -> GroupError {
    GroupError::Auth(format!("SCRAM: OpenSSL failed: {e}"))
}

fn malformed(what: &str) -> GroupError {
    GroupError::Wire(WireError(format!("SCRAM: {what}")))
}

/// A `saslname` (RFC 5802 5.1): `=` and `,` are escaped.
pub(super) fn escape_username(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub(super) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with padding; `None` for anything else.
pub(super) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|p| p as u32);
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let groups = bytes.len() / 4;
    for (g, quad) in bytes.chunks(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && g + 1 != groups) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

    #[test]
    fn scram_sha_256_matches_the_rfc_7677_test_vector() {
        let mut c =
            ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(c.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        assert_eq!(
            c.client_final(SERVER_FIRST.as_bytes()).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.check_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
    }

    #[test]
    fn a_wrong_server_signature_or_a_server_error_is_an_auth_error() {
        let mut c =
            ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        c.client_final(SERVER_FIRST.as_bytes()).unwrap();
        let wrong = c.check_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert!(matches!(wrong, Err(GroupError::Auth(m)) if m.contains("server signature")));
        let e = c.check_server_final(b"e=invalid-proof");
        assert!(matches!(e, Err(GroupError::Auth(m)) if m.contains("sasl.password")));
        assert!(matches!(
            c.check_server_final(b"v=!!!!"),
            Err(GroupError::Wire(_))
        ));
    }

    #[test]
    fn sha_512_proofs_have_its_length_and_a_fresh_nonce_each_time() {
        let a = ScramClient::new(ScramHash::Sha512, "alice", "alice-secret").unwrap();
        let b = ScramClient::new(ScramHash::Sha512, "alice", "alice-secret").unwrap();
        assert_ne!(a.client_first(), b.client_first());
        let nonce = a.nonce.clone();
        let mut a = a;
        let fin = a
            .client_final(format!("r={nonce}xyz,s=c2FsdA==,i=4096").as_bytes())
            .unwrap();
        let proof = fin.rsplit_once(",p=").unwrap().1;
        assert_eq!(base64_decode(proof).unwrap().len(), 64);
    }

    #[test]
    fn malformed_or_hostile_server_first_messages_are_errors() {
        let n = "rOprNGfwEbeRWgbNEkqO";
        for bad in [
            "garbage".to_string(),
            format!("r={n}x,s=W22Z,i=4096x"),
            format!("r={n}x,s=,i=4096"),
            format!("r={n}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0"),
            format!("r={n}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999"),
            format!("r={n}x,s=W22ZaJ0SNY7soEsUEjb6gQ=="),
            "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".to_string(),
        ] {
            let mut c = ScramClient::with_nonce(ScramHash::Sha256, "u", "p", n);
            assert!(
                matches!(c.client_final(bad.as_bytes()), Err(GroupError::Wire(_))),
                "{bad}"
            );
        }
        for hostile in [
            format!("r={n},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
            "r=other-nonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".to_string(),
            format!("m=ext,r={n}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
        ] {
            let mut c = ScramClient::with_nonce(ScramHash::Sha256, "u", "p", n);
            assert!(
                matches!(c.client_final(hostile.as_bytes()), Err(GroupError::Auth(_))),
                "{hostile}"
            );
        }
        let c = ScramClient::with_nonce(ScramHash::Sha256, "u", "p", n);
        assert!(
            c.check_server_final(b"v=xx").is_err(),
            "server-final before client-final"
        );
        assert!(
            ScramClient::with_nonce(ScramHash::Sha256, "u", "p", n)
                .client_final(&[0xff, 0xfe])
                .is_err()
        );
    }

    #[test]
    fn usernames_escape_equals_and_comma() {
        assert_eq!(escape_username("a=b,c"), "a=3Db=2Cc");
        assert_eq!(escape_username("plain"), "plain");
        let c = ScramClient::with_nonce(ScramHash::Sha256, "x,y=z", "p", "N");
        assert_eq!(c.client_first(), "n,,n=x=2Cy=3Dz,r=N");
    }

    #[test]
    fn base64_round_trips_and_rejects_garbage() {
        for (raw, enc) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
            (b"n,,", "biws"),
        ] {
            assert_eq!(base64_encode(raw), enc);
            assert_eq!(base64_decode(enc).as_deref(), Some(raw));
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(&base64_encode(&all)), Some(all));
        for bad in ["Zg=", "Zg===", "Z===", "Zg==Zg==", "Zm9*", "=Zm9", "Zm 9"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }
}
