//! Attachments: round trips at the chunk edges, and every kind of tampering.

// Helpers outside #[test] fns are not covered by clippy.toml's test allowances.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use spider_crypto::attachment::{
    ATTACHMENT_VERSION, AttachmentDecryptor, AttachmentEncryptor, AttachmentKey, AttachmentPointer,
    BlobId, CHUNK_SIZE, DecryptError, ENCRYPTED_CHUNK_SIZE, EncryptError, MAX_BLOB_ID_LEN,
    PointerDecodeError, TAG_LEN, blob_digest, decrypt_reader, encrypt_reader, fuzzing, verify_blob,
};

fn file(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn seal(seed: u64, data: &[u8]) -> (AttachmentPointer, Vec<u8>) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut blob = Vec::new();
    let sealed = encrypt_reader(&mut rng, data, &mut blob).unwrap();
    let id = BlobId::new(format!("blob-{seed}").into_bytes()).unwrap();
    (AttachmentPointer::new(id, sealed), blob)
}

fn open(pointer: &AttachmentPointer, blob: &[u8]) -> Result<Vec<u8>, DecryptError> {
    let mut out = Vec::new();
    decrypt_reader(pointer, blob, &mut out).map(|()| out)
}

/// A pointer whose digest and size match `blob`, so that the AEAD itself is
/// what must catch the tampering (the digest catches it anyway, see below).
fn repoint(pointer: &AttachmentPointer, blob: &[u8], size: u64) -> AttachmentPointer {
    let mut p = pointer.clone();
    p.digest = blob_digest(blob).unwrap();
    p.size = size;
    p
}

#[test]
fn round_trip_at_chunk_edges() {
    for len in [
        0,
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        2 * CHUNK_SIZE,
        3 * CHUNK_SIZE + 17,
    ] {
        let data = file(len, 3);
        let (pointer, blob) = seal(len as u64, &data);
        let chunks = len.div_ceil(CHUNK_SIZE).max(1);
        assert_eq!(blob.len(), len + chunks * TAG_LEN, "len {len}");
        assert_eq!(pointer.size, len as u64);
        assert_eq!(pointer.digest, blob_digest(blob.as_slice()).unwrap());
        verify_blob(&pointer, blob.as_slice()).unwrap();
        assert_eq!(open(&pointer, &blob).unwrap(), data, "len {len}");
    }
}

#[test]
fn chunk_api_accepts_an_empty_final_chunk_after_full_ones() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let data = file(2 * CHUNK_SIZE, 1);
    let mut enc = AttachmentEncryptor::new(&mut rng);
    let mut blob = enc.encrypt_chunk(&data[..CHUNK_SIZE]).unwrap();
    blob.extend(enc.encrypt_chunk(&data[CHUNK_SIZE..]).unwrap());
    let (last, sealed) = enc.finish(&[]).unwrap();
    assert_eq!(last.len(), TAG_LEN);
    blob.extend(last);
    let pointer = AttachmentPointer::new(BlobId::new(vec![1]).unwrap(), sealed);
    assert_eq!(open(&pointer, &blob).unwrap(), data);

    let mut dec = AttachmentDecryptor::new(&pointer).unwrap();
    let mut out = dec
        .decrypt_chunk(&blob[..ENCRYPTED_CHUNK_SIZE])
        .unwrap()
        .to_vec();
    out.extend_from_slice(
        &dec.decrypt_chunk(&blob[ENCRYPTED_CHUNK_SIZE..2 * ENCRYPTED_CHUNK_SIZE])
            .unwrap(),
    );
    out.extend_from_slice(&dec.finish(&blob[2 * ENCRYPTED_CHUNK_SIZE..]).unwrap());
    assert_eq!(out, data);
}

#[test]
fn chunk_sizes_are_enforced() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut enc = AttachmentEncryptor::new(&mut rng);
    assert!(matches!(
        enc.encrypt_chunk(&[0; CHUNK_SIZE - 1]),
        Err(EncryptError::WrongChunkSize { len }) if len == CHUNK_SIZE - 1
    ));
    assert!(matches!(
        AttachmentEncryptor::new(&mut rng).finish(&vec![0; CHUNK_SIZE + 1]),
        Err(EncryptError::WrongChunkSize { .. })
    ));
    let (pointer, _) = seal(2, b"x");
    let dec = AttachmentDecryptor::new(&pointer).unwrap();
    assert!(matches!(
        dec.finish(&[0; TAG_LEN - 1]),
        Err(DecryptError::WrongChunkSize { len }) if len == TAG_LEN - 1
    ));
}

#[test]
fn truncated_blob_missing_last_chunk_is_detected() {
    let data = file(2 * CHUNK_SIZE + 5, 4);
    let (pointer, blob) = seal(4, &data);
    let truncated = &blob[..2 * ENCRYPTED_CHUNK_SIZE];
    assert!(matches!(
        verify_blob(&pointer, truncated),
        Err(DecryptError::DigestMismatch)
    ));
    // Even with a matching digest (a malicious sender), the last flag catches it.
    let p = repoint(&pointer, truncated, 2 * CHUNK_SIZE as u64);
    assert!(matches!(
        open(&p, truncated),
        Err(DecryptError::ChunkRejected { index: 1 })
    ));
}

