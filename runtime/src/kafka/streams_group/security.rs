//! The coordinator connection's security: `security.protocol` PLAINTEXT,
//! SSL, SASL_PLAINTEXT or SASL_SSL, from the same settings librdkafka gets.
//!
//! Why here: the member talks to the group coordinator on its own socket
//! (`connection.rs`), outside librdkafka, so nothing secures it unless this
//! file does. A cluster that only accepts TLS or SASL must see the member's
//! connection authenticated exactly like the application's librdkafka
//! clients, from the same settings, and a setting this file cannot honour
//! must stop the application rather than be dropped: a member that silently
//! skipped `ssl.ca.location` or `sasl.password` would connect less securely
//! than the user asked for, or not at all with a confusing error.
//!
//! What is supported, as librdkafka reads it:
//! - TLS (OpenSSL, the library librdkafka links): `ssl.ca.location` (file,
//!   directory or `probe`; unset: the system's CAs), `ssl.ca.pem`,
//!   `ssl.certificate.location` / `ssl.certificate.pem`,
//!   `ssl.key.location` / `ssl.key.pem` with `ssl.key.password`,
//!   `ssl.cipher.suites`, `ssl.endpoint.identification.algorithm`
//!   (`https`, the default, checks the broker's name; `none` does not) and
//!   `enable.ssl.certificate.verification`. Any other `ssl.*` setting is
//!   refused while TLS is in use.
//! - SASL: `sasl.mechanism` (or `sasl.mechanisms`) PLAIN, SCRAM-SHA-256 or
//!   SCRAM-SHA-512 (`security/scram.rs`), with `sasl.username` and
//!   `sasl.password`, over `SaslHandshake` v1 and `SaslAuthenticate` v2.
//!   GSSAPI and OAUTHBEARER are refused with a pointer to
//!   `group.protocol=classic`.
//!
//! Errors name the settings to fix, in the words of `client_fault.rs`; a
//! password is never put in a message or a `Debug` output.

mod scram;

use std::collections::BTreeMap;
use std::fmt;
use std::net::TcpStream;
use std::path::Path;

use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::ssl::{ErrorCode, HandshakeError, SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509VerifyResult};

use super::codec::{Reader, WireResult};
use super::connection::{Connection, Transport};
use super::messages::{SASL_AUTHENTICATE, SASL_HANDSHAKE};
use super::{GroupError, GroupResult};
use scram::{ScramClient, ScramHash};

/// `SASL_AUTHENTICATION_FAILED`, `UNSUPPORTED_SASL_MECHANISM` (`Errors.java`).
const SASL_AUTHENTICATION_FAILED: i16 = 58;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;

/// The `ssl.*` settings honoured on the member's connection.
const TLS_SETTINGS: &[&str] = &[
    "ssl.ca.location",
    "ssl.ca.pem",
    "ssl.certificate.location",
    "ssl.certificate.pem",
    "ssl.key.location",
    "ssl.key.pem",
    "ssl.key.password",
    "ssl.cipher.suites",
    "ssl.endpoint.identification.algorithm",
];

/// The `sasl.*` settings honoured; those of mechanisms that are refused
/// anyway (`sasl.kerberos.*`, `sasl.oauthbearer.*`) are left alone, as
/// librdkafka leaves them alone for PLAIN and SCRAM.
const SASL_SETTINGS: &[&str] = &[
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
];

/// A SASL mechanism the member can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Plain,
    Scram(ScramHash),
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(ScramHash::Sha256) => "SCRAM-SHA-256",
            Mechanism::Scram(ScramHash::Sha512) => "SCRAM-SHA-512",
        }
    }
}

/// The SASL side of the settings.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Sasl {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The TLS side: a connector built (files read, keys checked) once.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: SslConnector,
    verify_hostname: bool,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("verify_hostname", &self.verify_hostname)
            .finish_non_exhaustive()
    }
}

