//! The attachment commands of [`Engine`] and [`Client`].

use std::path::PathBuf;

use spider_protocol::ids::{MessageId, RoomId, Timestamp, UserId};

use super::transfers::Request;
use super::{Attachment, AttachmentError, FileTarget, OutgoingFile};
use crate::client::{Client, Command, DriverError};
use crate::content::{Body, Content, Header};
use crate::engine::{ClientError, Engine, Recipient};
use crate::profile::Target;
use crate::store::ProfileStore;

impl<S: ProfileStore> Engine<S> {
    /// Puts the message that carries an uploaded attachment into the outbox,
    /// under `id` (chosen at random by the caller before the upload, so that
    /// the application can show the message while the file uploads), to an
    /// account and our own other devices, or to a room. It then goes out
    /// like a text: [`crate::engine::Event::Sent`] when the relay has it.
    ///
    /// [`Client::send_file`] uploads the file and then calls this; a bot that
    /// drives the engine itself uploads the blob (docs/protocol.md §5.7) and
    /// calls this with the pointer.
    ///
    /// # Errors
    /// [`ClientError::UnknownRoom`] for a room we are not in, profile
    /// failure, or a name or media type over the content limits.
    pub fn send_attachment(
        &mut self,
        id: MessageId,
        target: FileTarget,
        attachment: Attachment,
        now: u64,
    ) -> Result<MessageId, ClientError> {
        let body = attachment.into_body();
        match target {
            FileTarget::Direct(to) => {
                let target = match to {
                    Recipient::User(u) => Target::User(u),
                    Recipient::Name(n) => match self.profile().contact_by_name(&n)? {
                        Some(c) => Target::User(c.user),
                        None => Target::Name(n),
                    },
                };
                let to_user = match &target {
                    Target::User(u) => Some(*u),
                    _ => None,
                };
                self.submit_content(target, content(id, None, to_user, body, now), true, now)
            }
            FileTarget::Room(room) => {
                if self.profile().room(&room)?.is_none_or(|r| !r.joined) {
                    return Err(ClientError::UnknownRoom);
                }
                let c = content(id, Some(room), None, body, now);
                self.submit_content(Target::Room(room), c, true, now)
            }
        }
    }
}

fn content(
    id: MessageId,
    room: Option<RoomId>,
    to: Option<UserId>,
    body: Body,
    now: u64,
) -> Content {
    Content {
        header: Header {
            message_id: id,
            sent_at: Timestamp(now),
            room,
            to,
        },
        body,
    }
}

fn stopped(_: DriverError) -> AttachmentError {
    AttachmentError::Stopped
}

impl Client {
    /// Sends the file at `path` to an account (and our own other devices),
    /// under its own name and a media type guessed from its extension. See
    /// [`Self::send_file_to`].
    ///
    /// # Errors
    /// See [`Self::send_file_to`].
    pub async fn send_file(
        &self,
        to: impl Into<Recipient>,
        path: impl Into<PathBuf>,
    ) -> Result<MessageId, AttachmentError> {
        self.send_file_to(FileTarget::Direct(to.into()), OutgoingFile::from_path(path))
            .await
    }

    /// Sends the file at `path` to a room we are in. See
    /// [`Self::send_file_to`].
    ///
    /// # Errors
    /// See [`Self::send_file_to`].
    pub async fn send_room_file(
        &self,
        room: RoomId,
        path: impl Into<PathBuf>,
    ) -> Result<MessageId, AttachmentError> {
        self.send_file_to(FileTarget::Room(room), OutgoingFile::from_path(path))
            .await
    }

    /// Sends a file: returns the id of the message that will carry it as
    /// soon as the file is checked and queued. The upload starts when the
    /// client is connected, with [`super::AttachmentEvent::Progress`]
    /// events; then the message goes out like a text and
    /// [`crate::engine::Event::Sent`] follows, or
    /// [`super::AttachmentEvent::Failed`] says why not.
    ///
    /// # Errors
    /// [`AttachmentError::File`] if the file cannot be read or is not a
    /// regular file, [`AttachmentError::UnknownRoom`],
    /// [`AttachmentError::Stopped`].
    pub async fn send_file_to(
        &self,
        target: FileTarget,
        file: OutgoingFile,
    ) -> Result<MessageId, AttachmentError> {
        let file = file.checked();
        let meta = std::fs::metadata(&file.path)
            .map_err(|e| AttachmentError::File(e.kind().to_string()))?;
        if !meta.is_file() {
            return Err(AttachmentError::File("not a regular file".into()));
        }
        let mut b = [0u8; 16];
        crate::profile::os_rng().fill_bytes(&mut b);
        let id = MessageId::from_bytes(b);
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send_command(Command::Attachment(Request::Send {
            id,
            target,
            file,
            reply,
        }))
        .await
        .map_err(stopped)?;
        rx.await.map_err(|_| AttachmentError::Stopped)??;
        Ok(id)
    }

    /// Fetches the attachment of message `id` into `dir` (see
    /// [`super::files_dir`] for a profile's) once connected: progress
    /// events, then [`super::AttachmentEvent::Saved`] with the path (at
    /// once if it was saved before), or [`super::AttachmentEvent::Failed`].
    /// Asking again for a download in progress changes nothing.
    ///
    /// # Errors
    /// [`DriverError::Stopped`].
    pub async fn download(
        &self,
        id: MessageId,
        attachment: Attachment,
        dir: impl Into<PathBuf>,
    ) -> Result<(), DriverError> {
        self.send_command(Command::Attachment(Request::Download {
            id,
            attachment,
            dir: dir.into(),
        }))
        .await
    }
}
