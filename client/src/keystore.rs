//! Encryption at rest: one random data key encrypts every record of a
//! profile; the data key is wrapped by a passphrase key (Argon2id), or, for
//! bots that chose so explicitly, stored unwrapped.
//!
//! # Header (key `meta/header`, not encrypted)
//!
//! | offset | length | field                                              |
//! |-------:|-------:|----------------------------------------------------|
//! | 0      | 1      | header version = `0x01`                            |
//! | 1      | ..     | postcard [`Protection`]                            |
//!
//! [`Protection::Argon2id`] holds the cost parameters, a 16-byte salt, a
//! 12-byte nonce and the 48-byte ChaCha20-Poly1305 encryption of the data key
//! under `Argon2id(passphrase, salt)`, with associated data
//! `"spider-profile-key/v1" || 0x00 || m || t || p (u32 BE each) || salt`, so
//! that lowering the stored cost parameters makes unwrapping fail rather than
//! weakening the next wrap. [`Protection::Unprotected`] holds the data key
//! itself: whoever reads the directory reads the profile.
//!
//! # Records (every other key)
//!
//! | offset | length | field                                              |
//! |-------:|-------:|----------------------------------------------------|
//! | 0      | 1      | record version = `0x01`                            |
//! | 1      | 12     | random nonce                                       |
//! | 13     | ..     | ChaCha20-Poly1305 ciphertext and 16-byte tag       |
//!
//! The associated data is `"spider-record/v1" || 0x00 || key`: a record
//! moved to another key (say, one contact's session swapped for another's)
//! fails to decrypt. Random 96-bit nonces are safe for far more records than
//! a profile writes under one key (2^32 before the collision bound matters).

use core::fmt;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit as _};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::store::{ProfileStore, StoreError};

/// Key of the header record.
pub const HEADER_KEY: &[u8] = b"meta/header";
/// Version byte of the header.
pub const HEADER_VERSION: u8 = 1;
/// Version byte of every encrypted record.
pub const RECORD_VERSION: u8 = 1;
/// Length of the per-record nonce.
pub const NONCE_LEN: usize = 12;
/// Length of the AEAD tag.
pub const TAG_LEN: usize = 16;
/// Length of the Argon2id salt (RFC 9106 §3.1 recommends 16 bytes).
pub const SALT_LEN: usize = 16;

const RECORD_AD_LABEL: &[u8] = b"spider-record/v1";
const WRAP_AD_LABEL: &[u8] = b"spider-profile-key/v1";

/// Argon2id memory cost in KiB: 64 MiB, RFC 9106 §4's second recommended
/// option (for memory-constrained settings) and OWASP's upper setting; a
/// laptop unlocks in well under a second, a GPU farm pays 64 MiB per guess.
pub const ARGON2_M_COST_KIB: u32 = 64 * 1024;
/// Argon2id passes: 3, RFC 9106 §4's choice to go with 64 MiB.
pub const ARGON2_T_COST: u32 = 3;
/// Argon2id lanes: 1, since the client may run on one core and more lanes
/// would not slow an attacker down.
pub const ARGON2_P_COST: u32 = 1;
/// Upper bound on the memory cost accepted from a header (1 GiB), so that a
/// hostile profile directory cannot make opening it exhaust memory.
pub const MAX_ARGON2_M_COST_KIB: u32 = 1024 * 1024;
/// Upper bound on passes accepted from a header.
pub const MAX_ARGON2_T_COST: u32 = 16;

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// The parameters new profiles use (see the constants for reasons).
    pub const RECOMMENDED: Self = Self {
        m_cost_kib: ARGON2_M_COST_KIB,
        t_cost: ARGON2_T_COST,
        p_cost: ARGON2_P_COST,
    };

    /// Cheapest valid Argon2id: for tests only, never for real profiles.
    #[doc(hidden)]
    pub const INSECURE_FOR_TESTS: Self = Self {
        m_cost_kib: 8,
        t_cost: 1,
        p_cost: 1,
    };
}

/// How a profile is unlocked.
pub enum Passphrase {
    /// No passphrase: the data key is stored unwrapped. For bots whose host
    /// protects the directory; the profile records this choice.
    None,
    /// A passphrase, wiped on drop.
    Secret(Zeroizing<String>),
}

