//! One upload attempt as a state machine: the file is read and encrypted a
//! chunk at a time, as the transport takes the ciphertext.
//!
//! ```text
//!   start(req)           ──► BlobUploadStart { size: blob_len(file) }
//!   handle(BlobUploadReady)   (now the blob id is known)
//!   next_frame() …       ──► BlobChunk { offset, ≤ MAX_BLOB_CHUNK bytes } …
//!   next_frame()         ──► BlobUploadFinish { digest }      (then None)
//!   handle(BlobStored)   ──► the AttachmentPointer for the message
//! ```
//!
//! STREAM chunks (`ENCRYPTED_CHUNK_SIZE` bytes) and blob chunks
//! (`MAX_BLOB_CHUNK` bytes) differ in size: ciphertext waits in `pending`,
//! which never holds more than one STREAM chunk plus one blob chunk.

use std::io::{ErrorKind, Read};

use spider_crypto::attachment::{
    AttachmentEncryptor, AttachmentKey, AttachmentPointer, BlobId as CryptoBlobId, CHUNK_SIZE,
    SealedAttachment,
};
use spider_protocol::bytes::{BoundedBytes, FixedBytes};
use spider_protocol::ids::{BlobId, RequestId};
use spider_protocol::message::{BlobChunk, BlobUploadFinish, BlobUploadStart, MAX_BLOB_CHUNK};
use spider_protocol::{ClientFrame, ServerFrame};
use zeroize::Zeroizing;

use super::{AttachmentError, Direction, Failure, blob_len, chunk_count, refusal, scale};

/// One attempt at uploading a file of known size from `R`.
pub(crate) struct Upload<R> {
    file: R,
    /// Plaintext size, fixed when the attempt started.
    size: u64,
    /// STREAM chunks in all, and how many are encrypted so far.
    chunks: u64,
    encrypted: u64,
    enc: Option<AttachmentEncryptor>,
    sealed: Option<SealedAttachment>,
    /// Ciphertext not yet handed out as blob chunks.
    pending: Vec<u8>,
    /// Ciphertext bytes handed out, and in all.
    sent: u64,
    total: u64,
    blob: Option<BlobId>,
    finish_sent: bool,
}

