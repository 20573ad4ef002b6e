//! Tests of the coordinator connection's security settings and TLS.

use std::io::{Read, Write};
use std::net::TcpListener;

use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::Private;
use openssl::ssl::SslAcceptor;
use openssl::symm::Cipher;
use openssl::x509::extension::SubjectAlternativeName;

use super::*;
use crate::kafka::streams_group::codec::Writer;

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(pairs: &[(&str, &str)]) -> GroupResult<Security> {
    Security::from_settings(&settings(pairs))
}

/// A self-signed certificate for `dns`, and its key.
fn self_signed(dns: &str) -> (X509, PKey<Private>) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", dns).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .dns(dns)
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (b.build(), key)
}

fn pem_file(dir: &tempfile::TempDir, name: &str, pem: &[u8]) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, pem).unwrap();
    path.display().to_string()
}

#[test]
fn plaintext_is_the_default_and_the_protocol_is_case_insensitive() {
    let s = parse(&[]).unwrap();
    assert!(s.tls.is_none() && s.sasl.is_none());
    let s = parse(&[("security.protocol", "PLAINTEXT")]).unwrap();
    assert!(s.tls.is_none() && s.sasl.is_none());
    let e = parse(&[("security.protocol", "tls")]).unwrap_err();
    assert!(
        matches!(&e, GroupError::Config(m) if m.contains("security.protocol=tls")),
        "{e}"
    );
}

#[test]
fn ssl_reads_the_ca_hostname_check_and_verification_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = self_signed("broker.test");
    let ca = pem_file(&dir, "ca.pem", &cert.to_pem().unwrap());
    let s = parse(&[("security.protocol", "SSL"), ("ssl.ca.location", &ca)]).unwrap();
    assert!(s.tls.as_ref().unwrap().verify_hostname);
    assert!(s.sasl.is_none());
    let s = parse(&[
        ("security.protocol", "ssl"),
        ("ssl.ca.location", dir.path().to_str().unwrap()),
        ("ssl.endpoint.identification.algorithm", "none"),
        ("enable.ssl.certificate.verification", "false"),
    ])
    .unwrap();
    assert!(!s.tls.unwrap().verify_hostname);
    let pem = String::from_utf8(cert.to_pem().unwrap()).unwrap();
    assert!(parse(&[("security.protocol", "SSL"), ("ssl.ca.pem", &pem)]).is_ok());
    assert!(parse(&[("security.protocol", "SSL"), ("ssl.ca.location", "probe")]).is_ok());
    assert!(parse(&[("security.protocol", "SSL")]).is_ok());

    for (key, value) in [
        ("ssl.ca.location", "/nonexistent/ca.pem"),
        ("ssl.ca.pem", "not a certificate"),
        ("ssl.endpoint.identification.algorithm", "dns"),
        ("enable.ssl.certificate.verification", "maybe"),
        ("ssl.cipher.suites", "NO-SUCH-CIPHER"),
    ] {
        let e = parse(&[("security.protocol", "SSL"), (key, value)]).unwrap_err();
        assert!(
            matches!(&e, GroupError::Config(m) if m.contains(key)),
            "{key}: {e}"
        );
    }
    let not_pem = pem_file(&dir, "garbage.pem", b"garbage");
    let e = parse(&[("security.protocol", "SSL"), ("ssl.ca.location", &not_pem)]).unwrap_err();
    assert!(
        matches!(&e, GroupError::Config(m) if m.contains("ssl.ca.location")),
        "{e}"
    );
}

