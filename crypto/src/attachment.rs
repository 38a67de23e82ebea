//! Attachments: files encrypted in fixed-size chunks with a fresh key each.
//!
//! The client encrypts a file with a fresh random 32-byte [`AttachmentKey`],
//! uploads the ciphertext as an opaque blob, and sends an
//! [`AttachmentPointer`] (blob id, key, SHA-256 digest of the blob, plaintext
//! size) inside an ordinary end-to-end encrypted message. The relay stores the
//! blob and can check its digest, but cannot read it.
//!
//! Encryption is the STREAM construction of Hoang, Reyhanitabar, Rogaway and
//! Vizár ("Online Authenticated-Encryption and its Nonce-Reuse
//! Misuse-Resistance", CRYPTO 2015, §7), as implemented by RustCrypto's
//! [`aead_stream`] crate (`StreamBE32`, the successor of aead 0.5's `stream`
//! module) over ChaCha20-Poly1305. Chunk `i` is sealed under the nonce
//!
//! ```text
//! nonce_i = prefix (7 bytes) || i as u32 big-endian (4 bytes) || last flag (1 byte: 0x01 on the final chunk, else 0x00)
//! stream key || prefix = HKDF-SHA256(salt = 32 zero bytes, IKM = attachment key,
//!                                    info = KDF_ATTACHMENT_STREAM)[0..39]
//! AD = [ATTACHMENT_VERSION]
//! ```
//!
//! so a reordered, dropped, duplicated or appended chunk, a truncated blob (no
//! chunk carries the last flag where it is expected) and a chunk from another
//! file (another key) all fail authentication. Memory stays bounded by two
//! chunks whatever the file size.
//!
//! # Blob layout (what the relay stores)
//!
//! | Offset | Length | Field |
//! |-------:|-------:|-------|
//! | 0 | [`ENCRYPTED_CHUNK_SIZE`] | chunk 0: [`CHUNK_SIZE`] plaintext bytes sealed, tag last |
//! | … | … | chunks 1 … n−2, each exactly [`ENCRYPTED_CHUNK_SIZE`] |
//! | (n−1)·[`ENCRYPTED_CHUNK_SIZE`] | 16 … [`ENCRYPTED_CHUNK_SIZE`] | final chunk (last flag set): 0 … [`CHUNK_SIZE`] plaintext bytes |
//!
//! There is no header: the version lives in the pointer, which is authenticated
//! by the message that carries it. An empty file is one final chunk of 16
//! bytes. [`encrypt_reader`] never emits an empty final chunk after a full one,
//! but decryption accepts it.
//!
//! # Walkthrough
//!
//! ```
//! use spider_crypto::attachment::{decrypt_reader, encrypt_reader, AttachmentPointer, BlobId};
//! # use rand_chacha::ChaCha20Rng; use rand_core::SeedableRng;
//! # let mut rng = ChaCha20Rng::seed_from_u64(1); // a real caller passes an OS-backed CryptoRng
//! let file = vec![42u8; 200_000];
//! let mut blob = Vec::new();
//! let sealed = encrypt_reader(&mut rng, file.as_slice(), &mut blob)?;
//! // ... upload `blob`; the relay answers with its id ...
//! let pointer = AttachmentPointer::new(BlobId::new(b"blob-1234".to_vec())?, sealed);
//! // ... `pointer` travels inside an encrypted message ...
//! let mut out = Vec::new();
//! decrypt_reader(&pointer, blob.as_slice(), &mut out)?;
//! assert_eq!(out, file);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # `AttachmentPointer` encoding
//!
//! A serde struct: `version: u8`, `blob_id: bytes (≤ MAX_BLOB_ID_LEN)`,
//! `key: [u8; 32]`, `digest: [u8; 32]`, `size: u64`. With postcard
//! ([`AttachmentPointer::to_bytes`]) that is the version byte, a varint length
//! and the blob id bytes, 32 key bytes, 32 digest bytes and a varint size.

use core::fmt;
use std::io::{self, Read, Write};

