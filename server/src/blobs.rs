//! Blobs (encrypted attachments): uploads in chunks, downloads from an
//! offset, expiry.
//!
//! # Storage
//!
//! Blob bytes are files, exactly as uploaded: `DATA/blobs/<hex id>`. An
//! upload streams its chunks into `DATA/blobs/tmp/<hex id>` while hashing
//! them (never holding a whole blob in memory); at `BlobUploadFinish` the
//! size and SHA-256 are checked, the file is fsync'd, renamed to its final
//! name, and the directory fsync'd; only then is its metadata (owner, size,
//! digest, expiry) written to the store, flushed, and `BlobStored` sent. A
//! crash before that leaves a temporary file, which the next start deletes;
//! a crash after the rename but before the metadata flush leaves an orphan
//! file that nothing refers to (downloads need the metadata), which the
//! hourly sweep deletes once it is an hour old.
//!
//! # Transport
//!
//! On QUIC, after authentication, each further bidirectional stream the
//! client opens carries one transfer (no `Hello`; it belongs to the
//! authenticated connection) and is finished when the transfer ends. The
//! same frames are also served on the control stream and on WebSocket,
//! their chunks told apart by `blob`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use spider_protocol::bytes::{BoundedBytes, FixedBytes};
use spider_protocol::ids::{BlobId, RequestId, Timestamp, UserId};
use spider_protocol::message::{
    BlobChunk, BlobDownload, BlobEnd, BlobStored, BlobUploadFinish, BlobUploadReady,
    BlobUploadStart, MAX_BLOB_CHUNK,
};
use spider_protocol::{ErrorCode, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::Refusal;
use crate::auth::Authed;
use crate::metrics::Limit;
use crate::server::{Shared, now};
use crate::store::BlobMeta;

/// The directory of blob files.
pub(crate) fn dir(data: &Path) -> PathBuf {
    data.join("blobs")
}

fn tmp_dir(data: &Path) -> PathBuf {
    dir(data).join("tmp")
}

fn path(data: &Path, id: BlobId) -> PathBuf {
    dir(data).join(id.to_hex())
}

/// Creates the blob directories and deletes uploads a crash left behind.
pub(crate) fn prepare(data: &Path) -> std::io::Result<()> {
    let tmp = tmp_dir(data);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)
}

/// Bytes of uploads in progress per account, over all its connections and
/// streams, so that parallel uploads cannot overrun the quota together.
pub(crate) type Reservations = Arc<Mutex<HashMap<UserId, u64>>>;

/// One upload in progress.
struct Upload {
    req: RequestId,
    size: u64,
    written: u64,
    file: tokio::fs::File,
    hasher: Sha256,
}

/// A connection's uploads in progress. Dropping it deletes their files.
pub(crate) struct Uploads {
    data: PathBuf,
    user: UserId,
    reservations: Reservations,
    open: HashMap<BlobId, Upload>,
}

impl Drop for Uploads {
    fn drop(&mut self) {
        let ids: Vec<BlobId> = self.open.keys().copied().collect();
        for id in ids {
            let _ = std::fs::remove_file(tmp_dir(&self.data).join(id.to_hex()));
            self.release(id);
        }
    }
}

