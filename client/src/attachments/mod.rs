//! Attachments: files sent as encrypted blobs, with a pointer to them inside
//! an ordinary end-to-end encrypted message (design.md, "Attachment").
//!
//! # Sending
//!
//! [`Client::send_file`] (or [`Client::send_room_file`]) checks the file and
//! returns the message id at once; the driver then, once connected:
//!
//! 1. reads the file from disk one [`CHUNK_SIZE`] piece at a time and
//!    encrypts it with spider-crypto's STREAM under a fresh
//!    [`spider_crypto::attachment::AttachmentKey`] (two chunks in memory at
//!    most, whatever the file's size; no temporary file);
//! 2. uploads the ciphertext (docs/protocol.md §5.7): `BlobUploadStart` with
//!    the ciphertext size, `BlobChunk`s of at most `MAX_BLOB_CHUNK` bytes as
//!    they are encrypted, `BlobUploadFinish` with the SHA-256 → `BlobStored`.
//!    On QUIC the transfer runs on its own bidirectional stream; on WebSocket
//!    its frames share the connection with everything else;
//! 3. puts a message whose content is [`Body::Attachment`] (blob id, key,
//!    digest, name, media type, size) into the outbox under the id returned in
//!    step 0, where it goes out like a text: [`Event::Sent`] when the relay
//!    has it.
//!
//! An upload cut off by a lost connection starts again, from the first byte
//! and under a new key, on the next connection (a key never encrypts two
//! versions of a file). Uploads are not kept across restarts of the
//! application: one that has not reached `BlobStored` when the client stops
//! is not sent. A file message takes its place in the outbox when its upload
//! is done, so texts sent while a large file uploads may arrive before it.
//!
//! # Receiving
//!
//! A file arrives as [`Event::MessageReceived`] with a [`Body::Attachment`].
//! [`Client::download`] fetches the blob and decrypts it as it comes, into
//! `DIR/.<message id>.part`, checking every chunk's tag, then the whole
//! blob's SHA-256 and the size against the pointer; only then is the file
//! renamed to its final name, [`saved_path`]. On any failure the partial
//! file is deleted: a file under its final name is always complete and
//! authentic. A download cut off by a lost connection starts again from the
//! beginning on the next one; a file already saved is not fetched again.
//!
//! # Events
//!
//! [`Event::Attachment`] carries [`AttachmentEvent`]s: progress in plaintext
//! bytes for both directions (one per percent at most, the first at 0 and
//! the last at the whole size), [`AttachmentEvent::Saved`] when a download is complete,
//! and [`AttachmentEvent::Failed`] with an [`AttachmentError`] that says what
//! went wrong (quota full, file too large, blob expired, digest mismatch...).
//!
//! [`Client::send_file`]: crate::client::Client::send_file
//! [`Client::send_room_file`]: crate::client::Client::send_room_file
//! [`Client::download`]: crate::client::Client::download
//! [`Event::Sent`]: crate::engine::Event::Sent
//! [`Event::MessageReceived`]: crate::engine::Event::MessageReceived
//! [`Event::Attachment`]: crate::engine::Event::Attachment

use std::path::{Path, PathBuf};

use spider_crypto::attachment::{AttachmentPointer, CHUNK_SIZE, TAG_LEN};
use spider_protocol::error::ErrorCode;
use spider_protocol::ids::{MessageId, RoomId};

use crate::content::{Body, MAX_FILE_NAME_LEN, MAX_MEDIA_TYPE_LEN};
use crate::engine::Recipient;

mod api;
mod download;
mod transfers;
mod upload;

pub(crate) use transfers::{Request, Transfers, Work};

/// The directory, inside a profile directory, where downloads are saved.
pub const FILES_DIR: &str = "files";

/// Most transfers (uploads and downloads together) running at once.
///
/// Reason: the relay allows four bidirectional QUIC streams per connection
/// by default, one of which is the control stream; two transfers leave one
/// spare, and two already fill a link that one transfer cannot.
pub const MAX_CONCURRENT_TRANSFERS: usize = 2;

/// Attempts of one transfer whose own stream failed while the connection
/// stayed up, before it is given up as [`AttachmentError::Transport`]. A
/// lost connection does not count: the transfer waits for the next one.
pub const MAX_TRANSFER_ATTEMPTS: u32 = 5;