impl Passphrase {
    /// Wraps a passphrase.
    pub fn new(s: impl Into<String>) -> Self {
        Self::Secret(Zeroizing::new(s.into()))
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("Passphrase::None"),
            Self::Secret(_) => f.write_str("Passphrase::Secret(..)"),
        }
    }
}

/// How the data key is kept, as recorded in the header.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub enum Protection {
    /// Stored in the clear (created with [`Passphrase::None`]).
    Unprotected {
        /// The data key.
        data_key: [u8; 32],
    },
    /// Wrapped by an Argon2id key.
    Argon2id {
        /// Memory in KiB.
        m_cost_kib: u32,
        /// Passes.
        t_cost: u32,
        /// Lanes.
        p_cost: u32,
        /// Salt.
        salt: [u8; SALT_LEN],
        /// Nonce of the wrap.
        nonce: [u8; NONCE_LEN],
        /// Encrypted data key and tag.
        wrapped: Vec<u8>,
    },
}

impl fmt::Debug for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unprotected { .. } => f.write_str("Unprotected(..)"),
            Self::Argon2id {
                m_cost_kib,
                t_cost,
                p_cost,
                ..
            } => f
                .debug_struct("Argon2id")
                .field("m_cost_kib", m_cost_kib)
                .field("t_cost", t_cost)
                .field("p_cost", p_cost)
                .finish_non_exhaustive(),
        }
    }
}

/// Opening, reading or writing the keystore failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// The passphrase does not unwrap the data key.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// The profile is protected by a passphrase and none was given.
    #[error("this profile is protected by a passphrase; give one")]
    PassphraseRequired,
    /// A passphrase was given for a profile created without one.
    #[error("this profile was created without a passphrase")]
    NotPassphraseProtected,
    /// No profile here.
    #[error("no profile here")]
    NoProfile,
    /// A profile already exists here.
    #[error("a profile already exists here")]
    AlreadyExists,
    /// The header or a record has a version this build does not know.
    #[error("unsupported keystore version {0}")]
    UnsupportedVersion(u8),
    /// The header is malformed or names out-of-range parameters.
    #[error("malformed profile header")]
    BadHeader,
    /// A record failed authentication: modified, truncated or moved.
    #[error("a stored record was tampered with or corrupted")]
    Tampered,
    /// A record decrypted but its contents do not decode.
    #[error("a stored record does not decode")]
    Corrupt,
    /// Argon2 refused the parameters.
    #[error("key derivation failed")]
    Kdf,
    /// The storage backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The 32-byte key that encrypts every record. Boxed, wiped on drop, never
/// printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct DataKey(Box<[u8; 32]>);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

fn derive_wrap_key(
    passphrase: &str,
    salt: &[u8; SALT_LEN],
    m: u32,
    t: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    if m > MAX_ARGON2_M_COST_KIB || t > MAX_ARGON2_T_COST || p != ARGON2_P_COST {
        return Err(KeystoreError::BadHeader);
    }
    let params = argon2::Params::new(m, t, p, Some(32)).map_err(|_| KeystoreError::Kdf)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, &mut out[..])
        .map_err(|_| KeystoreError::Kdf)?;
    Ok(out)
}

fn wrap_ad(m: u32, t: u32, p: u32, salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(WRAP_AD_LABEL.len() + 1 + 12 + SALT_LEN);
    ad.extend_from_slice(WRAP_AD_LABEL);
    ad.push(0);
    for v in [m, t, p] {
        ad.extend_from_slice(&v.to_be_bytes());
    }
    ad.extend_from_slice(salt);
    ad
}

fn record_ad(key: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(RECORD_AD_LABEL.len() + 1 + key.len());
    ad.extend_from_slice(RECORD_AD_LABEL);
    ad.push(0);
    ad.extend_from_slice(key);
    ad
}

fn seal(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    msg: &[u8],
) -> Result<Vec<u8>, KeystoreError> {
    ChaCha20Poly1305::new(key.into())
        .encrypt(nonce.into(), Payload { msg, aad: ad })
        .map_err(|_| KeystoreError::Corrupt)
}

fn open(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    msg: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    ChaCha20Poly1305::new(key.into())
        .decrypt(nonce.into(), Payload { msg, aad: ad })
        .ok()
        .map(Zeroizing::new)
}

/// Decrypted records as `(key, plaintext)`, the plaintext wiped on drop.
pub type PlainRecords = Vec<(Vec<u8>, Zeroizing<Vec<u8>>)>;

