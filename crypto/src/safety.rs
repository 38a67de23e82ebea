//! Safety numbers: what two users compare, out of band, to rule out a
//! man-in-the-middle on their 1:1 sessions.
//!
//! This is Signal's `NumericFingerprint` (libsignal
//! `rust/protocol/src/fingerprint.rs`) applied to Spider's identity, which is
//! an Ed25519 signing key *and* an X25519 key bound to it. For each side:
//!
//! ```text
//! key    = ed25519_public (32) || x25519_public (32)
//! h_1    = SHA-512(version (u16 BE) || key || username || key)
//! h_k+1  = SHA-512(h_k || key)                 for k = 1 .. ITERATIONS − 1
//! digits = for each of the first six 5-byte blocks b of h_ITERATIONS:
//!          (b as a 40-bit big-endian integer) mod 100000, as 5 digits
//! ```
//!
//! Both sides' 30 digits are concatenated in sorted (string) order, so both
//! users see the same 60 digits, shown as 12 groups of 5. The iteration count
//! makes grinding a key whose number collides with a target's costly, as in
//! Signal (5200 iterations, about 2^112 work for a 100-bit match).
//!
//! # Compact form (to scan or paste)
//!
//! [`CompactSafetyNumber`] is [`COMPACT_LEN`] bytes, identical on both sides:
//!
//! | Offset | Length | Field |
//! |-------:|-------:|-------|
//! | 0 | 1 | version ([`COMPACT_VERSION`]) |
//! | 1 | 32 | the smaller (bytewise) of the two sides' `h_ITERATIONS[0..32]` |
//! | 33 | 32 | the larger one |
//!
//! Its text form is RFC 4648 base32 (upper case, no padding) of those bytes
//! followed by a 4-byte checksum `SHA-256(bytes)[0..4]`, in groups of four
//! characters joined by `-`. Parsing ignores case, spaces and dashes; the
//! checksum tells a typo ([`CompactParseError::BadChecksum`]) apart from a
//! genuine mismatch.
//!
//! ```
//! use spider_crypto::safety::{Comparison, SafetyIdentity, SafetyNumber};
//! let alice = SafetyIdentity { ed25519: &[1; 32], x25519: &[2; 32], username: "alice" };
//! let bob = SafetyIdentity { ed25519: &[3; 32], x25519: &[4; 32], username: "bob" };
//! let on_alices_phone = SafetyNumber::new(alice, bob);
//! let on_bobs_phone = SafetyNumber::new(bob, alice);
//! assert_eq!(on_alices_phone.to_string(), on_bobs_phone.to_string());
//! let pasted = on_bobs_phone.compact().to_text();
//! assert_eq!(on_alices_phone.compare_text(&pasted)?, Comparison::Match);
//! # Ok::<(), spider_crypto::safety::CompactParseError>(())
//! ```

use core::fmt;

use sha2::{Digest, Sha256, Sha512};

/// Version mixed into every fingerprint hash (first two bytes, big-endian).
/// Signal's is `0x0000` over its 33-byte keys; Spider's keys are 64 bytes
/// (Ed25519 || X25519), and its own version keeps the two apart.
pub const FINGERPRINT_VERSION: u16 = 1;

/// SHA-512 iterations per side.
///
/// Reason: Signal's value. Each try at grinding an identity whose 30 digits
/// (≈ 100 bits) match a target costs 5200 hashes, which keeps a collision
/// far out of reach, while computing a number (two sides, 10 400 hashes)
/// takes a few milliseconds: 5.6 ms on the benchmark machine, which has no
/// SHA-512 instructions (docs/benchmarks.md). It runs only when a user opens
/// the safety-number screen.
pub const ITERATIONS: u32 = 5200;

/// Digits per side.
pub const DIGITS_PER_SIDE: usize = 30;

/// Version byte of the compact form.
pub const COMPACT_VERSION: u8 = 1;
/// Length of the compact form: version and two 32-byte fingerprints.
pub const COMPACT_LEN: usize = 1 + 32 + 32;
/// Length of the checksum appended to the compact form's text.
pub const CHECKSUM_LEN: usize = 4;

