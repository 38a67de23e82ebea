//! Blobs over real QUIC and WebSocket: chunked upload and download with the
//! digest, the upload's failure modes, quota, expiry, and what the data
//! directory holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use sha2::{Digest, Sha256};
use spider_protocol::bytes::{BoundedBytes, FixedBytes};
use spider_protocol::ids::{BlobId, MessageId, RequestId};
use spider_protocol::message::{
    BlobChunk, BlobDownload, BlobUploadFinish, BlobUploadStart, MAX_BLOB_CHUNK,
};
use spider_protocol::{ClientFrame, ErrorCode, ServerFrame};

fn digest(data: &[u8]) -> FixedBytes<32> {
    FixedBytes(Sha256::digest(data).into())
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn start(c: &mut Client, size: u64) -> (RequestId, ServerFrame) {
    let req = c.req();
    c.send(ClientFrame::BlobUploadStart(BlobUploadStart { req, size }))
        .await;
    (req, c.expect().await)
}

async fn ready(c: &mut Client, size: u64) -> BlobId {
    match start(c, size).await {
        (req, ServerFrame::BlobUploadReady(r)) => {
            assert_eq!(r.req, req);
            r.blob
        }
        (_, f) => panic!("upload refused: {f:?}"),
    }
}

async fn chunk(c: &mut Client, blob: BlobId, offset: u64, data: &[u8]) {
    c.send(ClientFrame::BlobChunk(BlobChunk {
        blob,
        offset,
        data: BoundedBytes::new(data.to_vec()).unwrap(),
    }))
    .await;
}

async fn finish(c: &mut Client, blob: BlobId, d: FixedBytes<32>) -> ServerFrame {
    let req = c.req();
    c.send(ClientFrame::BlobUploadFinish(BlobUploadFinish {
        req,
        blob,
        digest: d,
    }))
    .await;
    c.expect().await
}

/// Uploads `data` in full chunks; returns the blob id.
async fn upload(c: &mut Client, data: &[u8]) -> BlobId {
    let blob = ready(c, data.len() as u64).await;
    for (i, part) in data.chunks(MAX_BLOB_CHUNK).enumerate() {
        chunk(c, blob, (i * MAX_BLOB_CHUNK) as u64, part).await;
    }
    match finish(c, blob, digest(data)).await {
        ServerFrame::BlobStored(s) => assert_eq!(s.blob, blob),
        f => panic!("upload failed: {f:?}"),
    }
    blob
}

/// Downloads from `offset`: the bytes, and the digest from `BlobEnd`.
async fn download(
    c: &mut Client,
    blob: BlobId,
    offset: u64,
) -> Result<(Vec<u8>, u64, FixedBytes<32>), ErrorCode> {
    let req = c.req();
    c.send(ClientFrame::BlobDownload(BlobDownload {
        req,
        blob,
        offset,
    }))
    .await;
    let mut got = Vec::new();
    loop {
        match c.expect().await {
            ServerFrame::BlobChunk(ch) => {
                assert_eq!(ch.blob, blob);
                assert_eq!(ch.offset, offset + got.len() as u64);
                got.extend_from_slice(ch.data.as_slice());
            }
            ServerFrame::BlobEnd(e) => {
                assert_eq!((e.req, e.blob), (req, blob));
                return Ok((got, e.size, e.digest));
            }
            ServerFrame::Error(e) => {
                assert_eq!(e.req, Some(req));
                return Err(e.code);
            }
            f => panic!("unexpected {f:?}"),
        }
    }
}

fn err(f: ServerFrame) -> (Option<RequestId>, ErrorCode) {
    match f {
        ServerFrame::Error(e) => (e.req, e.code),
        f => panic!("expected an error, got {f:?}"),
    }
}

#[tokio::test]
async fn multi_chunk_blob_round_trips_over_both_transports() {
    let relay = start_relay().await;
    for (up, down) in [
        (Transport::Quic, Transport::Ws),
        (Transport::Ws, Transport::Quic),
    ] {
        let (_alice, mut a) = register(&relay, up, "alice").await;
        let (_bob, mut b) = register(&relay, down, "bob").await;
        let data = bytes(2 * MAX_BLOB_CHUNK + 1234, 7);
        let blob = upload(&mut a, &data).await;
        // Anyone with the id may download it.
        let (got, size, d) = download(&mut b, blob, 0).await.unwrap();
        assert_eq!(got, data);
        assert_eq!(size, data.len() as u64);
        assert_eq!(d, digest(&data));
        assert_eq!(digest(&got), d);
        // Resume from an offset.
        let (tail, _, _) = download(&mut b, blob, 70_000).await.unwrap();
        assert_eq!(tail, data[70_000..]);
        // Stored exactly as uploaded.
        let file = relay.dir.path().join("blobs").join(blob.to_hex());
        assert_eq!(std::fs::read(file).unwrap(), data);
    }
    relay.stop().await;
}

#[tokio::test]
async fn wrong_digest_and_short_uploads_are_refused_and_not_kept() {
    let relay = start_relay().await;
    for t in BOTH {
        let (_alice, mut a) = register(&relay, t, "alice").await;
        let data = bytes(1000, 1);
        // Wrong digest.
        let blob = ready(&mut a, 1000).await;
        chunk(&mut a, blob, 0, &data).await;
        assert_eq!(
            err(finish(&mut a, blob, digest(b"something else")).await).1,
            ErrorCode::BLOB_DIGEST_MISMATCH
        );
        assert_eq!(
            download(&mut a, blob, 0).await.unwrap_err(),
            ErrorCode::UNKNOWN_BLOB
        );
        // Short.
        let blob = ready(&mut a, 1000).await;
        chunk(&mut a, blob, 0, &data[..500]).await;
        assert_eq!(
            err(finish(&mut a, blob, digest(&data)).await).1,
            ErrorCode::BLOB_INCOMPLETE
        );
        assert_eq!(
            download(&mut a, blob, 0).await.unwrap_err(),
            ErrorCode::UNKNOWN_BLOB
        );
        // The connection goes on.
        let ok = upload(&mut a, &data).await;
        assert_eq!(download(&mut a, ok, 0).await.unwrap().0, data);
    }
    // No upload left a temporary file behind.
    let tmp = relay.dir.path().join("blobs").join("tmp");
    assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
    relay.stop().await;
}

#[tokio::test]
async fn out_of_order_or_overlong_chunks_abort_the_upload_with_the_start_req() {
    let relay = start_relay().await;
    for t in BOTH {
        let (_alice, mut a) = register(&relay, t, "alice").await;
        let data = bytes(100, 2);
        // Out of order.
        let (start_req, f) = start(&mut a, 100).await;
        let ServerFrame::BlobUploadReady(r) = f else {
            panic!("{f:?}")
        };
        chunk(&mut a, r.blob, 0, &data[..10]).await;
        chunk(&mut a, r.blob, 50, &data[50..]).await;
        assert_eq!(
            err(a.expect().await),
            (Some(start_req), ErrorCode::BLOB_INCOMPLETE)
        );
        assert_eq!(
            err(finish(&mut a, r.blob, digest(&data)).await).1,
            ErrorCode::UNKNOWN_BLOB
        );
        // Past the declared size.
        let (start_req, f) = start(&mut a, 50).await;
        let ServerFrame::BlobUploadReady(r) = f else {
            panic!("{f:?}")
        };
        chunk(&mut a, r.blob, 0, &data).await;
        assert_eq!(
            err(a.expect().await),
            (Some(start_req), ErrorCode::BLOB_INCOMPLETE)
        );
        // A chunk of no upload.
        chunk(&mut a, BlobId::from_bytes(random()), 0, &data).await;
        assert_eq!(err(a.expect().await), (None, ErrorCode::UNKNOWN_BLOB));
    }
    relay.stop().await;
}

#[tokio::test]
async fn size_and_quota_limits_are_enforced_at_start_and_others_keep_working() {
    let relay = start_relay_with(|c| {
        c.limits.blob_max_size = 1000;
        c.limits.blob_quota = 1500;
    })
    .await;
    let size = Counted::new(&relay, "blob_max_size").await;
    let quota = Counted::new(&relay, "blob_quota").await;
    let (_alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (req, f) = start(&mut a, 1001).await;
    assert_eq!(err(f), (Some(req), ErrorCode::BLOB_TOO_LARGE));
    size.saw(1).await;
    upload(&mut a, &bytes(1000, 3)).await;
    assert_eq!(
        err(start(&mut a, 600).await.1).1,
        ErrorCode::BLOB_QUOTA_EXCEEDED
    );
    // Uploads in progress count too.
    let _pending = ready(&mut a, 300).await;
    assert_eq!(
        err(start(&mut a, 300).await.1).1,
        ErrorCode::BLOB_QUOTA_EXCEEDED
    );
    // Also those on another stream.
    let mut t = a.open_transfer().await;
    t.send(ClientFrame::BlobUploadStart(BlobUploadStart {
        req: RequestId(1000),
        size: 300,
    }))
    .await;
    assert_eq!(
        err(t.recv().await.unwrap()).1,
        ErrorCode::BLOB_QUOTA_EXCEEDED
    );
    quota.saw(3).await;
    // Another account has its own quota, and messages flow.
    let (_bob, mut b) = register(&relay, Transport::Ws, "bob").await;
    upload(&mut b, &bytes(1000, 4)).await;
    others_keep_working(&relay, LOCALHOST).await;
    relay.stop().await;
}

#[tokio::test]
async fn uploads_in_progress_per_connection_are_limited_and_other_connections_upload() {
    let relay = start_relay_with(|c| c.limits.max_uploads_per_connection = 2).await;
    let counted = Counted::new(&relay, "max_uploads_per_connection").await;
    let (_alice, mut a) = register(&relay, Transport::Ws, "alice").await;
    let one = ready(&mut a, 10).await;
    let _two = ready(&mut a, 10).await;
    let (req, f) = start(&mut a, 10).await;
    assert_eq!(err(f), (Some(req), ErrorCode::RATE_LIMITED));
    counted.saw(1).await;
    // Another connection uploads; a finished upload frees a place.
    let (_bob, mut b) = register(&relay, Transport::Ws, "bob").await;
    upload(&mut b, &bytes(100, 5)).await;
    let data = bytes(10, 6);
    chunk(&mut a, one, 0, &data).await;
    assert!(matches!(
        finish(&mut a, one, digest(&data)).await,
        ServerFrame::BlobStored(_)
    ));
    let _three = ready(&mut a, 10).await;
    others_keep_working(&relay, LOCALHOST).await;
    relay.stop().await;
}

#[tokio::test]
async fn unknown_and_expired_blobs_are_unknown() {
    let relay = start_relay_with(|c| c.limits.blob_expiry_ms = 0).await;
    let (_alice, mut a) = register(&relay, Transport::Ws, "alice").await;
    assert_eq!(
        download(&mut a, BlobId::from_bytes(random()), 0)
            .await
            .unwrap_err(),
        ErrorCode::UNKNOWN_BLOB
    );
    let blob = upload(&mut a, &bytes(10, 5)).await;
    assert_eq!(
        download(&mut a, blob, 0).await.unwrap_err(),
        ErrorCode::UNKNOWN_BLOB
    );
    relay.stop().await;
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn markers_are_stored_only_where_they_belong() {
    let relay = start_relay().await;
    let (_alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let (bob, b) = register(&relay, Transport::Ws, "bob").await;
    b.close().await;
    let tag: [u8; 8] = random();
    let msg_marker = format!("MESSAGE-MARKER-{}", u64::from_be_bytes(tag)).into_bytes();
    let blob_marker = format!("BLOB-MARKER-{}", u64::from_be_bytes(tag)).into_bytes();

    // A "ciphertext" that is a marker, waiting in bob's mailbox.
    let req = a.req();
    a.send(direct(
        req,
        MessageId::from_bytes(random()),
        bob.user,
        &[(bob.device, &msg_marker)],
    ))
    .await;
    assert!(matches!(a.expect().await, ServerFrame::Sent(_)));
    // A blob whose bytes hold another marker.
    let mut data = bytes(3000, 9);
    data.extend_from_slice(&blob_marker);
    let blob = upload(&mut a, &data).await;

    let root = relay.dir.path().to_owned();
    let mut all = Vec::new();
    files(&root, &mut all);
    let store = root.join("store");
    let blob_file = root.join("blobs").join(blob.to_hex());
    let mut msg_found = false;
    for f in &all {
        let content = std::fs::read(f).unwrap();
        if contains(&content, &msg_marker) {
            assert!(f.starts_with(&store), "message marker in {}", f.display());
            msg_found = true;
        }
        if contains(&content, &blob_marker) {
            assert_eq!(f, &blob_file, "blob marker in {}", f.display());
        }
    }
    assert!(msg_found, "the mailbox record holds the ciphertext");
    assert_eq!(std::fs::read(&blob_file).unwrap(), data);
    relay.stop().await;
}

#[tokio::test]
async fn quic_transfers_run_on_their_own_streams() {
    let relay = start_relay().await;
    let (_alice, mut a) = register(&relay, Transport::Quic, "alice").await;
    let data = bytes(MAX_BLOB_CHUNK + 999, 11);

    // Upload on a stream of its own.
    let mut t = a.open_transfer().await;
    t.send(ClientFrame::BlobUploadStart(BlobUploadStart {
        req: RequestId(1),
        size: data.len() as u64,
    }))
    .await;
    let blob = match t.recv().await.unwrap() {
        ServerFrame::BlobUploadReady(r) => r.blob,
        f => panic!("{f:?}"),
    };
    for (i, part) in data.chunks(MAX_BLOB_CHUNK).enumerate() {
        t.send(ClientFrame::BlobChunk(BlobChunk {
            blob,
            offset: (i * MAX_BLOB_CHUNK) as u64,
            data: BoundedBytes::new(part.to_vec()).unwrap(),
        }))
        .await;
    }
    t.send(ClientFrame::BlobUploadFinish(BlobUploadFinish {
        req: RequestId(2),
        blob,
        digest: digest(&data),
    }))
    .await;
    assert!(matches!(t.recv().await, Some(ServerFrame::BlobStored(_))));
    // The relay finishes the stream after the transfer.
    assert!(t.recv().await.is_none());

    // Download on another stream.
    let mut t = a.open_transfer().await;
    t.send(ClientFrame::BlobDownload(BlobDownload {
        req: RequestId(3),
        blob,
        offset: 0,
    }))
    .await;
    let mut got = Vec::new();
    loop {
        match t.recv().await.unwrap() {
            ServerFrame::BlobChunk(c) => got.extend_from_slice(c.data.as_slice()),
            ServerFrame::BlobEnd(e) => {
                assert_eq!(e.digest, digest(&data));
                break;
            }
            f => panic!("{f:?}"),
        }
    }
    assert_eq!(got, data);
    assert!(t.recv().await.is_none());

    // A non-blob frame on a transfer stream is refused; the connection lives on.
    let mut t = a.open_transfer().await;
    t.send(ClientFrame::Ping(spider_protocol::message::Ping {
        nonce: 1,
    }))
    .await;
    assert_eq!(err(t.recv().await.unwrap()).1, ErrorCode::UNEXPECTED_FRAME);
    assert_eq!(download(&mut a, blob, 0).await.unwrap().0, data);
    relay.stop().await;
}