/// A [`ProfileStore`] seen through the data key: typed, encrypted records.
pub struct Keystore<S> {
    store: S,
    key: DataKey,
}

impl<S> fmt::Debug for Keystore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keystore").finish_non_exhaustive()
    }
}

impl<S: ProfileStore> Keystore<S> {
    /// Creates a keystore in an empty store: a fresh data key, protected as
    /// `passphrase` says (with `params` for a passphrase).
    ///
    /// # Errors
    /// [`KeystoreError::AlreadyExists`] if the store has a header already.
    pub fn create<R: CryptoRng + ?Sized>(
        mut store: S,
        passphrase: &Passphrase,
        params: KdfParams,
        rng: &mut R,
    ) -> Result<Self, KeystoreError> {
        if store.get(HEADER_KEY)?.is_some() {
            return Err(KeystoreError::AlreadyExists);
        }
        let mut key = DataKey(Box::new([0u8; 32]));
        rng.fill_bytes(&mut key.0[..]);
        let protection = match passphrase {
            Passphrase::None => Protection::Unprotected { data_key: *key.0 },
            Passphrase::Secret(p) => {
                let KdfParams {
                    m_cost_kib: m,
                    t_cost: t,
                    p_cost: pc,
                } = params;
                let mut salt = [0u8; SALT_LEN];
                rng.fill_bytes(&mut salt);
                let mut nonce = [0u8; NONCE_LEN];
                rng.fill_bytes(&mut nonce);
                let wrap = derive_wrap_key(p, &salt, m, t, pc)?;
                let wrapped = seal(&wrap, &nonce, &wrap_ad(m, t, pc, &salt), &key.0[..])?;
                Protection::Argon2id {
                    m_cost_kib: m,
                    t_cost: t,
                    p_cost: pc,
                    salt,
                    nonce,
                    wrapped,
                }
            }
        };
        let mut header = Zeroizing::new(vec![HEADER_VERSION]);
        let body = Zeroizing::new(
            postcard::to_allocvec(&protection).map_err(|_| KeystoreError::BadHeader)?,
        );
        header.extend_from_slice(&body);
        store.put(HEADER_KEY, &header)?;
        store.flush()?;
        Ok(Self { store, key })
    }

    /// Opens the keystore of `store`, unwrapping its data key.
    ///
    /// # Errors
    /// [`KeystoreError::NoProfile`], [`KeystoreError::PassphraseRequired`],
    /// [`KeystoreError::NotPassphraseProtected`],
    /// [`KeystoreError::WrongPassphrase`], [`KeystoreError::BadHeader`].
    pub fn open(store: S, passphrase: &Passphrase) -> Result<Self, KeystoreError> {
        let header = Zeroizing::new(store.get(HEADER_KEY)?.ok_or(KeystoreError::NoProfile)?);
        let (&version, body) = header.split_first().ok_or(KeystoreError::BadHeader)?;
        if version != HEADER_VERSION {
            return Err(KeystoreError::UnsupportedVersion(version));
        }
        let protection: Protection = match postcard::take_from_bytes(body) {
            Ok((p, [])) => p,
            _ => return Err(KeystoreError::BadHeader),
        };
        let key = match (&protection, passphrase) {
            (Protection::Unprotected { data_key }, Passphrase::None) => {
                DataKey(Box::new(*data_key))
            }
            (Protection::Unprotected { .. }, Passphrase::Secret(_)) => {
                return Err(KeystoreError::NotPassphraseProtected);
            }
            (Protection::Argon2id { .. }, Passphrase::None) => {
                return Err(KeystoreError::PassphraseRequired);
            }
            (
                Protection::Argon2id {
                    m_cost_kib,
                    t_cost,
                    p_cost,
                    salt,
                    nonce,
                    wrapped,
                },
                Passphrase::Secret(p),
            ) => {
                let wrap = derive_wrap_key(p, salt, *m_cost_kib, *t_cost, *p_cost)?;
                let ad = wrap_ad(*m_cost_kib, *t_cost, *p_cost, salt);
                let plain =
                    open(&wrap, nonce, &ad, wrapped).ok_or(KeystoreError::WrongPassphrase)?;
                let bytes: [u8; 32] = plain[..].try_into().map_err(|_| KeystoreError::BadHeader)?;
                DataKey(Box::new(bytes))
            }
        };
        Ok(Self { store, key })
    }