/// Longest text accepted by [`CompactSafetyNumber::from_text`].
///
/// Reason: the canonical text is 138 characters (111 base32 characters and
/// 27 dashes); 512 allows other spacing while bounding the work on junk.
pub const MAX_TEXT_LEN: usize = 512;

/// One side's identity, as the safety number sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SafetyIdentity<'a> {
    /// The identity's Ed25519 public key.
    pub ed25519: &'a [u8; 32],
    /// The identity's X25519 public key.
    pub x25519: &'a [u8; 32],
    /// The stable id: the username, in its canonical (parsed) form.
    pub username: &'a str,
}

/// Signal's iterated fingerprint hash, over any key encoding.
fn iterated_hash(version: u16, key: &[u8], stable_id: &[u8], iterations: u32) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(version.to_be_bytes());
    h.update(key);
    h.update(stable_id);
    h.update(key);
    let mut buf: [u8; 64] = h.finalize().into();
    for _ in 1..iterations {
        let mut h = Sha512::new();
        h.update(buf);
        h.update(key);
        buf = h.finalize().into();
    }
    buf
}

fn side_hash(id: &SafetyIdentity<'_>) -> [u8; 64] {
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(id.ed25519);
    key[32..].copy_from_slice(id.x25519);
    iterated_hash(
        FINGERPRINT_VERSION,
        &key,
        id.username.as_bytes(),
        ITERATIONS,
    )
}

/// 30 digits from the first 30 bytes: six 40-bit big-endian blocks mod 10^5.
fn digits(hash: &[u8; 64]) -> String {
    let mut s = String::with_capacity(DIGITS_PER_SIDE);
    for block in hash[..30].chunks_exact(5) {
        let x = block.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        s.push_str(&format!("{:05}", x % 100_000));
    }
    s
}

/// The safety number of a pair of identities, as both users see it.
#[derive(Clone, PartialEq, Eq)]
pub struct SafetyNumber {
    /// 60 digits: both sides' 30 digits, the smaller first.
    digits: String,
    compact: CompactSafetyNumber,
}

impl SafetyNumber {
    /// Computes the safety number of `local` and `remote`. The result does
    /// not depend on which side is which.
    pub fn new(local: SafetyIdentity<'_>, remote: SafetyIdentity<'_>) -> Self {
        let (l, r) = (side_hash(&local), side_hash(&remote));
        let (dl, dr) = (digits(&l), digits(&r));
        let digits = if dl <= dr { dl + &dr } else { dr + &dl };
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        a.copy_from_slice(&l[..32]);
        b.copy_from_slice(&r[..32]);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut bytes = [0u8; COMPACT_LEN];
        bytes[0] = COMPACT_VERSION;
        bytes[1..33].copy_from_slice(&lo);
        bytes[33..].copy_from_slice(&hi);
        Self {
            digits,
            compact: CompactSafetyNumber(bytes),
        }
    }

    /// The 60 digits, without spaces.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// The 12 groups of 5 digits, in display order.
    pub fn groups(&self) -> Vec<&str> {
        (0..12).map(|i| &self.digits[i * 5..i * 5 + 5]).collect()
    }

    /// The compact form, to show as a QR code or to copy.
    pub fn compact(&self) -> &CompactSafetyNumber {
        &self.compact
    }

    /// Compares with the other user's compact form, as bytes (scanned).
    pub fn compare_bytes(&self, theirs: &[u8]) -> Result<Comparison, CompactParseError> {
        Ok(self
            .compact
            .compare(&CompactSafetyNumber::from_bytes(theirs)?))
    }

    /// Compares with the other user's compact form, as text (pasted).
    pub fn compare_text(&self, theirs: &str) -> Result<Comparison, CompactParseError> {
        Ok(self
            .compact
            .compare(&CompactSafetyNumber::from_text(theirs)?))
    }
}

/// Shows the 12 groups separated by spaces.
impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.groups().join(" "))
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public values (derived from public keys only).
        write!(f, "SafetyNumber({self})")
    }
}

