//! The Double Ratchet (Signal's specification, "DR" below), with header
//! authentication by associated data.
//!
//! The state is plain bytes so that it serializes (serde + postcard) and is
//! wiped on drop. Decryption runs on a staged copy of the state and commits it
//! only when the AEAD accepts the message, so a forged, corrupted, replayed or
//! too-far-ahead message leaves the state exactly as it was (DR §3.5 note:
//! "If an exception is raised ... discard changes to the state").

use core::fmt;

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::domain::{WIRE_VERSION, message_type};
use crate::error::{DecodeError, DecryptError, EncryptError, PrimitiveError};
use crate::kdf;
use crate::primitives::{self, AEAD_TAG_LEN};
use crate::wire;

/// Most message keys skipped in one receiving chain by one message (DR §3.5
/// MAX_SKIP). Bounds the work and memory one message can cost; it applies to
/// `n` (within the current chain) and to `pn` (the rest of the previous chain)
/// separately. 1000 covers any real burst of lost messages.
pub const MAX_SKIP: u32 = 1000;

/// Most skipped message keys kept in total, across chains (libsignal keeps
/// 2000). When full, the oldest keys are dropped: their messages become
/// undecryptable, which is the price of bounded memory.
pub const MAX_SKIPPED_KEYS: usize = 2000;

/// Skipped message keys older than this are deleted (DR §6.4: delete skipped
/// keys after some time, for forward secrecy). 30 days, the longest a message
/// is expected to wait in a mailbox.
pub const SKIPPED_KEY_MAX_AGE_SECS: u64 = 30 * 24 * 60 * 60;

/// Largest plaintext one message carries (64 KiB). Files go as attachments.
pub const MAX_PLAINTEXT_LEN: usize = 64 * 1024;

/// Length of the encoded, authenticated header.
pub const HEADER_LEN: usize = 2 + 32 + 4 + 4;

/// Largest encoded [`RatchetMessage`].
pub const MAX_RATCHET_MESSAGE_LEN: usize = HEADER_LEN + MAX_PLAINTEXT_LEN + AEAD_TAG_LEN;

/// A Double Ratchet header (DR §3.1 HEADER): the sender's current ratchet
/// public key, the previous sending chain's length and this message's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Sender's ratchet public key (X25519).
    pub ratchet_key: [u8; 32],
    /// Number of messages in the sender's previous sending chain.
    pub pn: u32,
    /// This message's number in the current sending chain.
    pub n: u32,
}

impl Header {
    /// The encoded header, which is also the first [`HEADER_LEN`] bytes of the
    /// message and is authenticated as part of the AEAD associated data.
    #[must_use]
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = WIRE_VERSION;
        out[1] = message_type::RATCHET;
        out[2..34].copy_from_slice(&self.ratchet_key);
        out[34..38].copy_from_slice(&self.pn.to_be_bytes());
        out[38..42].copy_from_slice(&self.n.to_be_bytes());
        out
    }
}

/// A Double Ratchet message.
///
/// Wire layout (integers big-endian):
///
/// | offset | length  | field                                            |
/// |-------:|--------:|--------------------------------------------------|
/// | 0      | 1       | version = `0x01`                                 |
/// | 1      | 1       | type = `0x01` (`message_type::RATCHET`)          |
/// | 2      | 32      | sender's ratchet public key (X25519)             |
/// | 34     | 4       | `pn`: length of the sender's previous chain      |
/// | 38     | 4       | `n`: message number in the current chain         |
/// | 42     | 16..    | ChaCha20-Poly1305 ciphertext and 16-byte tag     |
///
/// Bytes 0..42 are the header; the AEAD associated data is the session's
/// `Encode(IK_A) || Encode(IK_B)` followed by those 42 bytes. At most
/// [`MAX_RATCHET_MESSAGE_LEN`] bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct RatchetMessage {
    header: Header,
    ciphertext: Vec<u8>,
}

impl fmt::Debug for RatchetMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatchetMessage")
            .field("pn", &self.header.pn)
            .field("n", &self.header.n)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl RatchetMessage {
    /// The header.
    #[must_use]
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The AEAD ciphertext (with tag).
    #[must_use]
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// Encodes the message (layout in the type's doc).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.ciphertext.len());
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&self.ciphertext);
        out
    }
}

