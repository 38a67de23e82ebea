//! One download attempt as a state machine: blob chunks are checked,
//! decrypted as they come and written to a partial file, which becomes the
//! saved file only once everything checked out.
//!
//! ```text
//!   create(id, attachment, dir)   (opens DIR/.<id>.part)
//!   request(req)        ──► BlobDownload { offset: 0 }
//!   handle(BlobChunk) …           in order, never past the blob's length
//!   handle(BlobEnd)     ──► checks, fsync, rename to saved_path(): the path
//! ```
//!
//! Checks, in order: each chunk starts where the previous one ended and the
//! bytes never exceed what a file of the pointer's size encrypts to; each
//! STREAM chunk authenticates as it completes; at the end the blob has its
//! whole length, the relay's digest and the digest of what arrived equal the
//! pointer's, the final chunk carries STREAM's last flag, and the plaintext
//! has the pointer's size. Dropping a `Download` that did not finish deletes
//! its partial file.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use spider_crypto::attachment::{AttachmentDecryptor, DecryptError, ENCRYPTED_CHUNK_SIZE, TAG_LEN};
use spider_protocol::ids::{BlobId, MessageId, RequestId};
use spider_protocol::message::BlobDownload;
use spider_protocol::{ClientFrame, ServerFrame};

use super::{
    Attachment, AttachmentError, Direction, Failure, blob_len, part_path, refusal, saved_path,
    scale,
};

/// One attempt at fetching and saving an attachment.
pub(crate) struct Download {
    blob: BlobId,
    dec: Option<AttachmentDecryptor>,
    digest: [u8; 32],
    /// Plaintext size from the pointer.
    size: u64,
    /// The blob's length as this client encrypts, and the most accepted
    /// (another client may end a file whose size is a multiple of the chunk
    /// size with an empty final chunk: one more tag).
    expected: u64,
    max: u64,
    received: u64,
    /// Ciphertext of the STREAM chunk being collected (and the start of the
    /// next): less than two chunks.
    buf: Vec<u8>,
    out: Option<File>,
    part: PathBuf,
    dest: PathBuf,
    saved: bool,
}

impl core::fmt::Debug for Download {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Download")
            .field("received", &self.received)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

fn io(e: &std::io::Error) -> AttachmentError {
    AttachmentError::Io(e.kind().to_string())
}

impl Download {
    /// Starts an attempt for message `id`'s attachment, into `dir`
    /// (created if missing). A partial file of an earlier attempt is
    /// overwritten.
    pub(crate) fn create(
        id: MessageId,
        att: &Attachment,
        dir: &Path,
    ) -> Result<Self, AttachmentError> {
        let p = &att.pointer;
        let blob =
            BlobId::try_from(p.blob_id.as_bytes()).map_err(|_| AttachmentError::BadPointer)?;
        if p.size != att.size {
            return Err(AttachmentError::BadPointer);
        }
        let dec = AttachmentDecryptor::new(p).map_err(|_| AttachmentError::BadPointer)?;
        std::fs::create_dir_all(dir).map_err(|e| io(&e))?;
        let part = part_path(dir, id);
        let out = create_private(&part).map_err(|e| io(&e))?;
        let expected = blob_len(p.size);
        Ok(Self {
            blob,
            dec: Some(dec),
            digest: p.digest,
            size: p.size,
            expected,
            max: expected.saturating_add(TAG_LEN as u64),
            received: 0,
            buf: Vec::new(),
            out: Some(out),
            part,
            dest: saved_path(dir, id, &att.file_name),
            saved: false,
        })
    }

    /// The request that starts the transfer.
    pub(crate) fn request(&self, req: RequestId) -> ClientFrame {
        ClientFrame::BlobDownload(BlobDownload {
            req,
            blob: self.blob,
            offset: 0,
        })
    }

    /// Plaintext bytes received so far, and the file's size.
    pub(crate) fn progress(&self) -> (u64, u64) {
        (scale(self.received, self.expected, self.size), self.size)
    }

