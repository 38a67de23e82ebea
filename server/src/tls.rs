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

/// Makes a CA and a relay certificate for `name` in `dir`: `ca.pem`,
/// `ca.key`, `relay.pem`, `relay.key` (key files mode 0600). The relay
/// certificate names `localhost`, `127.0.0.1`, `::1` and `name`.
pub fn generate(dir: &Path, name: &str) -> Result<CertFiles, TlsError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let year = year_now();

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, format!("Spider relay CA ({name})"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    ca.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);

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
    let relay_cert = relay.signed_by(&relay_key, &issuer)?;

    let files = CertFiles {
        ca: Some(dir.join("ca.pem")),
        cert: dir.join("relay.pem"),
        key: dir.join("relay.key"),
    };
    write_file(&dir.join("ca.key"), &ca_key.serialize_pem(), true)?;
    write_file(&files.key, &relay_key.serialize_pem(), true)?;
    write_file(&dir.join("ca.pem"), &ca_cert.pem(), false)?;
    write_file(&files.cert, &relay_cert.pem(), false)?;
    Ok(files)
}

/// The development certificates under `dir`, made on first use.
pub fn ensure_dev_certs(dir: &Path, name: &str) -> Result<(CertFiles, bool), TlsError> {
    let files = CertFiles {
        ca: Some(dir.join("ca.pem")),
        cert: dir.join("relay.pem"),
        key: dir.join("relay.key"),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok((files, false));
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
}