use aead_stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::domain::KDF_ATTACHMENT_STREAM;

/// Version of the attachment format, carried in the pointer and bound as the
/// associated data of every chunk.
pub const ATTACHMENT_VERSION: u8 = 0x01;

/// Plaintext bytes per chunk.
///
/// Reason: 64 KiB amortises the 16-byte tag (0.02 % overhead) and the
/// per-chunk call cost while keeping the two buffers a decryptor needs small.
/// Fixed, so that a chunk boundary leaks nothing the size does not.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Length of the Poly1305 tag sealed onto each chunk.
pub const TAG_LEN: usize = 16;
/// Bytes per non-final chunk in the blob.
pub const ENCRYPTED_CHUNK_SIZE: usize = CHUNK_SIZE + TAG_LEN;

/// Longest blob id accepted in a pointer.
///
/// Reason: blob ids are relay-chosen opaque handles (a UUID or a hash); 64
/// bytes fits either in text form and bounds what a peer can make us store.
pub const MAX_BLOB_ID_LEN: usize = 64;

/// Length of the STREAM nonce prefix (12-byte ChaCha20-Poly1305 nonce minus
/// the 4-byte counter and 1-byte last flag).
const NONCE_PREFIX_LEN: usize = 7;

/// Blob digest: SHA-256 of the whole ciphertext blob.
pub type BlobDigest = [u8; 32];

// ---------------------------------------------------------------------------
// Keys, ids, pointer
// ---------------------------------------------------------------------------

/// The random 32-byte key of one file. Boxed and wiped on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
pub struct AttachmentKey(Box<[u8; 32]>);

impl AttachmentKey {
    /// Draws a fresh key. Never reuse one for a second file.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Self(Box::new([0u8; 32]));
        rng.fill_bytes(key.0.as_mut_slice());
        key
    }

    /// Wraps key bytes (for example from a test vector).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Box::new(bytes))
    }

    /// The key bytes. The reference points into the wiped box; copies the
    /// caller makes are its own to wipe.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The STREAM's cipher and nonce prefix, derived so that the raw file key
    /// is never used directly as a cipher key (domain separation).
    fn stream_parts(&self) -> (ChaCha20Poly1305, [u8; NONCE_PREFIX_LEN]) {
        let okm = crate::kdf::hkdf_fixed::<{ 32 + NONCE_PREFIX_LEN }>(
            &crate::kdf::ZERO_SALT,
            self.0.as_slice(),
            KDF_ATTACHMENT_STREAM,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&okm[..32]);
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        prefix.copy_from_slice(&okm[32..]);
        (ChaCha20Poly1305::new(&(*key).into()), prefix)
    }
}

impl fmt::Debug for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AttachmentKey(<redacted>)")
    }
}

/// The relay's opaque id of an uploaded blob, at most [`MAX_BLOB_ID_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<u8>", into = "Vec<u8>")]
pub struct BlobId(Vec<u8>);

/// A blob id longer than [`MAX_BLOB_ID_LEN`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("blob id too long: {len} bytes")]
pub struct BlobIdTooLong {
    /// Length of the refused id.
    pub len: usize,
}

impl BlobId {
    /// Wraps an id, refusing one longer than [`MAX_BLOB_ID_LEN`].
    pub fn new(id: Vec<u8>) -> Result<Self, BlobIdTooLong> {
        if id.len() > MAX_BLOB_ID_LEN {
            return Err(BlobIdTooLong { len: id.len() });
        }
        Ok(Self(id))
    }

    /// The id bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl TryFrom<Vec<u8>> for BlobId {
    type Error = BlobIdTooLong;

    fn try_from(id: Vec<u8>) -> Result<Self, BlobIdTooLong> {
        Self::new(id)
    }
}

impl From<BlobId> for Vec<u8> {
    fn from(id: BlobId) -> Self {
        id.0
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({} bytes)", self.0.len())
    }
}