impl TryFrom<&[u8]> for RatchetMessage {
    type Error = DecodeError;

    /// Decodes the layout in the type's doc. Refuses a low-order ratchet key
    /// and a ciphertext shorter than the tag.
    fn try_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = wire::open(bytes, message_type::RATCHET, MAX_RATCHET_MESSAGE_LEN)?;
        let ratchet_key = r.array::<32>()?;
        let pn = r.u32()?;
        let n = r.u32()?;
        let ciphertext = r.rest();
        if ciphertext.len() < AEAD_TAG_LEN {
            return Err(DecodeError::TooShort { len: bytes.len() });
        }
        if primitives::x25519_is_low_order(&ratchet_key) {
            return Err(DecodeError::LowOrderKey);
        }
        Ok(Self {
            header: Header { ratchet_key, pn, n },
            ciphertext: ciphertext.to_vec(),
        })
    }
}

#[derive(Clone, Serialize, Deserialize, Zeroize)]
struct SkippedKey {
    ratchet_key: [u8; 32],
    n: u32,
    message_key: [u8; 32],
    stored_at: u64,
}

/// The Double Ratchet state of one session (DR §3.2), wiped on drop.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct RatchetState {
    root_key: [u8; 32],
    dhs_private: [u8; 32],
    dhs_public: [u8; 32],
    dhr: Option<[u8; 32]>,
    cks: Option<[u8; 32]>,
    ns: u32,
    ckr: Option<[u8; 32]>,
    nr: u32,
    pn: u32,
    /// Oldest first, so eviction at [`MAX_SKIPPED_KEYS`] drops the oldest.
    skipped: Vec<SkippedKey>,
}