/// What `security.protocol` and its settings ask for.
#[derive(Clone, Debug, Default)]
pub(crate) struct Security {
    pub tls: Option<Tls>,
    pub sasl: Option<Sasl>,
}

impl Security {
    /// Reads the librdkafka settings the application was given.
    pub fn from_settings(settings: &BTreeMap<String, String>) -> GroupResult<Security> {
        let protocol = settings
            .get("security.protocol")
            .map_or("plaintext", String::as_str);
        let (tls, sasl) = match protocol.to_ascii_lowercase().as_str() {
            "plaintext" => (false, false),
            "ssl" => (true, false),
            "sasl_plaintext" => (false, true),
            "sasl_ssl" => (true, true),
            _ => {
                return Err(GroupError::Config(format!(
                    "security.protocol={protocol} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, \
                     SASL_SSL"
                )));
            }
        };
        // As in librdkafka, ssl.* matters only with TLS and sasl.* only with SASL.
        let unsupported = settings.keys().find(|k| {
            (tls && k.starts_with("ssl") && !TLS_SETTINGS.contains(&k.as_str()))
                || (sasl
                    && k.starts_with("sasl.")
                    && !SASL_SETTINGS.contains(&k.as_str())
                    && !k.starts_with("sasl.kerberos.")
                    && !k.starts_with("sasl.oauthbearer."))
        });
        if let Some(key) = unsupported {
            return Err(GroupError::Unsupported(format!(
                "group.protocol=streams does not support {key} on its connection to the group \
                 coordinator (it supports {}, enable.ssl.certificate.verification and {}); \
                 remove it, or set group.protocol=classic",
                TLS_SETTINGS.join(", "),
                SASL_SETTINGS.join(", ")
            )));
        }
        Ok(Security {
            tls: if tls { Some(tls_from(settings)?) } else { None },
            sasl: if sasl {
                Some(sasl_from(protocol, settings)?)
            } else {
                None
            },
        })
    }
}

fn sasl_from(protocol: &str, settings: &BTreeMap<String, String>) -> GroupResult<Sasl> {
    let get = |k: &str| settings.get(k).map(String::as_str);
    let name = match (get("sasl.mechanism"), get("sasl.mechanisms")) {
        (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b) => {
            return Err(GroupError::Config(format!(
                "sasl.mechanism={a} and sasl.mechanisms={b} disagree; set one of them"
            )));
        }
        (Some(m), _) | (None, Some(m)) => m.trim(),
        (None, None) => {
            return Err(GroupError::Config(format!(
                "security.protocol={protocol} needs sasl.mechanism (librdkafka's default, \
                 GSSAPI, is not supported by group.protocol=streams): set it to PLAIN, \
                 SCRAM-SHA-256 or SCRAM-SHA-512 as the broker's listener enables"
            )));
        }
    };
    let mechanism = match name.to_ascii_uppercase().as_str() {
        "PLAIN" => Mechanism::Plain,
        "SCRAM-SHA-256" => Mechanism::Scram(ScramHash::Sha256),
        "SCRAM-SHA-512" => Mechanism::Scram(ScramHash::Sha512),
        _ => {
            return Err(GroupError::Unsupported(format!(
                "group.protocol=streams supports sasl.mechanism PLAIN, SCRAM-SHA-256 and \
                 SCRAM-SHA-512, not {name}; use group.protocol=classic for {name}"
            )));
        }
    };
    let need = |k: &str| {
        get(k).map(str::to_string).ok_or_else(|| {
            GroupError::Config(format!("sasl.mechanism={} needs {k}", mechanism.name()))
        })
    };
    Ok(Sasl {
        mechanism,
        username: need("sasl.username")?,
        password: need("sasl.password")?,
    })
}