impl<R> core::fmt::Debug for Upload<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Upload")
            .field("size", &self.size)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Upload<R> {
    /// Starts an attempt for `size` bytes read from `file`, encrypted under
    /// `key`, which must be fresh (a retry draws a new one).
    pub(crate) fn new(file: R, size: u64, key: AttachmentKey) -> Self {
        Self {
            file,
            size,
            chunks: chunk_count(size),
            encrypted: 0,
            enc: Some(AttachmentEncryptor::with_key(key)),
            sealed: None,
            pending: Vec::new(),
            sent: 0,
            total: blob_len(size),
            blob: None,
            finish_sent: false,
        }
    }

    /// The plaintext size.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The first frame.
    pub(crate) fn start(&self, req: RequestId) -> ClientFrame {
        ClientFrame::BlobUploadStart(BlobUploadStart {
            req,
            size: self.total,
        })
    }

    /// Whether the relay has given the blob its id (chunks may flow).
    pub(crate) fn ready(&self) -> bool {
        self.blob.is_some()
    }

    /// A frame from the relay about this upload: `Ok(None)` to go on,
    /// `Ok(Some(pointer))` once the blob is stored.
    pub(crate) fn handle(
        &mut self,
        frame: ServerFrame,
    ) -> Result<Option<AttachmentPointer>, Failure> {
        match frame {
            ServerFrame::BlobUploadReady(r) if self.blob.is_none() => {
                self.blob = Some(r.blob);
                Ok(None)
            }
            ServerFrame::BlobStored(s) if self.finish_sent && Some(s.blob) == self.blob => {
                let sealed = self
                    .sealed
                    .take()
                    .ok_or(AttachmentError::Protocol("stored before finish"))?;
                let id = CryptoBlobId::new(s.blob.as_bytes().to_vec())
                    .map_err(|_| AttachmentError::BadPointer)?;
                Ok(Some(AttachmentPointer::new(id, sealed)))
            }
            ServerFrame::Error(e) => Err(refusal(&e, Direction::Upload)),
            _ => Err(Failure::Fatal(AttachmentError::Protocol(
                "unexpected frame during an upload",
            ))),
        }
    }

    /// The next chunk, then the finish (with `finish_req`), then `None`.
    /// Reads and encrypts the file as needed.
    pub(crate) fn next_frame(
        &mut self,
        finish_req: RequestId,
    ) -> Result<Option<ClientFrame>, Failure> {
        let Some(blob) = self.blob else {
            return Err(Failure::Fatal(AttachmentError::Protocol(
                "chunks before the relay was ready",
            )));
        };
        while self.pending.len() < MAX_BLOB_CHUNK && self.encrypted < self.chunks {
            self.encrypt_next()?;
        }
        if !self.pending.is_empty() {
            let n = self.pending.len().min(MAX_BLOB_CHUNK);
            let data: Vec<u8> = self.pending.drain(..n).collect();
            let offset = self.sent;
            self.sent += n as u64;
            let data = BoundedBytes::new(data)
                .map_err(|_| AttachmentError::Protocol("chunk over its bound"))?;
            return Ok(Some(ClientFrame::BlobChunk(BlobChunk {
                blob,
                offset,
                data,
            })));
        }
        if self.finish_sent {
            return Ok(None);
        }
        let digest = self
            .sealed
            .as_ref()
            .map(|s| s.digest)
            .ok_or(AttachmentError::Protocol("finish before the last chunk"))?;
        self.finish_sent = true;
        Ok(Some(ClientFrame::BlobUploadFinish(BlobUploadFinish {
            req: finish_req,
            blob,
            digest: FixedBytes(digest),
        })))
    }

    /// Reads STREAM chunk `encrypted` and appends its ciphertext.
    fn encrypt_next(&mut self) -> Result<(), Failure> {
        let index = self.encrypted;
        let start = index * CHUNK_SIZE as u64;
        let len = usize::try_from(self.size.saturating_sub(start).min(CHUNK_SIZE as u64))
            .unwrap_or(CHUNK_SIZE);
        let mut plain = Zeroizing::new(vec![0u8; len]);
        self.file.read_exact(&mut plain).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                AttachmentError::FileChanged
            } else {
                AttachmentError::File(e.kind().to_string())
            }
        })?;
        let last = index + 1 == self.chunks;
        let out = if last {
            let enc = self
                .enc
                .take()
                .ok_or(AttachmentError::Protocol("encrypted past the end"))?;
            let (out, sealed) = enc
                .finish(&plain)
                .map_err(|_| AttachmentError::File("cannot encrypt".into()))?;
            if sealed.size != self.size {
                return Err(AttachmentError::FileChanged.into());
            }
            self.sealed = Some(sealed);
            out
        } else {
            self.enc
                .as_mut()
                .ok_or(AttachmentError::Protocol("encrypted past the end"))?
                .encrypt_chunk(&plain)
                .map_err(|_| AttachmentError::File("cannot encrypt".into()))?
        };
        self.pending.extend_from_slice(&out);
        self.encrypted += 1;
        Ok(())
    }

    /// Plaintext bytes whose ciphertext went out, and the file's size.
    pub(crate) fn progress(&self) -> (u64, u64) {
        (scale(self.sent, self.total, self.size), self.size)
    }
}

#[cfg(test)]
mod tests {
    use spider_crypto::attachment::{ENCRYPTED_CHUNK_SIZE, decrypt_reader};
    use spider_protocol::ids::Timestamp;
    use spider_protocol::message::{BlobStored, BlobUploadReady};

    use super::*;

    fn run(file: &[u8]) -> (Vec<ClientFrame>, Vec<u8>, AttachmentPointer) {
        let mut up = Upload::new(file, file.len() as u64, AttachmentKey::from_bytes([5; 32]));
        let mut frames = vec![up.start(RequestId(1))];
        let blob = BlobId::from_bytes([9; 32]);
        assert_eq!(
            up.handle(ServerFrame::BlobUploadReady(BlobUploadReady {
                req: RequestId(1),
                blob
            }))
            .unwrap(),
            None
        );
        let mut cipher = Vec::new();
        while let Some(f) = up.next_frame(RequestId(2)).unwrap() {
            if let ClientFrame::BlobChunk(c) = &f {
                assert_eq!(c.offset, cipher.len() as u64);
                assert!(c.data.len() <= MAX_BLOB_CHUNK);
                cipher.extend_from_slice(c.data.as_slice());
            }
            frames.push(f);
        }
        assert_eq!(up.progress(), (file.len() as u64, file.len() as u64));
        let pointer = up
            .handle(ServerFrame::BlobStored(BlobStored {
                req: RequestId(2),
                blob,
                expires_at: Timestamp(1),
            }))
            .unwrap()
            .unwrap();
        (frames, cipher, pointer)
    }