    /// Whether the profile was created without a passphrase.
    ///
    /// # Errors
    /// Backend failure or a malformed header.
    pub fn is_unprotected(&self) -> Result<bool, KeystoreError> {
        let header = Zeroizing::new(
            self.store
                .get(HEADER_KEY)?
                .ok_or(KeystoreError::NoProfile)?,
        );
        Ok(matches!(header.get(1), Some(0)))
    }

    /// Decrypts the record under `key`.
    ///
    /// # Errors
    /// [`KeystoreError::Tampered`] if it fails authentication.
    pub fn get_bytes(&self, key: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, KeystoreError> {
        match self.store.get(key)? {
            None => Ok(None),
            Some(raw) => self.decrypt(key, &raw).map(Some),
        }
    }

    fn decrypt(&self, key: &[u8], raw: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
        let (&version, rest) = raw.split_first().ok_or(KeystoreError::Tampered)?;
        if version != RECORD_VERSION {
            return Err(KeystoreError::UnsupportedVersion(version));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(KeystoreError::Tampered);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KeystoreError::Tampered)?;
        open(&self.key.0, &nonce, &record_ad(key), ct).ok_or(KeystoreError::Tampered)
    }

    /// Encrypts `value` under `key` with a fresh nonce from `rng`.
    ///
    /// # Errors
    /// Backend failure.
    pub fn put_bytes<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), KeystoreError> {
        if key == HEADER_KEY {
            return Err(KeystoreError::BadHeader);
        }
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let ct = seal(&self.key.0, &nonce, &record_ad(key), value)?;
        let mut raw = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        raw.push(RECORD_VERSION);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ct);
        self.store.put(key, &raw)?;
        Ok(())
    }

    /// Reads and decodes a postcard record.
    ///
    /// # Errors
    /// As [`Self::get_bytes`], and [`KeystoreError::Corrupt`].
    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, KeystoreError> {
        match self.get_bytes(key)? {
            None => Ok(None),
            Some(bytes) => match postcard::take_from_bytes(&bytes) {
                Ok((v, [])) => Ok(Some(v)),
                _ => Err(KeystoreError::Corrupt),
            },
        }
    }

    /// Encodes (postcard) and writes a record; the plaintext buffer is wiped.
    ///
    /// # Errors
    /// As [`Self::put_bytes`].
    pub fn put<T: Serialize, R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        key: &[u8],
        value: &T,
    ) -> Result<(), KeystoreError> {
        let bytes =
            Zeroizing::new(postcard::to_allocvec(value).map_err(|_| KeystoreError::Corrupt)?);
        self.put_bytes(rng, key, &bytes)
    }

    /// Deletes a record.
    ///
    /// # Errors
    /// Backend failure.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), KeystoreError> {
        self.store.delete(key)?;
        Ok(())
    }

    /// Decrypts every record whose key starts with `prefix`, in key order.
    ///
    /// # Errors
    /// As [`Self::get_bytes`].
    pub fn scan_bytes(&self, prefix: &[u8]) -> Result<PlainRecords, KeystoreError> {
        self.store
            .scan_prefix(prefix)?
            .into_iter()
            .filter(|(k, _)| k != HEADER_KEY)
            .map(|(k, raw)| {
                let v = self.decrypt(&k, &raw)?;
                Ok((k, v))
            })
            .collect()
    }

    /// Decodes every record under `prefix`.
    ///
    /// # Errors
    /// As [`Self::scan_bytes`], and [`KeystoreError::Corrupt`].
    pub fn scan<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, T)>, KeystoreError> {
        self.scan_bytes(prefix)?
            .into_iter()
            .map(|(k, v)| match postcard::take_from_bytes(&v) {
                Ok((t, [])) => Ok((k, t)),
                _ => Err(KeystoreError::Corrupt),
            })
            .collect()
    }

    /// Makes every write durable.
    ///
    /// # Errors
    /// Backend failure.
    pub fn flush(&mut self) -> Result<(), KeystoreError> {
        self.store.flush()?;
        Ok(())
    }

    /// The underlying store (encrypted records).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the underlying store back (to reopen it in a test).
    pub fn into_store(self) -> S {
        // DataKey wipes itself when `self.key` drops here.
        let Self { store, key } = self;
        drop(key);
        store
    }
}
