//! TLS: development certificates (rcgen) and the rustls server configuration
//! shared by both listeners.
//!
//! TLS 1.3 only, ring provider, ALPN `spider/1`. Without a configured
//! certificate the relay makes a development CA and a relay certificate under
//! `DATA/certs/` on first start and reuses them afterwards; clients pin
//! `ca.pem`. `spider-relay gen-certs` makes the same files for a deployment.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why certificates could not be made or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// rcgen could not make a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: no usable PEM {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Certificate or key.
        what: &'static str,
    },
    /// rustls refused the certificate or key.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the certificate files are.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The CA certificate clients pin (`None` for an operator-supplied chain).
    pub ca: Option<PathBuf>,
    /// The relay's certificate chain.
    pub cert: PathBuf,
    /// The relay's private key.
    pub key: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `data` to `path`, readable by the owner only when `secret`.
fn write_file(path: &Path, data: &str, secret: bool) -> Result<(), TlsError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if secret {
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io(path))?;
    if secret {
        // The file may have existed with wider permissions.
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io(path))?;
    }
    f.write_all(data.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn year_now() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Good to within a day, which is all a validity period needs.
    1970 + (secs / 31_556_952) as i32
}

/// The development CA's parameters. Constant (the name is not in it), so
/// that a relay certificate for a new name can be issued by the CA already
/// on disk, which clients may have pinned.
fn ca_params(year: i32) -> Result<CertificateParams, TlsError> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "Spider relay development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    ca.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
    Ok(ca)
}

/// Issues `relay.pem` / `relay.key` for `name` under `issuer`, and records
/// the name in `relay.name`.
fn issue_relay(
    dir: &Path,
    name: &str,
    issuer: &Issuer<'_, &KeyPair>,
    year: i32,
) -> Result<CertFiles, TlsError> {
    let mut sans = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !sans.iter().any(|s| s == name) {
        sans.push(name.to_owned());
    }
    let relay_key = KeyPair::generate()?;
    let mut relay = CertificateParams::new(sans)?;
    relay.distinguished_name.push(DnType::CommonName, name);
    relay.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    relay.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    relay.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    relay.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
    let relay_cert = relay.signed_by(&relay_key, issuer)?;
    let files = CertFiles {
        ca: Some(dir.join("ca.pem")),
        cert: dir.join("relay.pem"),
        key: dir.join("relay.key"),
    };
    write_file(&files.key, &relay_key.serialize_pem(), true)?;
    write_file(&files.cert, &relay_cert.pem(), false)?;
    write_file(&dir.join("relay.name"), name, false)?;
    Ok(files)
}

/// Makes a CA and a relay certificate for `name` in `dir`: `ca.pem`,
/// `ca.key`, `relay.pem`, `relay.key` (key files mode 0600). The relay
/// certificate names `localhost`, `127.0.0.1`, `::1` and `name`.
pub fn generate(dir: &Path, name: &str) -> Result<CertFiles, TlsError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let year = year_now();
    let ca_key = KeyPair::generate()?;
    let ca = ca_params(year)?;
    let ca_cert = ca.self_signed(&ca_key)?;
    write_file(&dir.join("ca.key"), &ca_key.serialize_pem(), true)?;
    write_file(&dir.join("ca.pem"), &ca_cert.pem(), false)?;
    let issuer = Issuer::new(ca, &ca_key);
    issue_relay(dir, name, &issuer, year)
}

/// The development certificates under `dir`, made on first use. If the
/// relay's name changed, a new relay certificate is issued by the existing
/// CA, so that clients keep their pin. Returns whether anything was made.
pub fn ensure_dev_certs(dir: &Path, name: &str) -> Result<(CertFiles, bool), TlsError> {
    let files = CertFiles {
        ca: Some(dir.join("ca.pem")),
        cert: dir.join("relay.pem"),
        key: dir.join("relay.key"),
    };
    let same_name = fs::read_to_string(dir.join("relay.name")).is_ok_and(|n| n == name);
    if files.cert.exists() && files.key.exists() && same_name {
        return Ok((files, false));
    }
    let ca_key = dir.join("ca.key");
    if dir.join("ca.pem").exists() && ca_key.exists() {
        let pem = fs::read_to_string(&ca_key).map_err(io(&ca_key))?;
        let key = KeyPair::from_pem(&pem)?;
        let year = year_now();
        let issuer = Issuer::new(ca_params(year)?, &key);
        return issue_relay(dir, name, &issuer, year).map(|f| (f, true));
    }
    generate(dir, name).map(|f| (f, true))
}

/// Loads a PEM certificate chain and private key.
pub fn load(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
        .map_err(|_| TlsError::Pem {
            path: cert.to_owned(),
            what: "certificate",
        })?
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem {
            path: cert.to_owned(),
            what: "certificate",
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.to_owned(),
            what: "certificate",
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|_| TlsError::Pem {
        path: key.to_owned(),
        what: "private key",
    })?;
    Ok((chain, key))
}

/// The rustls server configuration: TLS 1.3 only, ring, ALPN `spider/1`,
/// no client certificates, no 0-RTT.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![spider_protocol::version::ALPN.to_vec()];
    // Early data can be replayed; nothing the relay does wants that.
    cfg.max_early_data_size = 0;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certs_are_made_once_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let (files, made) = ensure_dev_certs(&certs, "relay.test").unwrap();
        assert!(made);
        for k in ["ca.key", "relay.key"] {
            let mode = fs::metadata(certs.join(k)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{k}");
        }
        let (chain, key) = load(&files.cert, &files.key).unwrap();
        server_config(chain, key).unwrap();
        let before = fs::read(&files.cert).unwrap();
        let (_, made) = ensure_dev_certs(&certs, "relay.test").unwrap();
        assert!(!made);
        assert_eq!(fs::read(&files.cert).unwrap(), before);
    }

    fn verify(certs: &Path, name: &str) -> Result<(), rustls::Error> {
        use rustls::client::danger::ServerCertVerifier;
        let ca = CertificateDer::from_pem_file(certs.join("ca.pem")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let (chain, _) = load(&certs.join("relay.pem"), &certs.join("relay.key")).unwrap();
        v.verify_server_cert(
            &chain[0],
            &[],
            &rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .map(|_| ())
    }

    #[test]
    fn a_new_relay_name_gets_a_new_certificate_from_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        ensure_dev_certs(&certs, "one.test").unwrap();
        let ca = fs::read(certs.join("ca.pem")).unwrap();
        verify(&certs, "one.test").unwrap();
        verify(&certs, "localhost").unwrap();
        verify(&certs, "127.0.0.1").unwrap();
        assert!(verify(&certs, "two.test").is_err());
        let (_, made) = ensure_dev_certs(&certs, "two.test").unwrap();
        assert!(made);
        assert_eq!(fs::read(certs.join("ca.pem")).unwrap(), ca);
        verify(&certs, "two.test").unwrap();
        verify(&certs, "::1").unwrap();
    }
}