/// Builds the TLS connector as librdkafka would configure its own.
fn tls_from(settings: &BTreeMap<String, String>) -> GroupResult<Tls> {
    let get = |k: &str| settings.get(k).map(String::as_str);
    // OpenSSL takes C strings: a NUL would be cut (or panic in the wrapper).
    if let Some(k) = TLS_SETTINGS
        .iter()
        .find(|k| get(k).is_some_and(|v| v.contains('\0')))
    {
        return Err(GroupError::Config(format!("{k} contains a NUL character")));
    }
    let setup = |key: &'static str| move |e: ErrorStack| GroupError::Config(format!("{key}: {e}"));
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(setup("TLS setup"))?;

    // Trust: the system's CAs (the builder's default) unless a CA is given,
    // then only that, as librdkafka does.
    let ca_location = get("ssl.ca.location").filter(|l| !l.eq_ignore_ascii_case("probe"));
    if ca_location.is_some() || get("ssl.ca.pem").is_some() {
        let mut store = X509StoreBuilder::new().map_err(setup("TLS setup"))?;
        if let Some(pem) = get("ssl.ca.pem") {
            let certs = X509::stack_from_pem(pem.as_bytes()).map_err(setup("ssl.ca.pem"))?;
            if certs.is_empty() {
                return Err(GroupError::Config(
                    "ssl.ca.pem holds no PEM certificate".into(),
                ));
            }
            for c in certs {
                store.add_cert(c).map_err(setup("ssl.ca.pem"))?;
            }
        }
        b.set_cert_store(store.build());
        if let Some(loc) = ca_location {
            let path = Path::new(loc);
            let meta = std::fs::metadata(path)
                .map_err(|e| GroupError::Config(format!("ssl.ca.location={loc}: {e}")))?;
            let (file, dir) = if meta.is_dir() {
                (None, Some(path))
            } else {
                (Some(path), None)
            };
            b.load_verify_locations(file, dir).map_err(|e| {
                GroupError::Config(format!("ssl.ca.location={loc} is not a PEM CA file: {e}"))
            })?;
        }
    }

    // The client's own certificate and key, for listeners with ssl.client.auth.
    let mut has_cert = false;
    if let Some(loc) = get("ssl.certificate.location") {
        b.set_certificate_chain_file(loc).map_err(|e| {
            GroupError::Config(format!(
                "ssl.certificate.location={loc}: cannot load it as PEM: {e}"
            ))
        })?;
        has_cert = true;
    } else if let Some(pem) = get("ssl.certificate.pem") {
        let mut chain = X509::stack_from_pem(pem.as_bytes())
            .map_err(setup("ssl.certificate.pem"))?
            .into_iter();
        let leaf = chain
            .next()
            .ok_or_else(|| GroupError::Config("ssl.certificate.pem holds no certificate".into()))?;
        b.set_certificate(&leaf)
            .map_err(setup("ssl.certificate.pem"))?;
        for c in chain {
            b.add_extra_chain_cert(c)
                .map_err(setup("ssl.certificate.pem"))?;
        }
        has_cert = true;
    }
    let key = match (get("ssl.key.location"), get("ssl.key.pem")) {
        (Some(loc), _) => Some((
            "ssl.key.location",
            std::fs::read(loc)
                .map_err(|e| GroupError::Config(format!("ssl.key.location={loc}: {e}")))?,
        )),
        (None, Some(pem)) => Some(("ssl.key.pem", pem.as_bytes().to_vec())),
        (None, None) => None,
    };
    match (key, has_cert) {
        (Some((key_setting, pem)), true) => {
            let key = match get("ssl.key.password") {
                Some(pw) => PKey::private_key_from_pem_passphrase(&pem, pw.as_bytes()),
                None => PKey::private_key_from_pem(&pem),
            }
            .map_err(|e| {
                GroupError::Config(format!(
                    "{key_setting}: cannot read the PEM private key (check ssl.key.password): {e}"
                ))
            })?;
            b.set_private_key(&key).map_err(setup(key_setting))?;
            b.check_private_key().map_err(|e| {
                GroupError::Config(format!(
                    "{key_setting} does not match the certificate of ssl.certificate.location: {e}"
                ))
            })?;
        }
        (Some((key_setting, _)), false) => {
            return Err(GroupError::Config(format!(
                "{key_setting} is set without ssl.certificate.location"
            )));
        }
        (None, true) => {
            return Err(GroupError::Config(
                "ssl.certificate.location is set without ssl.key.location".into(),
            ));
        }
        (None, false) => {}
    }

    if let Some(ciphers) = get("ssl.cipher.suites") {
        b.set_cipher_list(ciphers)
            .map_err(setup("ssl.cipher.suites"))?;
    }
    let verify_hostname = match get("ssl.endpoint.identification.algorithm") {
        None => true,
        Some(a) if a.eq_ignore_ascii_case("https") => true,
        Some(a) if a.eq_ignore_ascii_case("none") => false,
        Some(a) => {
            return Err(GroupError::Config(format!(
                "ssl.endpoint.identification.algorithm={a} is not https or none"
            )));
        }
    };
    match get("enable.ssl.certificate.verification")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("true") => {}
        Some("false") => b.set_verify(SslVerifyMode::NONE),
        Some(v) => {
            return Err(GroupError::Config(format!(
                "enable.ssl.certificate.verification={v} is not true or false"
            )));
        }
    }
    Ok(Tls {
        connector: b.build(),
        verify_hostname,
    })
}