    /// A frame from the relay about this download: `Ok(None)` to go on,
    /// `Ok(Some(path))` once the file is saved.
    pub(crate) fn handle(&mut self, frame: ServerFrame) -> Result<Option<PathBuf>, Failure> {
        match frame {
            ServerFrame::BlobChunk(c) => {
                if c.blob != self.blob {
                    return Err(AttachmentError::Protocol("a chunk of another blob").into());
                }
                if c.offset != self.received {
                    return Err(AttachmentError::Protocol("a chunk out of order").into());
                }
                let data = c.data.as_slice();
                if self.received.saturating_add(data.len() as u64) > self.max {
                    return Err(
                        AttachmentError::Protocol("more bytes than the attachment has").into(),
                    );
                }
                self.received += data.len() as u64;
                self.buf.extend_from_slice(data);
                // A full STREAM chunk with more bytes behind it is not the
                // final one: decrypt and write it now.
                while self.buf.len() > ENCRYPTED_CHUNK_SIZE {
                    let dec = self
                        .dec
                        .as_mut()
                        .ok_or(AttachmentError::Protocol("chunk after the end"))?;
                    let plain = dec
                        .decrypt_chunk(&self.buf[..ENCRYPTED_CHUNK_SIZE])
                        .map_err(decrypt_error)?;
                    self.write(&plain)?;
                    self.buf.drain(..ENCRYPTED_CHUNK_SIZE);
                }
                Ok(None)
            }
            ServerFrame::BlobEnd(e) => {
                if e.blob != self.blob {
                    return Err(AttachmentError::Protocol("the end of another blob").into());
                }
                if e.size > self.received || self.received < self.expected {
                    return Err(AttachmentError::Incomplete.into());
                }
                if e.size < self.received {
                    return Err(AttachmentError::Protocol("more bytes than the blob has").into());
                }
                if e.digest.0 != self.digest {
                    return Err(AttachmentError::DigestMismatch.into());
                }
                let dec = self
                    .dec
                    .take()
                    .ok_or(AttachmentError::Protocol("a second end"))?;
                // Checks our own SHA-256 of the blob, the last flag and the
                // size, whatever the relay claimed.
                let plain = dec.finish(&self.buf).map_err(decrypt_error)?;
                self.write(&plain)?;
                self.buf.clear();
                let out = self
                    .out
                    .take()
                    .ok_or(AttachmentError::Protocol("a second end"))?;
                out.sync_all().map_err(|e| io(&e))?;
                drop(out);
                std::fs::rename(&self.part, &self.dest).map_err(|e| io(&e))?;
                self.saved = true;
                Ok(Some(self.dest.clone()))
            }
            ServerFrame::Error(e) => Err(refusal(&e, Direction::Download)),
            _ => Err(AttachmentError::Protocol("unexpected frame during a download").into()),
        }
    }