/// The outcome of comparing two compact safety numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Comparison {
    /// Same identities on both sides: no man-in-the-middle.
    Match,
    /// Different identities: warn the user, do not mark the contact verified.
    Mismatch,
    /// The other side uses another format version; neither match nor
    /// mismatch can be concluded (one of the apps needs an update).
    DifferentVersion {
        /// Our version.
        ours: u8,
        /// Theirs.
        theirs: u8,
    },
}

/// Why a compact safety number could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompactParseError {
    /// Empty input.
    #[error("empty safety number")]
    Empty,
    /// The text has a character outside base32, spaces and dashes, or is
    /// longer than [`MAX_TEXT_LEN`].
    #[error("safety number text is not valid base32")]
    InvalidText,
    /// The text's checksum does not match: a typo or a truncated copy.
    #[error("safety number checksum mismatch (typo?)")]
    BadChecksum,
    /// The version matches ours but the length is not [`COMPACT_LEN`].
    #[error("safety number has the wrong length: {len} bytes")]
    WrongLength {
        /// Length found.
        len: usize,
    },
}

/// The compact, scannable form: version and both sides' 32-byte fingerprints
/// in sorted order (see the module docs). Public data.
#[derive(Clone, PartialEq, Eq)]
pub struct CompactSafetyNumber([u8; COMPACT_LEN]);

/// A parsed compact form that may be of another version.
enum Parsed {
    Ours(CompactSafetyNumber),
    OtherVersion(u8),
}

impl CompactSafetyNumber {
    /// The raw bytes (what a QR code carries).
    pub fn to_bytes(&self) -> [u8; COMPACT_LEN] {
        self.0
    }

    /// The checksummed base32 text, in dash-separated groups of four.
    pub fn to_text(&self) -> String {
        let mut payload = self.0.to_vec();
        payload.extend_from_slice(&checksum(&self.0));
        let b32 = base32_encode(&payload);
        let groups: Vec<&str> = b32
            .as_bytes()
            .chunks(4)
            .filter_map(|c| core::str::from_utf8(c).ok())
            .collect();
        groups.join("-")
    }

    fn parse_bytes(bytes: &[u8]) -> Result<Parsed, CompactParseError> {
        // The version first: another version may have another length.
        let (&version, _) = bytes.split_first().ok_or(CompactParseError::Empty)?;
        if version != COMPACT_VERSION {
            return Ok(Parsed::OtherVersion(version));
        }
        let arr: [u8; COMPACT_LEN] = bytes
            .try_into()
            .map_err(|_| CompactParseError::WrongLength { len: bytes.len() })?;
        Ok(Parsed::Ours(Self(arr)))
    }

    /// Parses the raw bytes. An other version is an error here; use
    /// [`SafetyNumber::compare_bytes`] to report it as
    /// [`Comparison::DifferentVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<CompactOrVersion, CompactParseError> {
        Self::parse_bytes(bytes).map(CompactOrVersion)
    }

    /// Parses the text form (case, spaces and dashes ignored).
    pub fn from_text(text: &str) -> Result<CompactOrVersion, CompactParseError> {
        if text.len() > MAX_TEXT_LEN {
            return Err(CompactParseError::InvalidText);
        }
        let cleaned: String = text
            .chars()
            .filter(|c| !matches!(c, '-' | ' ' | '\n' | '\r' | '\t'))
            .collect();
        if cleaned.is_empty() {
            return Err(CompactParseError::Empty);
        }
        if !cleaned
            .bytes()
            .all(|c| matches!(c.to_ascii_uppercase(), b'A'..=b'Z' | b'2'..=b'7'))
        {
            return Err(CompactParseError::InvalidText);
        }
        // Valid characters that do not decode cleanly (stray bits at the end)
        // mean a truncated or mistyped copy.
        let raw = base32_decode(&cleaned).ok_or(CompactParseError::BadChecksum)?;
        if raw.len() <= CHECKSUM_LEN {
            return Err(CompactParseError::BadChecksum);
        }
        let (payload, sum) = raw.split_at(raw.len() - CHECKSUM_LEN);
        if checksum(payload) != sum {
            return Err(CompactParseError::BadChecksum);
        }
        Self::from_bytes(payload)
    }

    /// Compares with another compact form (ours is always our version).
    pub fn compare(&self, theirs: &CompactOrVersion) -> Comparison {
        match &theirs.0 {
            Parsed::OtherVersion(v) => Comparison::DifferentVersion {
                ours: COMPACT_VERSION,
                theirs: *v,
            },
            // Public values: no need for a constant-time comparison.
            Parsed::Ours(t) if t.0 == self.0 => Comparison::Match,
            Parsed::Ours(_) => Comparison::Mismatch,
        }
    }
}