impl fmt::Debug for RatchetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatchetState")
            .field("ns", &self.ns)
            .field("nr", &self.nr)
            .field("pn", &self.pn)
            .field("skipped_keys", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

/// What one sending step used, for the test vectors.
#[cfg(test)]
pub(crate) struct SendTrace {
    pub(crate) chain_key: [u8; 32],
    pub(crate) message_key: [u8; 32],
    pub(crate) next_chain_key: [u8; 32],
}

impl RatchetState {
    /// DR §3.3 RatchetInitAlice: a fresh ratchet key pair, and the first
    /// sending chain from the shared secret and Bob's signed prekey.
    pub(crate) fn init_alice<R: CryptoRng + ?Sized>(
        rng: &mut R,
        shared_secret: &[u8; 32],
        bob_ratchet_key: &[u8; 32],
    ) -> Result<Self, PrimitiveError> {
        let mut dhs_private = [0u8; 32];
        rng.fill_bytes(&mut dhs_private);
        let mut state = Self {
            root_key: *shared_secret,
            dhs_public: primitives::x25519_public(&dhs_private),
            dhs_private,
            dhr: Some(*bob_ratchet_key),
            cks: None,
            ns: 0,
            ckr: None,
            nr: 0,
            pn: 0,
            skipped: Vec::new(),
        };
        dhs_private.zeroize();
        let dh = primitives::x25519(&state.dhs_private, bob_ratchet_key)?;
        let (rk, ck) = kdf::root_step(&state.root_key, &dh);
        state.root_key = *rk;
        state.cks = Some(*ck);
        Ok(state)
    }

    /// DR §3.3 RatchetInitBob: the signed prekey is the first ratchet key pair.
    pub(crate) fn init_bob(
        shared_secret: &[u8; 32],
        spk_private: &[u8; 32],
        spk_public: &[u8; 32],
    ) -> Self {
        Self {
            root_key: *shared_secret,
            dhs_private: *spk_private,
            dhs_public: *spk_public,
            dhr: None,
            cks: None,
            ns: 0,
            ckr: None,
            nr: 0,
            pn: 0,
            skipped: Vec::new(),
        }
    }

    /// DR §3.4 RatchetEncrypt, with `ad` the session's associated data.
    pub(crate) fn encrypt(
        &mut self,
        plaintext: &[u8],
        ad: &[u8],
    ) -> Result<RatchetMessage, EncryptError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(EncryptError::PlaintextTooLong {
                len: plaintext.len(),
            });
        }
        let ck = Zeroizing::new(self.cks.ok_or(EncryptError::ChainUnavailable)?);
        let next_ns = self
            .ns
            .checked_add(1)
            .ok_or(EncryptError::ChainUnavailable)?;
        let (mk, next_ck) = kdf::chain_step(&ck);
        let header = Header {
            ratchet_key: self.dhs_public,
            pn: self.pn,
            n: self.ns,
        };
        let ciphertext = seal(&mk, ad, &header, plaintext)?;
        self.cks = Some(*next_ck);
        self.ns = next_ns;
        Ok(RatchetMessage { header, ciphertext })
    }

    /// The sending chain key and what the next message will use (vectors).
    #[cfg(test)]
    pub(crate) fn peek_send(&self) -> Option<SendTrace> {
        let ck = self.cks?;
        let (mk, next) = kdf::chain_step(&ck);
        Some(SendTrace {
            chain_key: ck,
            message_key: *mk,
            next_chain_key: *next,
        })
    }

    /// Every secret the state holds (for the Debug test).
    #[cfg(test)]
    pub(crate) fn secrets(&self) -> Vec<[u8; 32]> {
        let mut out = vec![self.root_key, self.dhs_private];
        out.extend(self.cks);
        out.extend(self.ckr);
        out.extend(self.skipped.iter().map(|k| k.message_key));
        out
    }

    #[cfg(test)]
    pub(crate) fn root_key(&self) -> [u8; 32] {
        self.root_key
    }

    #[cfg(test)]
    pub(crate) fn dhs(&self) -> ([u8; 32], [u8; 32]) {
        (self.dhs_private, self.dhs_public)
    }

    #[cfg(test)]
    pub(crate) fn dhr(&self) -> Option<[u8; 32]> {
        self.dhr
    }

    #[cfg(test)]
    pub(crate) fn sending_chain_key(&self) -> Option<[u8; 32]> {
        self.cks
    }

    /// DR §3.5 RatchetDecrypt, on a staged copy that replaces `self` only on
    /// success.
    pub(crate) fn decrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        message: &RatchetMessage,
        ad: &[u8],
        now: u64,
    ) -> Result<Vec<u8>, DecryptError> {
        let mut staged = self.clone();
        let plaintext = staged.decrypt_staged(rng, message, ad, now)?;
        *self = staged;
        Ok(plaintext)
    }

    fn decrypt_staged<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        message: &RatchetMessage,
        ad: &[u8],
        now: u64,
    ) -> Result<Vec<u8>, DecryptError> {
        let header = &message.header;
        // DR §6.4: forget skipped keys past their age before looking.
        self.expire(now);

        // TrySkippedMessageKeys.
        if let Some(i) = self
            .skipped
            .iter()
            .position(|k| k.ratchet_key == header.ratchet_key && k.n == header.n)
        {
            let mut key = self.skipped.remove(i);
            let result = open(&key.message_key, ad, header, &message.ciphertext);
            key.zeroize();
            return result;
        }

        if Some(header.ratchet_key) != self.dhr {
            // A new ratchet key: finish the old chain up to `pn`, then step.
            self.skip_message_keys(header.pn, now)?;
            self.dh_ratchet(rng, &header.ratchet_key)?;
        } else if header.n < self.nr {
            // Same chain, an already-used number whose key is not stored.
            return Err(DecryptError::Duplicate);
        }
        self.skip_message_keys(header.n, now)?;
        let ck = Zeroizing::new(self.ckr.ok_or(DecryptError::Authentication)?);
        let (mk, next_ck) = kdf::chain_step(&ck);
        self.ckr = Some(*next_ck);
        self.nr = self.nr.checked_add(1).ok_or(DecryptError::TooFarAhead)?;
        open(&mk, ad, header, &message.ciphertext)
    }

    /// DR §3.5 SkipMessageKeys, bounded by [`MAX_SKIP`] per call and by
    /// [`MAX_SKIPPED_KEYS`] in total.
    fn skip_message_keys(&mut self, until: u32, now: u64) -> Result<(), DecryptError> {
        let Some(ck) = self.ckr else {
            return Ok(());
        };
        let mut ck = Zeroizing::new(ck);
        let Some(dhr) = self.dhr else {
            return Ok(());
        };
        if until.saturating_sub(self.nr) > MAX_SKIP {
            return Err(DecryptError::TooFarAhead);
        }
        while self.nr < until {
            let (mk, next_ck) = kdf::chain_step(&ck);
            self.skipped.push(SkippedKey {
                ratchet_key: dhr,
                n: self.nr,
                message_key: *mk,
                stored_at: now,
            });
            *ck = *next_ck;
            self.nr += 1;
        }
        self.ckr = Some(*ck);
        if self.skipped.len() > MAX_SKIPPED_KEYS {
            let excess = self.skipped.len() - MAX_SKIPPED_KEYS;
            for mut old in self.skipped.drain(..excess) {
                old.zeroize();
            }
        }
        Ok(())
    }

    /// DR §3.5 DHRatchet.
    fn dh_ratchet<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        their_key: &[u8; 32],
    ) -> Result<(), DecryptError> {
        self.pn = self.ns;
        self.ns = 0;
        self.nr = 0;
        self.dhr = Some(*their_key);
        let dh = primitives::x25519(&self.dhs_private, their_key)
            .map_err(|_| DecryptError::NonContributory)?;
        let (rk, ckr) = kdf::root_step(&self.root_key, &dh);
        self.ckr = Some(*ckr);
        rng.fill_bytes(&mut self.dhs_private);
        self.dhs_public = primitives::x25519_public(&self.dhs_private);
        let dh = primitives::x25519(&self.dhs_private, their_key)
            .map_err(|_| DecryptError::NonContributory)?;
        let (rk, cks) = kdf::root_step(&rk, &dh);
        self.root_key = *rk;
        self.cks = Some(*cks);
        Ok(())
    }

    /// Deletes skipped message keys older than [`SKIPPED_KEY_MAX_AGE_SECS`]
    /// (DR §6.4); returns how many were deleted.
    pub(crate) fn expire(&mut self, now: u64) -> usize {
        let before = self.skipped.len();
        self.skipped.retain_mut(|k| {
            let keep = now.saturating_sub(k.stored_at) <= SKIPPED_KEY_MAX_AGE_SECS;
            if !keep {
                k.zeroize();
            }
            keep
        });
        before - self.skipped.len()
    }

    /// Number of stored skipped message keys.
    pub(crate) fn skipped_len(&self) -> usize {
        self.skipped.len()
    }
}