    fn write(&mut self, plain: &[u8]) -> Result<(), AttachmentError> {
        self.out
            .as_mut()
            .ok_or(AttachmentError::Protocol("write after the end"))?
            .write_all(plain)
            .map_err(|e| io(&e))
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        if !self.saved {
            self.out = None;
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

/// Creates (or truncates) a file only its owner can read: what arrives in
/// a private conversation stays private on a shared machine.
fn create_private(path: &Path) -> std::io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o.open(path)
}

fn decrypt_error(e: DecryptError) -> Failure {
    Failure::Fatal(match e {
        DecryptError::DigestMismatch => AttachmentError::DigestMismatch,
        DecryptError::SizeMismatch | DecryptError::UnsupportedVersion { .. } => {
            AttachmentError::BadPointer
        }
        DecryptError::Io(e) => io(&e),
        _ => AttachmentError::Undecryptable,
    })
}

#[cfg(test)]
mod tests {
    use spider_crypto::attachment::{
        AttachmentKey, AttachmentPointer, BlobId as CryptoBlobId, CHUNK_SIZE, encrypt_reader,
    };
    use spider_protocol::bytes::{BoundedBytes, BoundedString, FixedBytes};
    use spider_protocol::error::{ErrorCode, ErrorDetail};
    use spider_protocol::message::{BlobChunk, BlobEnd, ErrorFrame, MAX_BLOB_CHUNK};

    use super::*;
    use rand_core::SeedableRng as _;

    const BLOB: [u8; 32] = [3; 32];

    fn file(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    /// A blob of `plain` and the attachment pointing at it.
    fn sealed(plain: &[u8]) -> (Vec<u8>, Attachment) {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let mut blob = Vec::new();
        let s = encrypt_reader(&mut rng, plain, &mut blob).unwrap();
        let pointer = AttachmentPointer::new(CryptoBlobId::new(BLOB.to_vec()).unwrap(), s);
        let att = Attachment {
            size: pointer.size,
            pointer,
            file_name: "photo.png".into(),
            media_type: "image/png".into(),
        };
        (blob, att)
    }

    /// What the relay would send for `blob`: chunks then the end, with the
    /// relay's own digest of what it has.
    fn relay_frames(blob: &[u8]) -> Vec<ServerFrame> {
        let mut out: Vec<ServerFrame> = blob
            .chunks(MAX_BLOB_CHUNK)
            .scan(0u64, |at, c| {
                let f = ServerFrame::BlobChunk(BlobChunk {
                    blob: BlobId::from_bytes(BLOB),
                    offset: *at,
                    data: BoundedBytes::new(c.to_vec()).unwrap(),
                });
                *at += c.len() as u64;
                Some(f)
            })
            .collect();
        out.push(ServerFrame::BlobEnd(BlobEnd {
            req: RequestId(1),
            blob: BlobId::from_bytes(BLOB),
            size: blob.len() as u64,
            digest: FixedBytes(spider_crypto::attachment::blob_digest(blob).unwrap()),
        }));
        out
    }

    /// Feeds `frames`; the first error, or the saved path.
    fn feed(d: &mut Download, frames: Vec<ServerFrame>) -> Result<PathBuf, Failure> {
        for f in frames {
            if let Some(p) = d.handle(f)? {
                return Ok(p);
            }
        }
        panic!("no end")
    }

    fn id() -> MessageId {
        MessageId::from_bytes([0x42; 16])
    }

    /// The directory holds nothing: no final file, no partial one.
    fn assert_empty(dir: &Path) {
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    #[test]
    fn a_good_blob_is_saved_under_its_final_name_and_nothing_else_is_left() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 5, CHUNK_SIZE, 2 * CHUNK_SIZE + 3] {
            let plain = file(len);
            let (blob, att) = sealed(&plain);
            let mut d = Download::create(id(), &att, dir.path()).unwrap();
            assert_eq!(
                d.request(RequestId(1)),
                ClientFrame::BlobDownload(BlobDownload {
                    req: RequestId(1),
                    blob: BlobId::from_bytes(BLOB),
                    offset: 0,
                })
            );
            let path = feed(&mut d, relay_frames(&blob)).unwrap();
            assert_eq!(d.progress(), (len as u64, len as u64));
            drop(d);
            assert_eq!(path, saved_path(dir.path(), id(), "photo.png"));
            assert_eq!(std::fs::read(&path).unwrap(), plain, "len {len}");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "only the owner reads a saved file");
            }
            std::fs::remove_file(&path).unwrap();
            assert_empty(dir.path());
        }
    }

    #[test]
    fn a_blob_that_is_not_the_pointers_fails_on_its_digest_and_saves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (blob, mut att) = sealed(&file(3 * CHUNK_SIZE));
        att.pointer.digest[0] ^= 1;
        let mut d = Download::create(id(), &att, dir.path()).unwrap();
        let e = feed(&mut d, relay_frames(&blob)).unwrap_err();
        assert_eq!(e, Failure::Fatal(AttachmentError::DigestMismatch));
        drop(d);
        assert_empty(dir.path());
    }

    #[test]
    fn a_truncated_blob_fails_as_incomplete_and_saves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (blob, att) = sealed(&file(3 * CHUNK_SIZE + 10));
        // The relay has (or sends) only the first two STREAM chunks and
        // says that is all.
        let short = &blob[..2 * ENCRYPTED_CHUNK_SIZE];
        let mut d = Download::create(id(), &att, dir.path()).unwrap();
        assert_eq!(
            feed(&mut d, relay_frames(short)).unwrap_err(),
            Failure::Fatal(AttachmentError::Incomplete)
        );
        drop(d);
        assert_empty(dir.path());