/// What encrypting a file produced: everything of the pointer but the blob
/// id, which the relay assigns on upload.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedAttachment {
    /// The file's key.
    pub key: AttachmentKey,
    /// SHA-256 of the blob.
    pub digest: BlobDigest,
    /// Plaintext size in bytes.
    pub size: u64,
}

impl fmt::Debug for SealedAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedAttachment")
            .field("key", &self.key)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// What the client sends, inside an ordinary encrypted message, so that the
/// recipient can fetch, check and decrypt the blob.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentPointer {
    /// [`ATTACHMENT_VERSION`].
    pub version: u8,
    /// The relay's id of the blob.
    pub blob_id: BlobId,
    /// The file's key (secret).
    pub key: AttachmentKey,
    /// SHA-256 of the blob, checked before decrypting.
    pub digest: BlobDigest,
    /// Plaintext size in bytes, checked after decrypting.
    pub size: u64,
}

/// Why a pointer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PointerDecodeError {
    /// Not a postcard-encoded pointer, trailing bytes, or a blob id longer
    /// than [`MAX_BLOB_ID_LEN`].
    #[error("malformed attachment pointer")]
    Malformed,
    /// The version is not [`ATTACHMENT_VERSION`].
    #[error("unsupported attachment version {found}")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
}

/// Longest postcard-encoded pointer: version, varint + id, key, digest, varint size.
const MAX_POINTER_LEN: usize = 1 + 1 + MAX_BLOB_ID_LEN + 32 + 32 + 10;

// The key wipes itself on drop.
impl ZeroizeOnDrop for AttachmentPointer {}
// The key wipes itself on drop.
impl ZeroizeOnDrop for SealedAttachment {}

impl AttachmentPointer {
    /// Builds the pointer once the relay has assigned the blob id.
    pub fn new(blob_id: BlobId, sealed: SealedAttachment) -> Self {
        Self {
            version: ATTACHMENT_VERSION,
            blob_id,
            key: sealed.key,
            digest: sealed.digest,
            size: sealed.size,
        }
    }

    /// Postcard encoding, in a buffer wiped on drop (it holds the key).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        #[allow(clippy::expect_used)]
        let bytes = postcard::to_allocvec(self)
            .expect("postcard cannot fail to encode plain structs into a Vec");
        Zeroizing::new(bytes)
    }

    /// Decodes a pointer written by [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PointerDecodeError> {
        if bytes.len() > MAX_POINTER_LEN {
            return Err(PointerDecodeError::Malformed);
        }
        if let Some(&v) = bytes.first()
            && v != ATTACHMENT_VERSION
        {
            return Err(PointerDecodeError::UnsupportedVersion { found: v });
        }
        match postcard::take_from_bytes::<Self>(bytes) {
            // Only the canonical encoding is accepted (postcard would also
            // take over-long varints), so one pointer has one byte form.
            Ok((p, [])) if p.to_bytes().as_slice() == bytes => Ok(p),
            _ => Err(PointerDecodeError::Malformed),
        }
    }
}

impl fmt::Debug for AttachmentPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentPointer")
            .field("version", &self.version)
            .field("blob_id", &self.blob_id)
            .field("key", &self.key)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a file could not be encrypted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// A non-final chunk was not exactly [`CHUNK_SIZE`] bytes, or the final
    /// one was longer.
    #[error("attachment chunk of {len} bytes has the wrong size")]
    WrongChunkSize {
        /// Length of the refused chunk.
        len: usize,
    },
    /// The file needs more than 2³² − 1 chunks (256 TiB).
    #[error("attachment too large")]
    TooLarge,
    /// Reading the file or writing the blob failed.
    #[error("attachment I/O failed")]
    Io(#[source] io::Error),
}