/// Secures a connected socket as configured.
pub(crate) fn wrap(sock: TcpStream, host: &str, sec: &Security) -> GroupResult<Box<dyn Transport>> {
    let Some(tls) = &sec.tls else {
        return Ok(Box::new(sock));
    };
    let mut cfg = tls
        .connector
        .configure()
        .map_err(|e| GroupError::Auth(format!("TLS setup for {host} failed: {e}")))?;
    cfg.set_verify_hostname(tls.verify_hostname);
    match cfg.connect(host, sock) {
        Ok(stream) => Ok(Box::new(stream)),
        Err(HandshakeError::SetupFailure(e)) => Err(GroupError::Auth(format!(
            "TLS setup for {host} failed: {e}"
        ))),
        Err(HandshakeError::WouldBlock(_)) => Err(GroupError::Io(format!(
            "the TLS handshake with {host} timed out (check security.protocol: SSL or SASL_SSL \
             only for a TLS listener)"
        ))),
        Err(HandshakeError::Failure(mid)) => Err(handshake_error(
            host,
            mid.ssl().verify_result(),
            mid.error(),
        )),
    }
}

/// A failed handshake as the error to report: a certificate or a setting
/// that no retry fixes, or a connection that broke (retried).
fn handshake_error(host: &str, verify: X509VerifyResult, e: &openssl::ssl::Error) -> GroupError {
    if verify != X509VerifyResult::OK {
        return GroupError::Auth(format!(
            "the TLS handshake with {host} failed: the broker's certificate could not be \
             verified ({}; {e}). Set ssl.ca.location to the CA file (PEM) that signed the \
             broker certificates, and check that the certificate names the host in \
             bootstrap.servers (ssl.endpoint.identification.algorithm)",
            verify.error_string()
        ));
    }
    if e.io_error().is_some() || (e.code() == ErrorCode::SYSCALL && e.ssl_error().is_none()) {
        return GroupError::Io(format!(
            "the TLS handshake with {host} failed: {e} (connection closed; if the listener \
             does not speak TLS, check security.protocol: PLAINTEXT or SASL_PLAINTEXT)"
        ));
    }
    GroupError::Auth(format!(
        "the TLS handshake with {host} failed: {e}. Check security.protocol (SSL or SASL_SSL \
         for a TLS listener, PLAINTEXT or SASL_PLAINTEXT otherwise), ssl.ca.location, and \
         ssl.certificate.location / ssl.key.location if the broker requires client certificates"
    ))
}