        // Chunks stop, but the end claims the whole size.
        let mut frames = relay_frames(&blob);
        let end = frames.pop().unwrap();
        frames.truncate(2);
        frames.push(end);
        let mut d = Download::create(id(), &att, dir.path()).unwrap();
        assert_eq!(
            feed(&mut d, frames).unwrap_err(),
            Failure::Fatal(AttachmentError::Incomplete)
        );
        drop(d);
        assert_empty(dir.path());
    }

    #[test]
    fn the_wrong_key_fails_as_undecryptable_and_saves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for len in [100, 3 * CHUNK_SIZE] {
            let (blob, mut att) = sealed(&file(len));
            att.pointer.key = AttachmentKey::from_bytes([0xee; 32]);
            let mut d = Download::create(id(), &att, dir.path()).unwrap();
            assert_eq!(
                feed(&mut d, relay_frames(&blob)).unwrap_err(),
                Failure::Fatal(AttachmentError::Undecryptable)
            );
            drop(d);
            assert_empty(dir.path());
        }
    }

    #[test]
    fn a_flipped_bit_fails_as_undecryptable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut blob, mut att) = sealed(&file(2 * CHUNK_SIZE));
        blob[CHUNK_SIZE + 100] ^= 0x10;
        // The pointer commits to these bytes (a sender who lies), so only
        // the tag catches it.
        att.pointer.digest = spider_crypto::attachment::blob_digest(blob.as_slice()).unwrap();
        let mut d = Download::create(id(), &att, dir.path()).unwrap();
        assert_eq!(
            feed(&mut d, relay_frames(&blob)).unwrap_err(),
            Failure::Fatal(AttachmentError::Undecryptable)
        );
        drop(d);
        assert_empty(dir.path());
    }

    #[test]
    fn a_relay_that_sends_too_much_or_out_of_order_breaks_the_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let (blob, att) = sealed(&file(10));
        let mut longer = blob.clone();
        longer.extend_from_slice(&[0; 64]);
        let mut d = Download::create(id(), &att, dir.path()).unwrap();
        assert!(matches!(
            feed(&mut d, relay_frames(&longer)).unwrap_err(),
            Failure::Fatal(AttachmentError::Protocol(_))
        ));
        let (blob, att) = sealed(&file(3 * CHUNK_SIZE));
        let mut frames = relay_frames(&blob);
        frames.swap(0, 1);
        let mut d2 = Download::create(id(), &att, dir.path()).unwrap();
        assert!(matches!(
            feed(&mut d2, frames).unwrap_err(),
            Failure::Fatal(AttachmentError::Protocol(_))
        ));
        drop((d, d2));
        assert_empty(dir.path());
    }

    #[test]
    fn an_unknown_blob_is_reported_as_expired() {
        let dir = tempfile::tempdir().unwrap();
        let (_, att) = sealed(&file(10));
        let mut d = Download::create(id(), &att, dir.path()).unwrap();
        let e = d
            .handle(ServerFrame::Error(ErrorFrame {
                req: Some(RequestId(1)),
                code: ErrorCode::UNKNOWN_BLOB,
                message: BoundedString::new("no such blob").unwrap(),
                detail: ErrorDetail::None,
            }))
            .unwrap_err();
        assert_eq!(e, Failure::Fatal(AttachmentError::Expired));
        drop(d);
        assert_empty(dir.path());
    }

    #[test]
    fn a_pointer_with_a_blob_id_this_relay_cannot_have_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut att) = sealed(&file(10));
        att.pointer.blob_id = CryptoBlobId::new(vec![1; 20]).unwrap();
        assert_eq!(
            Download::create(id(), &att, dir.path()).unwrap_err(),
            AttachmentError::BadPointer
        );
        let (_, mut att) = sealed(&file(10));
        att.size += 1;
        assert_eq!(
            Download::create(id(), &att, dir.path()).unwrap_err(),
            AttachmentError::BadPointer
        );
        assert_empty(dir.path());
    }
}