#[test]
fn client_certificates_need_a_matching_key_and_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed("client.test");
    let (_, other_key) = self_signed("other.test");
    let cert = pem_file(&dir, "client.pem", &cert.to_pem().unwrap());
    let plain_key = pem_file(&dir, "client.key", &key.private_key_to_pem_pkcs8().unwrap());
    let locked = key
        .private_key_to_pem_pkcs8_passphrase(Cipher::aes_128_cbc(), b"key-pw")
        .unwrap();
    let locked_key = pem_file(&dir, "locked.key", &locked);
    let other = pem_file(
        &dir,
        "other.key",
        &other_key.private_key_to_pem_pkcs8().unwrap(),
    );
    let ssl = |extra: &[(&str, &str)]| {
        let mut v = vec![("security.protocol", "SSL")];
        v.extend_from_slice(extra);
        parse(&v)
    };
    let cert_kv = ("ssl.certificate.location", cert.as_str());
    assert!(ssl(&[cert_kv, ("ssl.key.location", &plain_key)]).is_ok());
    assert!(
        ssl(&[
            cert_kv,
            ("ssl.key.location", &locked_key),
            ("ssl.key.password", "key-pw")
        ])
        .is_ok()
    );
    let locked_pem = String::from_utf8(locked).unwrap();
    assert!(
        ssl(&[
            cert_kv,
            ("ssl.key.pem", &locked_pem),
            ("ssl.key.password", "key-pw")
        ])
        .is_ok()
    );
    for (bad, names) in [
        (
            vec![
                cert_kv,
                ("ssl.key.location", &locked_key),
                ("ssl.key.password", "nope"),
            ],
            "ssl.key.password",
        ),
        (
            vec![cert_kv, ("ssl.key.location", &other)],
            "ssl.key.location",
        ),
        (vec![cert_kv], "ssl.key.location"),
        (
            vec![("ssl.key.location", plain_key.as_str())],
            "ssl.certificate.location",
        ),
    ] {
        let e = ssl(&bad).unwrap_err();
        assert!(
            matches!(&e, GroupError::Config(m) if m.contains(names)),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn security_settings_that_are_not_supported_are_refused_not_ignored() {
    for (protocol, key) in [
        ("SSL", "ssl.keystore.location"),
        ("SASL_SSL", "ssl.crl.location"),
        ("SASL_SSL", "ssl.engine.id"),
        ("SASL_PLAINTEXT", "sasl.login.callback"),
    ] {
        let e = parse(&[
            ("security.protocol", protocol),
            (key, "x"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
        ])
        .unwrap_err();
        assert!(
            matches!(&e, GroupError::Unsupported(m) if m.contains(key) && m.contains("group.protocol=classic")),
            "{key}: {e}"
        );
    }
    // As in librdkafka: TLS settings do nothing without TLS, and the
    // settings of another SASL mechanism do nothing for PLAIN.
    assert!(parse(&[("ssl.keystore.location", "x")]).is_ok());
    assert!(
        parse(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
            ("sasl.kerberos.service.name", "kafka"),
        ])
        .is_ok()
    );
}

#[test]
fn sasl_reads_the_mechanism_and_credentials() {
    for (protocol, tls) in [("SASL_PLAINTEXT", false), ("sasl_ssl", true)] {
        for (given, mechanism) in [
            ("PLAIN", Mechanism::Plain),
            ("SCRAM-SHA-256", Mechanism::Scram(ScramHash::Sha256)),
            ("scram-sha-512", Mechanism::Scram(ScramHash::Sha512)),
        ] {
            for key in ["sasl.mechanism", "sasl.mechanisms"] {
                let s = parse(&[
                    ("security.protocol", protocol),
                    (key, given),
                    ("sasl.username", "alice"),
                    ("sasl.password", "alice-secret"),
                ])
                .unwrap();
                assert_eq!(s.tls.is_some(), tls);
                let sasl = s.sasl.unwrap();
                assert_eq!(sasl.mechanism, mechanism);
                assert_eq!(
                    (sasl.username.as_str(), sasl.password.as_str()),
                    ("alice", "alice-secret")
                );
            }
        }
    }
}

#[test]
fn sasl_without_a_mechanism_or_credentials_or_with_gssapi_is_an_error() {
    let sasl = |extra: &[(&str, &str)]| {
        let mut v = vec![("security.protocol", "SASL_SSL")];
        v.extend_from_slice(extra);
        parse(&v).unwrap_err()
    };
    let e = sasl(&[("sasl.username", "u"), ("sasl.password", "p")]);
    assert!(
        matches!(&e, GroupError::Config(m) if m.contains("sasl.mechanism")),
        "{e}"
    );
    for m in ["GSSAPI", "OAUTHBEARER", "AWS_MSK_IAM"] {
        let e = sasl(&[
            ("sasl.mechanism", m),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
        ]);
        assert!(
            matches!(&e, GroupError::Unsupported(t) if t.contains("PLAIN")
                && t.contains("SCRAM-SHA-256") && t.contains("group.protocol=classic")),
            "{m}: {e}"
        );
    }
    let e = sasl(&[("sasl.mechanism", "PLAIN"), ("sasl.password", "p")]);
    assert!(
        matches!(&e, GroupError::Config(m) if m.contains("sasl.username")),
        "{e}"
    );
    let e = sasl(&[("sasl.mechanism", "SCRAM-SHA-512"), ("sasl.username", "u")]);
    assert!(
        matches!(&e, GroupError::Config(m) if m.contains("sasl.password")),
        "{e}"
    );
    let e = sasl(&[
        ("sasl.mechanism", "PLAIN"),
        ("sasl.mechanisms", "SCRAM-SHA-256"),
    ]);
    assert!(matches!(&e, GroupError::Config(_)), "{e}");
}

#[test]
fn debug_output_never_shows_the_password() {
    let s = parse(&[
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", "alice"),
        ("sasl.password", "hunter2-secret"),
    ])
    .unwrap();
    let shown = format!("{s:?}");
    assert!(
        shown.contains("alice") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[test]
fn sasl_responses_decode_and_short_ones_are_errors() {
    let mut w = Writer::default();
    w.i16(33);
    w.i32(2);
    w.legacy_nullable_string(Some("SCRAM-SHA-256"));
    w.legacy_nullable_string(Some("PLAIN"));
    assert_eq!(
        handshake_response(&w.buf).unwrap(),
        (33, vec!["SCRAM-SHA-256".to_string(), "PLAIN".to_string()])
    );
    for n in 0..w.buf.len() {
        assert!(handshake_response(&w.buf[..n]).is_err(), "{n} bytes");
    }

    let mut w = Writer::default();
    w.i16(58);
    w.compact_nullable_string(Some("bad credentials"));
    w.compact_bytes(b"r=abc");
    w.buf.extend_from_slice(&3_600_000i64.to_be_bytes());
    w.no_tags();
    assert_eq!(
        authenticate_response(&w.buf).unwrap(),
        (58, Some("bad credentials".to_string()), b"r=abc".to_vec())
    );
    for n in 0..w.buf.len() - 1 {
        assert!(authenticate_response(&w.buf[..n]).is_err(), "{n} bytes");
    }
    // A length beyond the frame, and a null string where one is required.
    assert!(authenticate_response(&[0, 0, 0, 0x7f, 1]).is_err());
    assert!(handshake_response(&[0, 0, 0, 0, 0, 1, 0xff, 0xff]).is_err());
}

/// A one-connection TLS server with `cert` that echoes one byte.
fn tls_echo_server(cert: &X509, key: &PKey<Private>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    b.set_certificate(cert).unwrap();
    b.set_private_key(key).unwrap();
    let acceptor = b.build();
    std::thread::spawn(move || {
        if let Ok((sock, _)) = listener.accept()
            && let Ok(mut s) = acceptor.accept(sock)
        {
            let mut byte = [0u8];
            if s.read_exact(&mut byte).is_ok() {
                let _ = s.write_all(&byte);
            }
        }
    });
    port
}

fn wrap_to(port: u16, host: &str, pairs: &[(&str, &str)]) -> GroupResult<Box<dyn Transport>> {
    let sec = parse(pairs).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    wrap(sock, host, &sec)
}

#[test]
fn tls_connects_to_a_trusted_broker_and_names_the_setting_when_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed("localhost");
    let ca = pem_file(&dir, "ca.pem", &cert.to_pem().unwrap());
    let (stranger, _) = self_signed("localhost");
    let untrusted = pem_file(&dir, "untrusted.pem", &stranger.to_pem().unwrap());
    fn ssl(ca: &str) -> Vec<(&str, &str)> {
        vec![("security.protocol", "SSL"), ("ssl.ca.location", ca)]
    }

    let mut s = wrap_to(tls_echo_server(&cert, &key), "localhost", &ssl(&ca)).unwrap();
    s.write_all(b"k").unwrap();
    let mut byte = [0u8];
    s.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"k");

    let e = wrap_to(tls_echo_server(&cert, &key), "localhost", &ssl(&untrusted)).err();
    assert!(
        matches!(&e, Some(GroupError::Auth(m)) if m.contains("ssl.ca.location")),
        "{e:?}"
    );

    // The certificate names localhost, not 127.0.0.1.
    let e = wrap_to(tls_echo_server(&cert, &key), "127.0.0.1", &ssl(&ca)).err();
    assert!(
        matches!(&e, Some(GroupError::Auth(m)) if m.contains("ssl.endpoint.identification.algorithm")),
        "{e:?}"
    );
    let mut no_check = ssl(&ca);
    no_check.push(("ssl.endpoint.identification.algorithm", "none"));
    assert!(wrap_to(tls_echo_server(&cert, &key), "127.0.0.1", &no_check).is_ok());
}

#[test]
fn tls_to_a_listener_that_closes_is_a_network_error_naming_security_protocol() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || drop(listener.accept()));
    let e = wrap_to(port, "localhost", &[("security.protocol", "SSL")]).err();
    assert!(
        matches!(&e, Some(GroupError::Io(m)) if m.contains("security.protocol")),
        "{e:?}"
    );
}