/// SASL authentication on a fresh connection.
pub(crate) fn authenticate(conn: &mut Connection, sec: &Security) -> GroupResult<()> {
    let Some(sasl) = &sec.sasl else {
        return Ok(());
    };
    handshake(conn, sasl)?;
    match sasl.mechanism {
        Mechanism::Plain => {
            let mut token = Vec::with_capacity(sasl.username.len() + sasl.password.len() + 2);
            token.push(0);
            token.extend_from_slice(sasl.username.as_bytes());
            token.push(0);
            token.extend_from_slice(sasl.password.as_bytes());
            sasl_round(conn, sasl, &token)?;
        }
        Mechanism::Scram(hash) => {
            let mut client = ScramClient::new(hash, &sasl.username, &sasl.password)?;
            let server_first = sasl_round(conn, sasl, client.client_first().as_bytes())?;
            let client_final = client.client_final(&server_first)?;
            let server_final = sasl_round(conn, sasl, client_final.as_bytes())?;
            client.check_server_final(&server_final)?;
        }
    }
    Ok(())
}

/// `SaslHandshake` v1: asks for the mechanism.
fn handshake(conn: &mut Connection, sasl: &Sasl) -> GroupResult<()> {
    let name = sasl.mechanism.name();
    let body = conn.call(SASL_HANDSHAKE, 1, false, false, |w| {
        w.legacy_nullable_string(Some(name));
    })?;
    let (error, offered) = handshake_response(&body)?;
    match error {
        0 => Ok(()),
        UNSUPPORTED_SASL_MECHANISM => Err(GroupError::Auth(format!(
            "SASL authentication failed: the broker at {} does not enable sasl.mechanism={name} \
             on this listener (it offers {}). Set sasl.mechanism to one of those, with the \
             sasl.username and sasl.password of a user the cluster has for it",
            conn.addr,
            if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(", ")
            }
        ))),
        code => Err(GroupError::broker("SaslHandshake", code, None)),
    }
}

/// One `SaslAuthenticate` v2 round: sends `token`, returns the broker's.
fn sasl_round(conn: &mut Connection, sasl: &Sasl, token: &[u8]) -> GroupResult<Vec<u8>> {
    let body = conn.call(SASL_AUTHENTICATE, 2, true, true, |w| {
        w.compact_bytes(token);
        w.no_tags();
    })?;
    let (error, message, auth_bytes) = authenticate_response(&body)?;
    match error {
        0 => Ok(auth_bytes),
        SASL_AUTHENTICATION_FAILED => Err(GroupError::Auth(format!(
            "SASL authentication failed at {} (sasl.mechanism={}, sasl.username={}){}. Check \
             sasl.username and sasl.password (and sasl.mechanism, which must be one the broker \
             enables for this listener), and that the user exists on the cluster",
            conn.addr,
            sasl.mechanism.name(),
            sasl.username,
            message.map(|m| format!(": {m}")).unwrap_or_default()
        ))),
        code => Err(GroupError::broker("SaslAuthenticate", code, message)),
    }
}

/// `SaslHandshakeResponse` v1: the error and the mechanisms the listener enables.
fn handshake_response(body: &[u8]) -> WireResult<(i16, Vec<String>)> {
    let mut r = Reader::new(body);
    let error = r.i16()?;
    let n = r.i32()?;
    let mut offered = Vec::new();
    for _ in 0..n.max(0) {
        offered.push(r.string()?);
    }
    Ok((error, offered))
}

/// `SaslAuthenticateResponse` v2: the error, its message and the auth bytes
/// (`session_lifetime_ms` is read past: the member reconnects, and so
/// re-authenticates, when a broker with `connections.max.reauth.ms` closes
/// the connection).
fn authenticate_response(body: &[u8]) -> WireResult<(i16, Option<String>, Vec<u8>)> {
    let mut r = Reader::new(body);
    let error = r.i16()?;
    let message = r.compact_nullable_string()?;
    let auth_bytes = r.compact_bytes()?;
    let _session_lifetime_ms = r.i64()?;
    Ok((error, message, auth_bytes))
}

#[cfg(test)]
mod tests;