/// Longest file name kept when saving a download (bytes of UTF-8), before
/// the message id is put in front: short enough for any file system's
/// 255-byte name limit.
pub const MAX_SAVED_NAME_LEN: usize = 120;

/// Where an attachment goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileTarget {
    /// An account (by id or name) and our own other devices.
    Direct(Recipient),
    /// A room we are in.
    Room(RoomId),
}

/// Upload or download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sending a file.
    Upload,
    /// Fetching one.
    Download,
}

/// What happened to an attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachmentEvent {
    /// A transfer moved on.
    Progress {
        /// The message that carries the file.
        id: MessageId,
        /// Which way.
        direction: Direction,
        /// Plaintext bytes moved so far.
        done: u64,
        /// The file's size.
        total: u64,
    },
    /// A download is complete, checked and saved.
    Saved {
        /// The message that carried it.
        id: MessageId,
        /// Where the file is.
        path: PathBuf,
    },
    /// A transfer failed for good; for an upload, nothing was sent.
    Failed {
        /// The message.
        id: MessageId,
        /// Which way.
        direction: Direction,
        /// Why.
        error: AttachmentError,
    },
}

/// Why an attachment could not be sent or saved. No variant carries a file
/// name, a path or content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachmentError {
    /// The file to send could not be read (missing, not a regular file, no
    /// permission).
    #[error("cannot read the file: {0}")]
    File(String),
    /// The file changed size while it was being sent.
    #[error("the file changed while it was being sent")]
    FileChanged,
    /// The file is larger than the relay accepts (`BLOB_TOO_LARGE`).
    #[error("the file is larger than the relay accepts")]
    TooLarge,
    /// The account's attachment storage on the relay is full
    /// (`BLOB_QUOTA_EXCEEDED`).
    #[error("your attachment storage on the relay is full")]
    QuotaExceeded,
    /// The relay no longer has the blob (`UNKNOWN_BLOB`): it expired, or it
    /// was never stored.
    #[error("the attachment is no longer on the relay (expired)")]
    Expired,
    /// The blob's SHA-256 is not the one in the message: corrupted or
    /// replaced on the way. Nothing was saved.
    #[error("the attachment does not match its digest: corrupted or tampered with; nothing saved")]
    DigestMismatch,
    /// The relay sent less than the whole blob. Nothing was saved.
    #[error("the relay sent an incomplete attachment; nothing saved")]
    Incomplete,
    /// A chunk failed authentication: a wrong key, or bytes changed. Nothing
    /// was saved.
    #[error(
        "the attachment does not decrypt with its key: corrupted or tampered with; nothing saved"
    )]
    Undecryptable,
    /// The message's pointer cannot name a blob on this relay.
    #[error("the message's attachment pointer is not valid")]
    BadPointer,
    /// The room is not one we are in.
    #[error("unknown room")]
    UnknownRoom,
    /// The relay refused the transfer for another reason.
    #[error("the relay refused the transfer: {code}{}", suffix(.text))]
    Relay {
        /// Its code.
        code: ErrorCode,
        /// Its explanation (may be empty).
        text: String,
    },
    /// The relay broke the blob protocol (a chunk out of place, more bytes
    /// than announced).
    #[error("the relay broke the blob protocol: {0}")]
    Protocol(&'static str),
    /// Writing the download failed.
    #[error("cannot write the file: {0}")]
    Io(String),
    /// The transfer's stream failed [`MAX_TRANSFER_ATTEMPTS`] times.
    #[error("the transfer kept failing: {0}")]
    Transport(String),
    /// The file was uploaded but its message could not be queued.
    #[error("the file message could not be sent: {0}")]
    Message(String),
    /// The client has stopped.
    #[error("client stopped")]
    Stopped,
}

fn suffix(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// What a file message carries: what [`Body::Attachment`] says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Blob id, key, digest and size.
    pub pointer: AttachmentPointer,
    /// The name the sender gave (untrusted: see [`saved_path`]).
    pub file_name: String,
    /// The media type the sender gave (untrusted).
    pub media_type: String,
    /// The plaintext size.
    pub size: u64,
}