impl fmt::Debug for CompactSafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompactSafetyNumber({})", self.to_text())
    }
}

/// A parsed compact safety number: ours to compare, or a version we do not
/// speak (which [`CompactSafetyNumber::compare`] reports as such).
pub struct CompactOrVersion(Parsed);

impl CompactOrVersion {
    /// The version byte found.
    pub fn version(&self) -> u8 {
        match &self.0 {
            Parsed::Ours(_) => COMPACT_VERSION,
            Parsed::OtherVersion(v) => *v,
        }
    }
}

impl fmt::Debug for CompactOrVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Parsed::Ours(c) => c.fmt(f),
            Parsed::OtherVersion(v) => write!(f, "CompactSafetyNumber(version {v})"),
        }
    }
}

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let h = Sha256::digest(bytes);
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&h[..CHECKSUM_LEN]);
    out
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 §6 base32, upper case, without padding.
fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(B32[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(B32[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Inverse of [`base32_encode`], case-insensitive; `None` on a bad character
/// or non-zero padding bits (so each byte string has one text).
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    // Leftover bits must be padding zeros, and fewer than 5 of them.
    if bits >= 5 || acc != 0 {
        return None;
    }
    Some(out)
}

/// Entry points for cargo-fuzz targets (one per parser of untrusted bytes).
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Parses a scanned compact safety number.
    pub fn compact_bytes(data: &[u8]) {
        let _ = CompactSafetyNumber::from_bytes(data);
    }

    /// Parses a pasted compact safety number (bytes read as lossy UTF-8).
    #[allow(clippy::panic)]
    pub fn compact_text(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        if let Ok(CompactOrVersion(Parsed::Ours(c))) = CompactSafetyNumber::from_text(&text) {
            match CompactSafetyNumber::from_text(&c.to_text()) {
                Ok(CompactOrVersion(Parsed::Ours(d))) if d == c => {}
                _ => panic!("compact safety number text does not round-trip"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signal's own test vector (libsignal `fingerprint.rs`,
    /// `fingerprint_test_v1`): the same hash with Signal's version 0 and
    /// 33-byte keys gives Signal's digits, so the construction is Signal's.
    #[test]
    fn iterated_hash_reproduces_signals_numeric_fingerprint_vector() {
        let alice =
            hex_decode("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868");
        let bob = hex_decode("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b");
        let a = iterated_hash(0, &alice, b"+14152222222", 5200);
        let b = iterated_hash(0, &bob, b"+14153333333", 5200);
        let (da, db) = (digits(&a), digits(&b));
        let display = if da < db { da + &db } else { db + &da };
        assert_eq!(
            display,
            "300354477692869396892869876765458257569162576843440918079131"
        );
        assert_eq!(
            &a[..32],
            hex_decode("1e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df")
        );
        assert_eq!(
            &b[..32],
            hex_decode("d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d")
        );
    }

    #[test]
    fn base32_round_trips_and_is_canonical() {
        for len in 0..20 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 5) as u8).collect();
            let text = base32_encode(&bytes);
            assert_eq!(base32_decode(&text).unwrap(), bytes);
            assert_eq!(base32_decode(&text.to_lowercase()).unwrap(), bytes);
        }
        // RFC 4648 §10 test vectors (padding stripped).
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_encode(b"fo"), "MZXQ");
        // "MZXR" has non-zero padding bits: not the canonical text of "fo".
        assert_eq!(base32_decode("MZXR"), None);
        assert_eq!(base32_decode("M1"), None);
    }

    fn hex_decode(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