/// Why a blob could not be decrypted. Plaintext already written by
/// [`decrypt_reader`] (or returned by [`AttachmentDecryptor::decrypt_chunk`])
/// must then be discarded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The pointer's version is not [`ATTACHMENT_VERSION`].
    #[error("unsupported attachment version {found}")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// A non-final chunk was not exactly [`ENCRYPTED_CHUNK_SIZE`] bytes, or
    /// the final one was shorter than a tag or longer than a chunk.
    #[error("encrypted attachment chunk of {len} bytes has the wrong size")]
    WrongChunkSize {
        /// Length of the refused chunk.
        len: usize,
    },
    /// A chunk failed authentication: flipped bits, chunks reordered,
    /// dropped, appended or taken from another file, or a truncated blob.
    #[error("attachment chunk {index} failed authentication")]
    ChunkRejected {
        /// Index of the chunk, from 0.
        index: u64,
    },
    /// The blob's SHA-256 is not the pointer's digest.
    #[error("attachment blob digest mismatch")]
    DigestMismatch,
    /// The decrypted size is not the pointer's size.
    #[error("attachment size does not match its pointer")]
    SizeMismatch,
    /// A previous chunk failed; this decryptor refuses to go on.
    #[error("attachment decryptor already failed")]
    Poisoned,
    /// Reading the blob or writing the file failed.
    #[error("attachment I/O failed")]
    Io(#[source] io::Error),
}

// ---------------------------------------------------------------------------
// Chunk-at-a-time encryption and decryption
// ---------------------------------------------------------------------------

const AD: &[u8] = &[ATTACHMENT_VERSION];

/// Encrypts a file one chunk at a time: [`Self::encrypt_chunk`] for each full
/// [`CHUNK_SIZE`] chunk, then [`Self::finish`] with the rest (possibly empty).
/// Concatenating the outputs gives the blob.
pub struct AttachmentEncryptor {
    key: AttachmentKey,
    stream: EncryptorBE32<ChaCha20Poly1305>,
    hasher: Sha256,
    size: u64,
}