/// The AEAD associated data: the session AD followed by the encoded header
/// (DR §3.4 `CONCAT(AD, header)`, made unambiguous by the fixed lengths).
pub(crate) fn associated_data(session_ad: &[u8], header: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(session_ad.len() + HEADER_LEN);
    out.extend_from_slice(session_ad);
    out.extend_from_slice(&header.encode());
    out
}

fn seal(
    message_key: &[u8; 32],
    ad: &[u8],
    header: &Header,
    plaintext: &[u8],
) -> Result<Vec<u8>, EncryptError> {
    let (key, nonce) = kdf::message_keys(message_key);
    primitives::aead_seal(&key, &nonce, &associated_data(ad, header), plaintext).map_err(|_| {
        EncryptError::PlaintextTooLong {
            len: plaintext.len(),
        }
    })
}

fn open(
    message_key: &[u8; 32],
    ad: &[u8],
    header: &Header,
    ciphertext: &[u8],
) -> Result<Vec<u8>, DecryptError> {
    let (key, nonce) = kdf::message_keys(message_key);
    primitives::aead_open(&key, &nonce, &associated_data(ad, header), ciphertext)
        .map_err(|_| DecryptError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn pair() -> (RatchetState, RatchetState, ChaCha20Rng) {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let sk = [9u8; 32];
        let spk_private = [5u8; 32];
        let spk_public = primitives::x25519_public(&spk_private);
        let alice = RatchetState::init_alice(&mut rng, &sk, &spk_public).unwrap();
        let bob = RatchetState::init_bob(&sk, &spk_private, &spk_public);
        (alice, bob, rng)
    }

    fn snapshot(s: &RatchetState) -> Vec<u8> {
        postcard::to_allocvec(s).unwrap()
    }

    #[test]
    fn message_with_other_associated_data_fails_and_leaves_state() {
        let (mut alice, mut bob, mut rng) = pair();
        let m = alice.encrypt(b"hi", b"AD-one").unwrap();
        let before = snapshot(&bob);
        assert_eq!(
            bob.decrypt(&mut rng, &m, b"AD-two", 0),
            Err(DecryptError::Authentication)
        );
        assert_eq!(snapshot(&bob), before);
        assert_eq!(bob.decrypt(&mut rng, &m, b"AD-one", 0).unwrap(), b"hi");
    }

    #[test]
    fn skipped_keys_expire_after_max_age() {
        let (mut alice, mut bob, mut rng) = pair();
        let m0 = alice.encrypt(b"0", b"").unwrap();
        let m1 = alice.encrypt(b"1", b"").unwrap();
        bob.decrypt(&mut rng, &m1, b"", 100).unwrap();
        assert_eq!(bob.skipped_len(), 1);
        let mut late = bob.clone();
        assert_eq!(
            late.decrypt(&mut rng, &m0, b"", 100 + SKIPPED_KEY_MAX_AGE_SECS + 1),
            Err(DecryptError::Duplicate)
        );
        assert_eq!(
            bob.decrypt(&mut rng, &m0, b"", 100 + SKIPPED_KEY_MAX_AGE_SECS)
                .unwrap(),
            b"0"
        );
    }

    #[test]
    fn skipped_keys_expire_without_a_message_at_the_same_edge() {
        let (mut alice, mut bob, mut rng) = pair();
        let _m0 = alice.encrypt(b"0", b"").unwrap();
        let m1 = alice.encrypt(b"1", b"").unwrap();
        bob.decrypt(&mut rng, &m1, b"", 100).unwrap();
        assert_eq!(bob.expire(100 + SKIPPED_KEY_MAX_AGE_SECS), 0);
        assert_eq!(bob.skipped_len(), 1);
        assert_eq!(bob.expire(101 + SKIPPED_KEY_MAX_AGE_SECS), 1);
        assert_eq!(bob.skipped_len(), 0);
    }

    #[test]
    fn global_skipped_key_cap_evicts_oldest() {
        let (mut alice, mut bob, mut rng) = pair();
        // Three chains of MAX_SKIP skipped keys each exceed MAX_SKIPPED_KEYS.
        let mut first_skipped = None;
        for round in 0..3 {
            let mut last = None;
            for i in 0..=MAX_SKIP {
                let m = alice.encrypt(b"x", b"").unwrap();
                if round == 0 && i == 0 {
                    first_skipped = Some(m.clone());
                }
                last = Some(m);
            }
            bob.decrypt(&mut rng, &last.unwrap(), b"", 0).unwrap();
            assert!(bob.skipped_len() <= MAX_SKIPPED_KEYS);
            let reply = bob.encrypt(b"r", b"").unwrap();
            alice.decrypt(&mut rng, &reply, b"", 0).unwrap();
        }
        assert_eq!(bob.skipped_len(), MAX_SKIPPED_KEYS);
        // The oldest skipped key was evicted.
        assert!(
            bob.decrypt(&mut rng, &first_skipped.unwrap(), b"", 0)
                .is_err()
        );
    }

    #[test]
    fn plaintext_length_limit_is_enforced_at_its_edge() {
        let (mut alice, mut bob, mut rng) = pair();
        let max = vec![0u8; MAX_PLAINTEXT_LEN];
        let m = alice.encrypt(&max, b"").unwrap();
        let bytes = m.to_bytes();
        assert_eq!(bytes.len(), MAX_RATCHET_MESSAGE_LEN);
        let parsed = RatchetMessage::try_from(&bytes[..]).unwrap();
        assert_eq!(bob.decrypt(&mut rng, &parsed, b"", 0).unwrap(), max);
        assert_eq!(
            alice.encrypt(&vec![0u8; MAX_PLAINTEXT_LEN + 1], b""),
            Err(EncryptError::PlaintextTooLong {
                len: MAX_PLAINTEXT_LEN + 1
            })
        );
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            RatchetMessage::try_from(&long[..]),
            Err(DecodeError::TooLong { .. })
        ));
    }
}