#[test]
fn truncated_blob_at_any_byte_is_detected() {
    let data = file(CHUNK_SIZE + 100, 5);
    let (pointer, blob) = seal(5, &data);
    for cut in [
        0,
        1,
        TAG_LEN,
        ENCRYPTED_CHUNK_SIZE - 1,
        ENCRYPTED_CHUNK_SIZE,
        blob.len() - 1,
    ] {
        assert!(open(&pointer, &blob[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn reordered_chunks_are_detected() {
    let data = file(3 * CHUNK_SIZE + 9, 6);
    let (pointer, blob) = seal(6, &data);
    let c = ENCRYPTED_CHUNK_SIZE;
    let mut swapped = Vec::new();
    swapped.extend_from_slice(&blob[c..2 * c]);
    swapped.extend_from_slice(&blob[..c]);
    swapped.extend_from_slice(&blob[2 * c..]);
    assert!(matches!(
        verify_blob(&pointer, swapped.as_slice()),
        Err(DecryptError::DigestMismatch)
    ));
    let p = repoint(&pointer, &swapped, pointer.size);
    assert!(matches!(
        open(&p, &swapped),
        Err(DecryptError::ChunkRejected { index: 0 })
    ));
}

#[test]
fn chunk_swapped_in_from_another_file_is_detected() {
    let a = file(2 * CHUNK_SIZE + 1, 7);
    let b = file(2 * CHUNK_SIZE + 1, 8);
    let (pa, blob_a) = seal(7, &a);
    let (_, blob_b) = seal(8, &b);
    let c = ENCRYPTED_CHUNK_SIZE;
    let mut mixed = blob_a.clone();
    mixed[c..2 * c].copy_from_slice(&blob_b[c..2 * c]);
    let p = repoint(&pa, &mixed, pa.size);
    assert!(matches!(
        open(&p, &mixed),
        Err(DecryptError::ChunkRejected { index: 1 })
    ));
}

#[test]
fn appended_chunk_is_detected() {
    let data = file(CHUNK_SIZE, 9);
    let (pointer, blob) = seal(9, &data);
    // Re-encrypt so the file has a genuine full non-final chunk we can append
    // after the final one, under the same key.
    let mut enc = AttachmentEncryptor::with_key(pointer.key.clone());
    let extra_chunk = enc.encrypt_chunk(&data).unwrap();
    let mut appended = blob.clone();
    appended.extend_from_slice(&extra_chunk);
    let p = repoint(&pointer, &appended, 2 * CHUNK_SIZE as u64);
    assert!(matches!(
        open(&p, &appended),
        Err(DecryptError::ChunkRejected { index: 0 })
    ));
    // Appending a copy of the final chunk.
    let mut dup = blob.clone();
    dup.extend_from_slice(&blob);
    let p = repoint(&pointer, &dup, 2 * CHUNK_SIZE as u64);
    assert!(open(&p, &dup).is_err());
    // Appending a few stray bytes.
    let mut stray = blob.clone();
    stray.extend_from_slice(&[0; 3]);
    assert!(matches!(
        verify_blob(&pointer, stray.as_slice()),
        Err(DecryptError::DigestMismatch)
    ));
    assert!(open(&repoint(&pointer, &stray, pointer.size), &stray).is_err());
}

#[test]
fn bit_flips_are_detected_everywhere() {
    let data = file(CHUNK_SIZE + 40, 10);
    let (pointer, blob) = seal(10, &data);
    for at in [
        0,
        100,
        ENCRYPTED_CHUNK_SIZE - 1,
        ENCRYPTED_CHUNK_SIZE,
        blob.len() - 1,
    ] {
        let mut bad = blob.clone();
        bad[at] ^= 0x20;
        assert!(matches!(
            open(&pointer, &bad),
            Err(DecryptError::ChunkRejected { .. })
        ));
        assert!(matches!(
            verify_blob(&pointer, bad.as_slice()),
            Err(DecryptError::DigestMismatch)
        ));
    }
}

#[test]
fn wrong_digest_or_size_in_pointer_is_detected() {
    let data = file(500, 11);
    let (pointer, blob) = seal(11, &data);
    let mut p = pointer.clone();
    p.digest[0] ^= 1;
    assert!(matches!(open(&p, &blob), Err(DecryptError::DigestMismatch)));
    let mut p = pointer.clone();
    p.size += 1;
    assert!(matches!(open(&p, &blob), Err(DecryptError::SizeMismatch)));
    let mut p = pointer.clone();
    p.key = AttachmentKey::from_bytes([0; 32]);
    assert!(matches!(
        open(&p, &blob),
        Err(DecryptError::ChunkRejected { index: 0 })
    ));
    let mut p = pointer;
    p.version = 2;
    assert!(matches!(
        open(&p, &blob),
        Err(DecryptError::UnsupportedVersion { found: 2 })
    ));
}

#[test]
fn decryptor_is_poisoned_after_a_failure() {
    let data = file(2 * CHUNK_SIZE, 12);
    let (pointer, blob) = seal(12, &data);
    let mut dec = AttachmentDecryptor::new(&pointer).unwrap();
    let mut bad = blob[..ENCRYPTED_CHUNK_SIZE].to_vec();
    bad[0] ^= 1;
    assert!(dec.decrypt_chunk(&bad).is_err());
    assert!(matches!(
        dec.decrypt_chunk(&blob[..ENCRYPTED_CHUNK_SIZE]),
        Err(DecryptError::Poisoned)
    ));
}

#[test]
fn pointer_round_trips_and_hides_its_key() {
    let (pointer, _) = seal(13, b"hello");
    let bytes = pointer.to_bytes();
    assert_eq!(AttachmentPointer::from_bytes(&bytes).unwrap(), pointer);
    let json = serde_json::to_string(&pointer).unwrap();
    assert_eq!(
        serde_json::from_str::<AttachmentPointer>(&json).unwrap(),
        pointer
    );

    let debug = format!("{pointer:?}");
    assert!(debug.contains("<redacted>"));
    assert!(!debug.contains(&hex::encode(pointer.key.as_bytes())));
    let key_dec = format!("{:?}", pointer.key.as_bytes().as_slice());
    assert!(!debug.contains(key_dec.trim_matches(|c| c == '[' || c == ']')));

    let mut other = bytes.to_vec();
    other[0] = 9;
    assert_eq!(
        AttachmentPointer::from_bytes(&other),
        Err(PointerDecodeError::UnsupportedVersion { found: 9 })
    );
    assert_eq!(pointer.version, ATTACHMENT_VERSION);
}

#[test]
fn blob_id_length_limit_at_its_edge() {
    assert!(BlobId::new(vec![b'a'; MAX_BLOB_ID_LEN]).is_ok());
    assert!(BlobId::new(vec![b'a'; MAX_BLOB_ID_LEN + 1]).is_err());
    // And through deserialization.
    let (mut pointer, _) = seal(14, b"x");
    pointer.blob_id = BlobId::new(vec![b'a'; MAX_BLOB_ID_LEN]).unwrap();
    let mut json: serde_json::Value = serde_json::to_value(&pointer).unwrap();
    json["blob_id"] = serde_json::to_value(vec![b'a'; MAX_BLOB_ID_LEN + 1]).unwrap();
    assert!(serde_json::from_value::<AttachmentPointer>(json).is_err());
    assert!(AttachmentPointer::from_bytes(&pointer.to_bytes()).is_ok());
}

/// A reader that hands out at most 1000 bytes per call, as sockets do.
struct Trickle<'a>(&'a [u8]);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(1000);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn short_reads_do_not_change_the_blob() {
    let data = file(2 * CHUNK_SIZE + 3, 15);
    let mut rng = ChaCha20Rng::seed_from_u64(15);
    let mut blob = Vec::new();
    let sealed = encrypt_reader(&mut rng, Trickle(&data), &mut blob).unwrap();
    let (pointer, reference) = seal(15, &data);
    assert_eq!(blob, reference);
    assert_eq!(sealed.digest, pointer.digest);
    let mut out = Vec::new();
    decrypt_reader(&pointer, Trickle(&blob), &mut out).unwrap();
    assert_eq!(out, data);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn attachment_round_trip_for_arbitrary_sizes(
        len in prop_oneof![
            0usize..300,
            Just(CHUNK_SIZE),
            Just(CHUNK_SIZE + 1),
            (CHUNK_SIZE - 2)..(CHUNK_SIZE + 3),
            0usize..(3 * CHUNK_SIZE + 10),
        ],
        seed in any::<u64>(),
    ) {
        let data = file(len, seed as u8);
        let (pointer, blob) = seal(seed, &data);
        prop_assert_eq!(open(&pointer, &blob).unwrap(), data);
    }

    #[test]
    fn arbitrary_bytes_never_panic_attachment_parsers(
        data in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        fuzzing::attachment_pointer(&data);
        fuzzing::attachment_blob(&data);
        let mut with_version = vec![ATTACHMENT_VERSION];
        with_version.extend_from_slice(&data);
        fuzzing::attachment_pointer(&with_version);
        let _: Result<AttachmentPointer, PointerDecodeError> =
            AttachmentPointer::from_bytes(&with_version);
    }
}

/// A hand-written snapshot of the Debug forms: any new field shows up here
/// and must be reviewed for secrets.
#[test]
fn debug_output_snapshot() {
    let (pointer, _) = seal(16, b"x");
    assert_eq!(
        format!("{pointer:?}"),
        "AttachmentPointer { version: 1, blob_id: BlobId(7 bytes), \
         key: AttachmentKey(<redacted>), size: 1, .. }"
    );
    let mut rng = ChaCha20Rng::seed_from_u64(16);
    let (_, sealed) = AttachmentEncryptor::new(&mut rng).finish(b"abc").unwrap();
    assert_eq!(
        format!("{sealed:?}"),
        "SealedAttachment { key: AttachmentKey(<redacted>), size: 3, .. }"
    );
    fn assert_zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    assert_zeroize_on_drop::<AttachmentKey>();
    assert_zeroize_on_drop::<AttachmentPointer>();
}