impl fmt::Debug for AttachmentEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentEncryptor")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl AttachmentEncryptor {
    /// Starts a file under a fresh random key.
    pub fn new<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::with_key(AttachmentKey::random(rng))
    }

    /// Starts a file under `key`, which must never have encrypted another
    /// file (for test vectors; prefer [`Self::new`]).
    pub fn with_key(key: AttachmentKey) -> Self {
        let (cipher, prefix) = key.stream_parts();
        Self {
            stream: EncryptorBE32::from_aead(cipher, &prefix.into()),
            key,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Encrypts one full, non-final chunk of exactly [`CHUNK_SIZE`] bytes.
    pub fn encrypt_chunk(&mut self, chunk: &[u8]) -> Result<Vec<u8>, EncryptError> {
        if chunk.len() != CHUNK_SIZE {
            return Err(EncryptError::WrongChunkSize { len: chunk.len() });
        }
        let mut buf = Vec::with_capacity(ENCRYPTED_CHUNK_SIZE);
        buf.extend_from_slice(chunk);
        self.stream
            .encrypt_next_in_place(AD, &mut buf)
            .map_err(|_| EncryptError::TooLarge)?;
        self.hasher.update(&buf);
        self.size += CHUNK_SIZE as u64;
        Ok(buf)
    }

    /// Encrypts the final chunk (0 to [`CHUNK_SIZE`] bytes) and returns it with
    /// the key, blob digest and size for the pointer.
    pub fn finish(self, last: &[u8]) -> Result<(Vec<u8>, SealedAttachment), EncryptError> {
        if last.len() > CHUNK_SIZE {
            return Err(EncryptError::WrongChunkSize { len: last.len() });
        }
        let Self {
            key,
            stream,
            mut hasher,
            size,
        } = self;
        let mut buf = Vec::with_capacity(last.len() + TAG_LEN);
        buf.extend_from_slice(last);
        stream
            .encrypt_last_in_place(AD, &mut buf)
            .map_err(|_| EncryptError::TooLarge)?;
        hasher.update(&buf);
        let sealed = SealedAttachment {
            key,
            digest: hasher.finalize().into(),
            size: size + last.len() as u64,
        };
        Ok((buf, sealed))
    }
}

/// Decrypts a blob one chunk at a time: [`Self::decrypt_chunk`] for each
/// non-final chunk, then [`Self::finish`] with the final one, which also
/// checks the pointer's digest and size.
///
/// Each chunk is authenticated before its plaintext is returned, but only a
/// successful [`Self::finish`] proves the file complete and equal to the
/// pointer's blob: do not act on the plaintext before.
pub struct AttachmentDecryptor {
    stream: DecryptorBE32<ChaCha20Poly1305>,
    hasher: Sha256,
    digest: BlobDigest,
    expected_size: u64,
    size: u64,
    index: u64,
    failed: bool,
}

impl fmt::Debug for AttachmentDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentDecryptor")
            .field("index", &self.index)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl AttachmentDecryptor {
    /// Starts decrypting the blob `pointer` names.
    pub fn new(pointer: &AttachmentPointer) -> Result<Self, DecryptError> {
        if pointer.version != ATTACHMENT_VERSION {
            return Err(DecryptError::UnsupportedVersion {
                found: pointer.version,
            });
        }
        let (cipher, prefix) = pointer.key.stream_parts();
        Ok(Self {
            stream: DecryptorBE32::from_aead(cipher, &prefix.into()),
            hasher: Sha256::new(),
            digest: pointer.digest,
            expected_size: pointer.size,
            size: 0,
            index: 0,
            failed: false,
        })
    }

    /// Decrypts one non-final chunk of exactly [`ENCRYPTED_CHUNK_SIZE`] bytes.
    pub fn decrypt_chunk(&mut self, chunk: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        if self.failed {
            return Err(DecryptError::Poisoned);
        }
        if chunk.len() != ENCRYPTED_CHUNK_SIZE {
            self.failed = true;
            return Err(DecryptError::WrongChunkSize { len: chunk.len() });
        }
        self.hasher.update(chunk);
        let mut buf = Zeroizing::new(chunk.to_vec());
        if self.stream.decrypt_next_in_place(AD, &mut *buf).is_err() {
            self.failed = true;
            return Err(DecryptError::ChunkRejected { index: self.index });
        }
        self.index += 1;
        self.size += CHUNK_SIZE as u64;
        Ok(buf)
    }

    /// Decrypts the final chunk (16 to [`ENCRYPTED_CHUNK_SIZE`] bytes), then
    /// checks the blob digest and the file size against the pointer.
    pub fn finish(mut self, chunk: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        if self.failed {
            return Err(DecryptError::Poisoned);
        }
        if chunk.len() < TAG_LEN || chunk.len() > ENCRYPTED_CHUNK_SIZE {
            return Err(DecryptError::WrongChunkSize { len: chunk.len() });
        }
        self.hasher.update(chunk);
        let mut buf = Zeroizing::new(chunk.to_vec());
        let index = self.index;
        if self.stream.decrypt_last_in_place(AD, &mut *buf).is_err() {
            return Err(DecryptError::ChunkRejected { index });
        }
        let digest: BlobDigest = self.hasher.finalize().into();
        // Not secret: comparing a public hash, no need for constant time.
        if digest != self.digest {
            return Err(DecryptError::DigestMismatch);
        }
        if self.size + buf.len() as u64 != self.expected_size {
            return Err(DecryptError::SizeMismatch);
        }
        Ok(buf)
    }
}

// ---------------------------------------------------------------------------
// Reader / writer convenience
// ---------------------------------------------------------------------------

/// Reads until `buf` is full or the reader is exhausted; returns the count.
fn fill<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Encrypts everything `file` yields into `blob` under a fresh key, holding
/// two chunks in memory at most, and returns what the pointer needs.
pub fn encrypt_reader<R, F, B>(
    rng: &mut R,
    mut file: F,
    mut blob: B,
) -> Result<SealedAttachment, EncryptError>
where
    R: CryptoRng + ?Sized,
    F: Read,
    B: Write,
{
    let mut enc = AttachmentEncryptor::new(rng);
    // Read one chunk ahead, so that the final chunk gets the last flag even
    // when the size is a multiple of CHUNK_SIZE.
    let mut current = Zeroizing::new(vec![0u8; CHUNK_SIZE]);
    let mut next = Zeroizing::new(vec![0u8; CHUNK_SIZE]);
    let mut len = fill(&mut file, &mut current).map_err(EncryptError::Io)?;
    loop {
        let next_len = if len == CHUNK_SIZE {
            fill(&mut file, &mut next).map_err(EncryptError::Io)?
        } else {
            0
        };
        if next_len == 0 {
            let (out, sealed) = enc.finish(&current[..len])?;
            blob.write_all(&out).map_err(EncryptError::Io)?;
            blob.flush().map_err(EncryptError::Io)?;
            return Ok(sealed);
        }
        let out = enc.encrypt_chunk(&current)?;
        blob.write_all(&out).map_err(EncryptError::Io)?;
        core::mem::swap(&mut current, &mut next);
        len = next_len;
    }
}

/// Decrypts the blob `pointer` names from `blob` into `file`, holding two
/// chunks in memory at most. Checks every chunk, then the digest and size:
/// on any error, discard what was written to `file`.
pub fn decrypt_reader<B, F>(
    pointer: &AttachmentPointer,
    mut blob: B,
    mut file: F,
) -> Result<(), DecryptError>
where
    B: Read,
    F: Write,
{
    let mut dec = AttachmentDecryptor::new(pointer)?;
    let mut current = vec![0u8; ENCRYPTED_CHUNK_SIZE];
    let mut next = vec![0u8; ENCRYPTED_CHUNK_SIZE];
    let mut len = fill(&mut blob, &mut current).map_err(DecryptError::Io)?;
    loop {
        let next_len = if len == ENCRYPTED_CHUNK_SIZE {
            fill(&mut blob, &mut next).map_err(DecryptError::Io)?
        } else {
            0
        };
        if next_len == 0 {
            let out = dec.finish(&current[..len])?;
            file.write_all(&out).map_err(DecryptError::Io)?;
            file.flush().map_err(DecryptError::Io)?;
            return Ok(());
        }
        let out = dec.decrypt_chunk(&current)?;
        file.write_all(&out).map_err(DecryptError::Io)?;
        core::mem::swap(&mut current, &mut next);
        len = next_len;
    }
}

/// SHA-256 of a blob, streamed: what the relay stores and what the pointer
/// commits to.
pub fn blob_digest<B: Read>(mut blob: B) -> io::Result<BlobDigest> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; ENCRYPTED_CHUNK_SIZE];
    loop {
        let n = fill(&mut blob, &mut buf)?;
        hasher.update(&buf[..n]);
        if n < buf.len() {
            return Ok(hasher.finalize().into());
        }
    }
}

/// Checks a downloaded blob against the pointer's digest before decrypting.
pub fn verify_blob<B: Read>(pointer: &AttachmentPointer, blob: B) -> Result<(), DecryptError> {
    if blob_digest(blob).map_err(DecryptError::Io)? == pointer.digest {
        Ok(())
    } else {
        Err(DecryptError::DigestMismatch)
    }
}

/// Entry points for cargo-fuzz targets (one per parser of untrusted bytes).
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Decodes an [`AttachmentPointer`].
    #[allow(clippy::panic)]
    pub fn attachment_pointer(data: &[u8]) {
        if let Ok(p) = AttachmentPointer::from_bytes(data)
            && p.to_bytes().as_slice() != data
        {
            panic!("AttachmentPointer does not round-trip");
        }
    }

    /// Decrypts arbitrary bytes as a blob under a fixed key: must fail cleanly.
    pub fn attachment_blob(data: &[u8]) {
        let pointer = AttachmentPointer {
            version: ATTACHMENT_VERSION,
            blob_id: BlobId(Vec::new()),
            key: AttachmentKey::from_bytes([7; 32]),
            digest: [0; 32],
            size: data.len() as u64,
        };
        let _ = decrypt_reader(&pointer, data, io::sink());
    }
}