impl Attachment {
    /// The attachment of a message body, if it has one.
    #[must_use]
    pub fn from_body(body: &Body) -> Option<Self> {
        match body {
            Body::Attachment {
                pointer,
                file_name,
                media_type,
                size,
            } => Some(Self {
                pointer: pointer.clone(),
                file_name: file_name.clone(),
                media_type: media_type.clone(),
                size: *size,
            }),
            _ => None,
        }
    }

    /// The message body that carries it.
    #[must_use]
    pub fn into_body(self) -> Body {
        Body::Attachment {
            pointer: self.pointer,
            file_name: self.file_name,
            media_type: self.media_type,
            size: self.size,
        }
    }
}

/// Where downloads of the profile in `profile_dir` are saved:
/// `profile_dir/files`.
#[must_use]
pub fn files_dir(profile_dir: &Path) -> PathBuf {
    profile_dir.join(FILES_DIR)
}

/// The final path of message `id`'s attachment named `file_name` when saved
/// in `dir`: `dir/<message id hex>-<safe name>`. The id keeps two files of the
/// same name apart and makes a second download of one message find the
/// first; see [`safe_file_name`] for what is kept of the name.
#[must_use]
pub fn saved_path(dir: &Path, id: MessageId, file_name: &str) -> PathBuf {
    dir.join(format!("{}-{}", id.to_hex(), safe_file_name(file_name)))
}

/// The partial file a download writes before it is checked.
fn part_path(dir: &Path, id: MessageId) -> PathBuf {
    dir.join(format!(".{}.part", id.to_hex()))
}

/// A name from another device made safe to use in a path: only its last
/// component (after any `/` or `\`), control characters and characters
/// Windows refuses (`<>:"|?*`) replaced by `_`, leading dots and spaces
/// removed (no hidden files, no `..`), at most [`MAX_SAVED_NAME_LEN`] bytes
/// (keeping the extension when it is short), and `file` if nothing is left.
#[must_use]
pub fn safe_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches(['.', ' ']).trim_end();
    if trimmed.is_empty() {
        return "file".to_owned();
    }
    if trimmed.len() <= MAX_SAVED_NAME_LEN {
        return trimmed.to_owned();
    }
    // Too long: keep a short extension, cut the stem at a char boundary.
    let ext = trimmed
        .rsplit_once('.')
        .map(|(_, e)| e)
        .filter(|e| !e.is_empty() && e.len() <= 16)
        .map_or(String::new(), |e| format!(".{e}"));
    let room = MAX_SAVED_NAME_LEN - ext.len();
    let mut cut = room;
    while !trimmed.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", &trimmed[..cut])
}

/// A media type for a file, from its extension (`application/octet-stream`
/// when unknown). Only a label for the recipient: nothing trusts it.
#[must_use]
pub fn media_type_for(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "mkv" => "video/x-matroska",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" => "audio/ogg",
        "opus" => "audio/opus",
        "wav" => "audio/wav",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "txt" | "md" | "log" => "text/plain",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// The name a file is sent under: its last path component, at most
/// [`MAX_FILE_NAME_LEN`] bytes.
fn outgoing_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
    truncate(&name, MAX_FILE_NAME_LEN)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_owned()
}

/// A file to send, with the name and media type it goes out under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingFile {
    /// Where it is.
    pub path: PathBuf,
    /// The name the recipient sees (at most [`MAX_FILE_NAME_LEN`] bytes).
    pub name: String,
    /// Its media type (at most [`MAX_MEDIA_TYPE_LEN`] bytes).
    pub media_type: String,
}

impl OutgoingFile {
    /// The file at `path`, under its own name, with a media type from its
    /// extension.
    #[must_use]
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self {
            name: outgoing_name(&path),
            media_type: media_type_for(&path).to_owned(),
            path,
        }
    }

    fn checked(mut self) -> Self {
        self.name = truncate(&self.name, MAX_FILE_NAME_LEN);
        self.media_type = truncate(&self.media_type, MAX_MEDIA_TYPE_LEN);
        self
    }
}

/// Number of STREAM chunks of a `size`-byte file as [`upload`] cuts it: at
/// least one (an empty file is one empty final chunk), a full final chunk
/// when the size is a multiple of [`CHUNK_SIZE`].
fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE as u64).max(1)
}