impl Uploads {
    /// No uploads yet, for this account.
    pub(crate) fn new(shared: &Shared, user: UserId) -> Self {
        Self {
            data: shared.config.data.clone(),
            user,
            reservations: shared.blob_reservations.clone(),
            open: HashMap::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, u64>> {
        self.reservations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives back an upload's reserved bytes (the upload stays in `open`).
    fn release(&self, id: BlobId) {
        let Some(size) = self.open.get(&id).map(|u| u.size) else {
            return;
        };
        let mut g = self.lock();
        if let Some(r) = g.get_mut(&self.user) {
            *r = r.saturating_sub(size);
            if *r == 0 {
                g.remove(&self.user);
            }
        }
    }

    /// Whether this upload is in progress here.
    pub(crate) fn has(&self, id: BlobId) -> bool {
        self.open.contains_key(&id)
    }

    async fn abort(&mut self, id: BlobId) {
        self.release(id);
        if self.open.remove(&id).is_some() {
            let _ = tokio::fs::remove_file(tmp_dir(&self.data).join(id.to_hex())).await;
        }
    }

    /// `BlobUploadStart`: check size and quota, open the temporary file.
    pub(crate) async fn start(
        &mut self,
        shared: &Shared,
        me: &Authed,
        s: BlobUploadStart,
    ) -> Result<ServerFrame, Refusal> {
        let limits = &shared.config.limits;
        if s.size > limits.blob_max_size {
            return Err(Refusal::by(
                Limit::BlobSize,
                ErrorCode::BLOB_TOO_LARGE,
                "the blob is too large",
            ));
        }
        if self.open.len() >= limits.max_uploads_per_connection {
            return Err(Refusal::by(
                Limit::UploadsPerConnection,
                ErrorCode::RATE_LIMITED,
                "too many uploads in progress on this connection",
            ));
        }
        let used = shared.store.blob_usage(me.addr.user)?;
        {
            let mut g = self.lock();
            let reserved = g.entry(me.addr.user).or_insert(0);
            if used.saturating_add(*reserved).saturating_add(s.size) > limits.blob_quota {
                return Err(Refusal::by(
                    Limit::BlobQuota,
                    ErrorCode::BLOB_QUOTA_EXCEEDED,
                    "your blob storage quota is used up",
                ));
            }
            *reserved = reserved.saturating_add(s.size);
        }
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|_| Refusal::internal())?;
        let id = BlobId::from_bytes(b);
        let file = match tokio::fs::File::create(tmp_dir(&self.data).join(id.to_hex())).await {
            Ok(f) => f,
            Err(e) => {
                let mut g = self.lock();
                if let Some(r) = g.get_mut(&me.addr.user) {
                    *r = r.saturating_sub(s.size);
                }
                return Err(io(e));
            }
        };
        self.open.insert(
            id,
            Upload {
                req: s.req,
                size: s.size,
                written: 0,
                file,
                hasher: Sha256::new(),
            },
        );
        Ok(ServerFrame::BlobUploadReady(BlobUploadReady {
            req: s.req,
            blob: id,
        }))
    }

    /// `BlobChunk`: append in order. `Err` with the start's `req` aborts the
    /// upload; `Err` without `req` is for a chunk of no upload.
    pub(crate) async fn chunk(&mut self, c: BlobChunk) -> Result<(), (Option<RequestId>, Refusal)> {
        let Some(u) = self.open.get_mut(&c.blob) else {
            return Err((
                None,
                Refusal::new(
                    ErrorCode::UNKNOWN_BLOB,
                    "no upload in progress for this blob",
                ),
            ));
        };
        let len = c.data.as_slice().len() as u64;
        if c.offset != u.written || u.written.saturating_add(len) > u.size {
            let req = u.req;
            self.abort(c.blob).await;
            return Err((
                Some(req),
                Refusal::new(
                    ErrorCode::BLOB_INCOMPLETE,
                    "chunk out of order or past the declared size; upload aborted",
                ),
            ));
        }
        u.hasher.update(c.data.as_slice());
        if u.file.write_all(c.data.as_slice()).await.is_err() {
            let req = u.req;
            self.abort(c.blob).await;
            return Err((Some(req), Refusal::internal()));
        }
        u.written += len;
        Ok(())
    }

    /// `BlobUploadFinish`: check, make durable, record.
    pub(crate) async fn finish(
        &mut self,
        shared: &Shared,
        me: &Authed,
        f: BlobUploadFinish,
    ) -> Result<ServerFrame, Refusal> {
        self.release(f.blob);
        let Some(mut u) = self.open.remove(&f.blob) else {
            return Err(Refusal::new(
                ErrorCode::UNKNOWN_BLOB,
                "no upload in progress for this blob",
            ));
        };
        let tmp = tmp_dir(&self.data).join(f.blob.to_hex());
        let result = async {
            if u.written != u.size {
                return Err(Refusal::new(
                    ErrorCode::BLOB_INCOMPLETE,
                    "the chunks do not add up to the declared size",
                ));
            }
            let digest: [u8; 32] = u.hasher.finalize().into();
            if digest != f.digest.0 {
                return Err(Refusal::new(
                    ErrorCode::BLOB_DIGEST_MISMATCH,
                    "the SHA-256 is not the one declared",
                ));
            }
            u.file.flush().await.map_err(io)?;
            u.file.sync_all().await.map_err(io)?;
            drop(u.file);
            let dest = path(&self.data, f.blob);
            tokio::fs::rename(&tmp, &dest).await.map_err(io)?;
            let d = dir(&self.data);
            tokio::task::spawn_blocking(move || std::fs::File::open(d)?.sync_all())
                .await
                .map_err(|_| Refusal::internal())?
                .map_err(io)?;
            let expires_at = Timestamp(now().0.saturating_add(shared.config.limits.blob_expiry_ms));
            shared.store.put_blob(
                f.blob,
                &BlobMeta {
                    owner: me.addr.user,
                    size: u.size,
                    digest,
                    expires_at,
                },
            )?;
            shared.flush().await?;
            crate::metrics::blob_stored(u.size);
            Ok(ServerFrame::BlobStored(BlobStored {
                req: f.req,
                blob: f.blob,
                expires_at,
            }))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }
}

fn io(e: std::io::Error) -> Refusal {
    tracing::error!(error = %e, "blob file operation failed");
    Refusal::internal()
}

/// The frames of a download are produced one at a time, so that memory stays
/// bounded by one chunk.
pub(crate) struct Download {
    req: RequestId,
    blob: BlobId,
    meta: BlobMeta,
    file: tokio::fs::File,
    at: u64,
    done: bool,
}

impl Download {
    /// Opens a download (`UNKNOWN_BLOB` for unknown or expired ids).
    pub(crate) async fn open(shared: &Shared, d: BlobDownload) -> Result<Self, Refusal> {
        let unknown = || Refusal::new(ErrorCode::UNKNOWN_BLOB, "no such blob");
        let meta = shared.store.blob(d.blob)?.ok_or_else(unknown)?;
        if meta.expires_at <= now() {
            return Err(unknown());
        }
        let mut file = tokio::fs::File::open(path(&shared.config.data, d.blob))
            .await
            .map_err(|_| unknown())?;
        let at = d.offset.min(meta.size);
        file.seek(std::io::SeekFrom::Start(at)).await.map_err(io)?;
        crate::metrics::blob_download();
        Ok(Self {
            req: d.req,
            blob: d.blob,
            meta,
            file,
            at,
            done: false,
        })
    }

    /// The next frame: a chunk, then `BlobEnd`, then `None`.
    pub(crate) async fn next(&mut self) -> Result<Option<ServerFrame>, Refusal> {
        if self.done {
            return Ok(None);
        }
        if self.at >= self.meta.size {
            self.done = true;
            return Ok(Some(ServerFrame::BlobEnd(BlobEnd {
                req: self.req,
                blob: self.blob,
                size: self.meta.size,
                digest: FixedBytes(self.meta.digest),
            })));
        }
        let n = (self.meta.size - self.at).min(MAX_BLOB_CHUNK as u64) as usize;
        let mut buf = vec![0u8; n];
        self.file.read_exact(&mut buf).await.map_err(io)?;
        let offset = self.at;
        self.at += n as u64;
        Ok(Some(ServerFrame::BlobChunk(BlobChunk {
            blob: self.blob,
            offset,
            data: BoundedBytes::new(buf).map_err(|_| Refusal::internal())?,
        })))
    }
}

/// How old a blob file without metadata must be before the sweep deletes
/// it: far longer than a finishing upload takes between rename and record.
const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes expired blobs (metadata first, so they are unknown at once, then
/// files), and old files that no metadata refers to.
pub(crate) fn sweep(
    store: &dyn crate::store::Store,
    data: &Path,
) -> Result<usize, crate::store::StoreError> {
    let expired = store.expired_blobs(now())?;
    for id in &expired {
        store.remove_blob(*id)?;
        let _ = std::fs::remove_file(path(data, *id));
    }
    let mut n = expired.len();
    let Ok(entries) = std::fs::read_dir(dir(data)) else {
        return Ok(n);
    };
    for e in entries.flatten() {
        let Some(id) = e.file_name().to_str().and_then(BlobId::from_hex) else {
            continue;
        };
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > ORPHAN_AGE);
        if old && store.blob(id)?.is_none() && std::fs::remove_file(e.path()).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::store::{MemStore, Store};

    #[test]
    fn sweep_deletes_expired_blobs_and_old_orphans_only() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path()).unwrap();
        let store = MemStore::new();
        let id = |n| BlobId::from_bytes([n; 32]);
        let meta = |at| BlobMeta {
            owner: UserId::from_bytes([1; 16]),
            size: 1,
            digest: [0; 32],
            expires_at: Timestamp(at),
        };
        for n in 1..=4 {
            std::fs::write(path(dir.path(), id(n)), b"x").unwrap();
        }
        store.put_blob(id(1), &meta(1)).unwrap(); // expired
        store.put_blob(id(2), &meta(u64::MAX)).unwrap(); // live
        // id(3): an orphan an hour and more old; id(4): a fresh orphan.
        std::fs::File::options()
            .write(true)
            .open(path(dir.path(), id(3)))
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        assert_eq!(sweep(&store, dir.path()).unwrap(), 2);
        assert_eq!(store.blob(id(1)).unwrap(), None);
        assert!(!path(dir.path(), id(1)).exists());
        assert!(path(dir.path(), id(2)).exists());
        assert!(!path(dir.path(), id(3)).exists());
        assert!(path(dir.path(), id(4)).exists());
    }
}