    #[test]
    fn an_upload_declares_its_blob_size_and_its_chunks_decrypt_to_the_file() {
        for len in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            3 * CHUNK_SIZE + 7,
        ] {
            let file: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (frames, cipher, pointer) = run(&file);
            let Some(ClientFrame::BlobUploadStart(s)) = frames.first() else {
                panic!("no start")
            };
            assert_eq!(s.size, cipher.len() as u64, "declared size, len {len}");
            assert_eq!(s.size, blob_len(len as u64));
            let Some(ClientFrame::BlobUploadFinish(f)) = frames.last() else {
                panic!("no finish")
            };
            assert_eq!(f.digest.0, pointer.digest);
            assert_eq!(pointer.size, len as u64);
            assert_eq!(pointer.blob_id.as_bytes(), &[9; 32]);
            let mut out = Vec::new();
            decrypt_reader(&pointer, cipher.as_slice(), &mut out).unwrap();
            assert_eq!(out, file);
        }
    }

    #[test]
    fn pending_ciphertext_stays_within_two_chunks() {
        let file = vec![7u8; 10 * CHUNK_SIZE];
        let mut up = Upload::new(
            file.as_slice(),
            file.len() as u64,
            AttachmentKey::from_bytes([1; 32]),
        );
        up.handle(ServerFrame::BlobUploadReady(BlobUploadReady {
            req: RequestId(1),
            blob: BlobId::from_bytes([1; 32]),
        }))
        .unwrap();
        while up.next_frame(RequestId(2)).unwrap().is_some() {
            assert!(up.pending.len() < ENCRYPTED_CHUNK_SIZE + MAX_BLOB_CHUNK);
        }
    }

    #[test]
    fn a_file_shorter_than_announced_fails_as_changed() {
        let file = vec![1u8; 1000];
        let mut up = Upload::new(file.as_slice(), 5000, AttachmentKey::from_bytes([1; 32]));
        up.handle(ServerFrame::BlobUploadReady(BlobUploadReady {
            req: RequestId(1),
            blob: BlobId::from_bytes([1; 32]),
        }))
        .unwrap();
        assert_eq!(
            up.next_frame(RequestId(2)).unwrap_err(),
            Failure::Fatal(AttachmentError::FileChanged)
        );
    }

    #[test]
    fn relay_refusals_become_clear_errors() {
        use spider_protocol::bytes::BoundedString;
        use spider_protocol::error::{ErrorCode, ErrorDetail};
        use spider_protocol::message::ErrorFrame;
        let refuse = |code, detail| {
            let mut up = Upload::new(&[][..], 0, AttachmentKey::from_bytes([1; 32]));
            up.handle(ServerFrame::Error(ErrorFrame {
                req: Some(RequestId(1)),
                code,
                message: BoundedString::new("no").unwrap(),
                detail,
            }))
            .unwrap_err()
        };
        assert_eq!(
            refuse(ErrorCode::BLOB_QUOTA_EXCEEDED, ErrorDetail::None),
            Failure::Fatal(AttachmentError::QuotaExceeded)
        );
        assert_eq!(
            refuse(ErrorCode::BLOB_TOO_LARGE, ErrorDetail::None),
            Failure::Fatal(AttachmentError::TooLarge)
        );
        assert_eq!(
            refuse(ErrorCode::RATE_LIMITED, ErrorDetail::RetryAfter { ms: 250 }),
            Failure::RetryAfter(250)
        );
        assert_eq!(
            AttachmentError::QuotaExceeded.to_string(),
            "your attachment storage on the relay is full"
        );
    }
}