/// Ciphertext bytes of a `size`-byte file: one tag per chunk.
#[must_use]
pub fn blob_len(size: u64) -> u64 {
    size.saturating_add(chunk_count(size).saturating_mul(TAG_LEN as u64))
}

/// `part` of `whole` scaled to `of` (progress in plaintext bytes from
/// ciphertext bytes).
fn scale(part: u64, whole: u64, of: u64) -> u64 {
    if whole == 0 {
        return of;
    }
    let v = u128::from(part.min(whole)) * u128::from(of) / u128::from(whole);
    u64::try_from(v).unwrap_or(of)
}

/// How one attempt at a transfer ended badly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// For good: report it.
    Fatal(AttachmentError),
    /// The stream or connection failed: try again.
    Retry(String),
    /// The relay asked us to wait this many milliseconds, then try again.
    RetryAfter(u64),
}

impl From<AttachmentError> for Failure {
    fn from(e: AttachmentError) -> Self {
        Self::Fatal(e)
    }
}

/// What a relay `Error` frame means for a transfer going `direction`.
pub(crate) fn refusal(e: &spider_protocol::message::ErrorFrame, direction: Direction) -> Failure {
    use spider_protocol::error::ErrorDetail;
    let text = e.message.as_str().to_owned();
    match e.code {
        ErrorCode::RATE_LIMITED => Failure::RetryAfter(match e.detail {
            ErrorDetail::RetryAfter { ms } => u64::from(ms),
            _ => 1000,
        }),
        ErrorCode::DRAINING | ErrorCode::INTERNAL => Failure::Retry(text),
        ErrorCode::BLOB_TOO_LARGE => Failure::Fatal(AttachmentError::TooLarge),
        ErrorCode::BLOB_QUOTA_EXCEEDED => Failure::Fatal(AttachmentError::QuotaExceeded),
        ErrorCode::UNKNOWN_BLOB if direction == Direction::Download => {
            Failure::Fatal(AttachmentError::Expired)
        }
        code => Failure::Fatal(AttachmentError::Relay { code, text }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_other_devices_cannot_leave_the_directory_or_hide() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(safe_file_name(".."), "file");
        assert_eq!(safe_file_name(""), "file");
        assert_eq!(safe_file_name(".bashrc"), "bashrc");
        assert_eq!(safe_file_name("a\u{0}b\nc?.png"), "a_b_c_.png");
        assert_eq!(safe_file_name("photo 1.JPG"), "photo 1.JPG");
        let id = MessageId::from_bytes([0xab; 16]);
        let p = saved_path(Path::new("/p/files"), id, "/x/../y.txt");
        assert_eq!(
            p,
            Path::new("/p/files").join(format!("{}-y.txt", id.to_hex()))
        );
    }

    #[test]
    fn a_long_name_is_cut_at_its_limit_and_keeps_its_extension() {
        let long = format!("{}.tar.gz", "é".repeat(200));
        let safe = safe_file_name(&long);
        assert!(safe.len() <= MAX_SAVED_NAME_LEN);
        assert!(safe.ends_with(".gz"));
        let exact = "a".repeat(MAX_SAVED_NAME_LEN);
        assert_eq!(safe_file_name(&exact), exact);
        let over = "a".repeat(MAX_SAVED_NAME_LEN + 1);
        assert_eq!(safe_file_name(&over).len(), MAX_SAVED_NAME_LEN);
    }

    #[test]
    fn outgoing_names_and_types_fit_the_content_limits() {
        let f = OutgoingFile::from_path(format!("/tmp/{}.PNG", "x".repeat(400)));
        assert_eq!(f.name.len(), MAX_FILE_NAME_LEN);
        assert_eq!(f.media_type, "image/png");
        assert_eq!(
            OutgoingFile::from_path("notes").media_type,
            "application/octet-stream"
        );
    }

    #[test]
    fn blob_length_has_one_tag_per_chunk_and_at_least_one_chunk() {
        let c = CHUNK_SIZE as u64;
        let t = TAG_LEN as u64;
        assert_eq!(blob_len(0), t);
        assert_eq!(blob_len(1), 1 + t);
        assert_eq!(blob_len(c), c + t);
        assert_eq!(blob_len(c + 1), c + 1 + 2 * t);
        assert_eq!(blob_len(3 * c), 3 * c + 3 * t);
    }
}
