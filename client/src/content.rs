//! The plaintext inside every encrypted payload: what a bot in another
//! language must produce and parse.
//!
//! # Byte layout
//!
//! Postcard (varints are LEB128, `Option` is `0x00` or `0x01` then the
//! value, an enum is its variant index as a varint then its fields, a string
//! or byte string is a varint length then the bytes):
//!
//! | field                | encoding                                            |
//! |----------------------|-----------------------------------------------------|
//! | version              | 1 byte, [`CONTENT_VERSION`] = `0x01`                |
//! | header.message_id    | 16 raw bytes; equals the envelope's message id      |
//! | header.sent_at       | varint u64, sender's clock, ms since the Unix epoch |
//! | header.room          | `0x00`, or `0x01` then 16 raw bytes (room id)       |
//! | header.to            | `0x00`, or `0x01` then 16 raw bytes: for 1:1 messages the account addressed, so that the sender's other devices (which get a copy) know the conversation |
//! | body                 | varint variant index, then the variant's fields     |
//!
//! | index | variant                 | fields, in order                                        |
//! |------:|-------------------------|---------------------------------------------------------|
//! | 0     | `Text`                  | body: string ≤ [`MAX_TEXT_LEN`] bytes                   |
//! | 1     | `Attachment`            | pointer: bytes ≤ [`MAX_POINTER_LEN`] (spider-crypto `AttachmentPointer::to_bytes`), file name: string ≤ [`MAX_FILE_NAME_LEN`], media type: string ≤ [`MAX_MEDIA_TYPE_LEN`], size: varint u64 |
//! | 2     | `Receipt`               | kind: varint (0 delivered, 1 read), ids: varint count ≤ [`MAX_RECEIPT_IDS`], then 16 bytes each |
//! | 3     | `Typing`                | started: 1 byte, `0x00` or `0x01`                       |
//! | 4     | `SenderKeyDistribution` | room: 16 raw bytes, bytes: bytes ≤ [`MAX_DISTRIBUTION_LEN`] (spider-crypto distribution message) |
//! | 5     | `ProfileKey`            | key: 32 raw bytes                                       |
//!
//! Nothing may follow the body. A decoder refuses an unknown version, an
//! unknown variant, an over-long field and trailing bytes, and never panics
//! (property-tested on arbitrary bytes).
//!
//! Example: text "hi", no room, message id `11…11`, sent at 1000 ms:
//! `01 11×16 e8 07 00 00 00 02 68 69`.

use serde::{Deserialize, Serialize};
use spider_crypto::attachment::AttachmentPointer;
use spider_protocol::bytes::{BoundedBytes, BoundedString, BoundedVec, FixedBytes};
use spider_protocol::ids::{MessageId, RoomId, Timestamp, UserId};
use zeroize::Zeroizing;

/// Version byte of the content format.
pub const CONTENT_VERSION: u8 = 1;
/// Longest text body in bytes: 16 KiB leaves room for headers and the
/// ratchet's overhead under the protocol's 32 KiB ciphertext limit.
pub const MAX_TEXT_LEN: usize = 16 * 1024;
/// Longest encoded attachment pointer (spider-crypto's own bound is 140).
pub const MAX_POINTER_LEN: usize = 256;
/// Longest attachment file name (a common file-system limit).
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Longest media type (RFC 6838 §4.2: 127 characters per part).
pub const MAX_MEDIA_TYPE_LEN: usize = 255;
/// Most message ids in one receipt: a screenful of messages read at once.
pub const MAX_RECEIPT_IDS: usize = 100;
/// Longest Sender Key distribution message (spider-crypto's is 90 bytes).
pub const MAX_DISTRIBUTION_LEN: usize = 256;
/// Largest encoded content accepted by [`Content::decode`]: the protocol's
/// largest ciphertext.
pub const MAX_CONTENT_LEN: usize = spider_protocol::message::MAX_CIPHERTEXT_LEN;

/// Decoding content failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    /// Empty input.
    #[error("empty content")]
    Empty,
    /// Too long.
    #[error("content too long ({0} bytes)")]
    TooLong(usize),
    /// An unknown version.
    #[error("unsupported content version {0}")]
    UnsupportedVersion(u8),
    /// Not a valid encoding (unknown variant, over-long field, trailing bytes).
    #[error("malformed content")]
    Malformed,
    /// An attachment pointer that spider-crypto refuses.
    #[error("malformed attachment pointer")]
    BadPointer,
    /// A field over its limit, on encoding.
    #[error("a field is over its length limit")]
    FieldTooLong,
}

/// Fields common to every content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The message id (the envelope's, authenticated here).
    pub message_id: MessageId,
    /// The sender's clock.
    pub sent_at: Timestamp,
    /// The room, or `None` for a 1:1 message.
    pub room: Option<RoomId>,
    /// For a 1:1 message, the account it is addressed to (the sender's own
    /// other devices get a copy and learn the conversation from it).
    pub to: Option<UserId>,
}

/// Which receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptKind {
    /// The message reached a device.
    Delivered,
    /// The user saw it.
    Read,
}

/// What a content says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    /// A text message.
    Text {
        /// The text.
        body: String,
    },
    /// A file, uploaded encrypted.
    Attachment {
        /// Where it is and how to decrypt it.
        pointer: AttachmentPointer,
        /// Its name.
        file_name: String,
        /// Its media type.
        media_type: String,
        /// Plaintext size in bytes.
        size: u64,
    },
    /// Receipts for messages.
    Receipt {
        /// Which.
        kind: ReceiptKind,
        /// For which messages.
        ids: Vec<MessageId>,
    },
    /// Typing notice.
    Typing {
        /// Started (true) or stopped.
        started: bool,
    },
    /// A Sender Key for a room. Accepted only from a 1:1 session.
    SenderKeyDistribution {
        /// The room.
        room: RoomId,
        /// spider-crypto's distribution message.
        bytes: Vec<u8>,
    },
    /// The sender's profile key.
    ProfileKey {
        /// The key.
        key: [u8; 32],
    },
}

/// A decoded content: header and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    /// Common fields.
    pub header: Header,
    /// What it says.
    pub body: Body,
}

#[derive(Serialize, Deserialize)]
enum WireBody {
    Text {
        body: BoundedString<MAX_TEXT_LEN>,
    },
    Attachment {
        pointer: BoundedBytes<MAX_POINTER_LEN>,
        file_name: BoundedString<MAX_FILE_NAME_LEN>,
        media_type: BoundedString<MAX_MEDIA_TYPE_LEN>,
        size: u64,
    },
    Receipt {
        kind: ReceiptKind,
        ids: BoundedVec<MessageId, MAX_RECEIPT_IDS>,
    },
    Typing {
        started: bool,
    },
    SenderKeyDistribution {
        room: RoomId,
        bytes: BoundedBytes<MAX_DISTRIBUTION_LEN>,
    },
    ProfileKey {
        key: FixedBytes<32>,
    },
}

#[derive(Serialize, Deserialize)]
struct Wire {
    header: Header,
    body: WireBody,
}

impl Content {
    /// A text message.
    #[must_use]
    pub fn text(
        message_id: MessageId,
        sent_at: Timestamp,
        room: Option<RoomId>,
        body: &str,
    ) -> Self {
        Self {
            header: Header {
                message_id,
                sent_at,
                room,
                to: None,
            },
            body: Body::Text {
                body: body.to_owned(),
            },
        }
    }

    /// Encodes the content (layout in the module doc). The buffer is wiped
    /// on drop.
    ///
    /// # Errors
    /// [`ContentError::FieldTooLong`] if a field is over its limit.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, ContentError> {
        let too_long = |_| ContentError::FieldTooLong;
        let body = match &self.body {
            Body::Text { body } => WireBody::Text {
                body: BoundedString::new(body.clone()).map_err(too_long)?,
            },
            Body::Attachment {
                pointer,
                file_name,
                media_type,
                size,
            } => WireBody::Attachment {
                pointer: BoundedBytes::new(pointer.to_bytes().to_vec()).map_err(too_long)?,
                file_name: BoundedString::new(file_name.clone()).map_err(too_long)?,
                media_type: BoundedString::new(media_type.clone()).map_err(too_long)?,
                size: *size,
            },
            Body::Receipt { kind, ids } => WireBody::Receipt {
                kind: *kind,
                ids: BoundedVec::new(ids.clone()).map_err(too_long)?,
            },
            Body::Typing { started } => WireBody::Typing { started: *started },
            Body::SenderKeyDistribution { room, bytes } => WireBody::SenderKeyDistribution {
                room: *room,
                bytes: BoundedBytes::new(bytes.clone()).map_err(too_long)?,
            },
            Body::ProfileKey { key } => WireBody::ProfileKey {
                key: FixedBytes(*key),
            },
        };
        let wire = Wire {
            header: self.header.clone(),
            body,
        };
        let mut out = Zeroizing::new(vec![CONTENT_VERSION]);
        let enc =
            Zeroizing::new(postcard::to_allocvec(&wire).map_err(|_| ContentError::Malformed)?);
        out.extend_from_slice(&enc);
        if out.len() > MAX_CONTENT_LEN {
            return Err(ContentError::FieldTooLong);
        }
        Ok(out)
    }

    /// Decodes content from hostile bytes.
    ///
    /// # Errors
    /// [`ContentError`]; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, ContentError> {
        if bytes.len() > MAX_CONTENT_LEN {
            return Err(ContentError::TooLong(bytes.len()));
        }
        let (&version, rest) = bytes.split_first().ok_or(ContentError::Empty)?;
        if version != CONTENT_VERSION {
            return Err(ContentError::UnsupportedVersion(version));
        }
        let wire: Wire = match postcard::take_from_bytes(rest) {
            Ok((w, [])) => w,
            _ => return Err(ContentError::Malformed),
        };
        // One encoding per content, as for frames: postcard alone accepts
        // overlong varints.
        if !spider_protocol::codec::is_canonical(&wire, rest) {
            return Err(ContentError::Malformed);
        }
        let body = match wire.body {
            WireBody::Text { body } => Body::Text {
                body: body.as_str().to_owned(),
            },
            WireBody::Attachment {
                pointer,
                file_name,
                media_type,
                size,
            } => Body::Attachment {
                pointer: AttachmentPointer::from_bytes(pointer.as_slice())
                    .map_err(|_| ContentError::BadPointer)?,
                file_name: file_name.as_str().to_owned(),
                media_type: media_type.as_str().to_owned(),
                size,
            },
            WireBody::Receipt { kind, ids } => Body::Receipt {
                kind,
                ids: ids.into_vec(),
            },
            WireBody::Typing { started } => Body::Typing { started },
            WireBody::SenderKeyDistribution { room, bytes } => Body::SenderKeyDistribution {
                room,
                bytes: bytes.into_vec(),
            },
            WireBody::ProfileKey { key } => Body::ProfileKey { key: key.0 },
        };
        Ok(Self {
            header: wire.header,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use spider_crypto::attachment::{AttachmentKey, BlobId, SealedAttachment};

    fn id(b: u8) -> MessageId {
        MessageId::from_bytes([b; 16])
    }

    #[test]
    fn text_layout_matches_the_documented_example() {
        let c = Content::text(id(0x11), Timestamp(1000), None, "hi");
        let mut expected = vec![1u8];
        expected.extend_from_slice(&[0x11; 16]);
        expected.extend_from_slice(&[0xe8, 0x07, 0x00, 0x00, 0x00, 0x02, b'h', b'i']);
        assert_eq!(&c.encode().unwrap()[..], &expected[..]);
        assert_eq!(Content::decode(&expected).unwrap(), c);
    }

    #[test]
    fn every_variant_round_trips() {
        let pointer = AttachmentPointer::new(
            BlobId::new(vec![9; 32]).unwrap(),
            SealedAttachment {
                key: AttachmentKey::from_bytes([3; 32]),
                digest: [4; 32],
                size: 5,
            },
        );
        let bodies = vec![
            Body::Text {
                body: "héllo".into(),
            },
            Body::Attachment {
                pointer,
                file_name: "a.png".into(),
                media_type: "image/png".into(),
                size: 5,
            },
            Body::Receipt {
                kind: ReceiptKind::Read,
                ids: vec![id(1), id(2)],
            },
            Body::Typing { started: true },
            Body::SenderKeyDistribution {
                room: RoomId::from_bytes([7; 16]),
                bytes: vec![1; 90],
            },
            Body::ProfileKey { key: [8; 32] },
        ];
        for body in bodies {
            let c = Content {
                header: Header {
                    message_id: id(5),
                    sent_at: Timestamp(42),
                    room: Some(RoomId::from_bytes([6; 16])),
                    to: Some(UserId::from_bytes([2; 16])),
                },
                body,
            };
            assert_eq!(Content::decode(&c.encode().unwrap()).unwrap(), c);
        }
    }

    #[test]
    fn text_at_the_limit_encodes_and_one_more_byte_does_not() {
        let ok = Content::text(id(1), Timestamp(0), None, &"a".repeat(MAX_TEXT_LEN));
        assert!(Content::decode(&ok.encode().unwrap()).is_ok());
        let over = Content::text(id(1), Timestamp(0), None, &"a".repeat(MAX_TEXT_LEN + 1));
        assert_eq!(over.encode().unwrap_err(), ContentError::FieldTooLong);
    }

    #[test]
    fn wrong_version_trailing_bytes_and_unknown_variant_are_refused() {
        let mut enc = Content::text(id(1), Timestamp(0), None, "x")
            .encode()
            .unwrap()
            .to_vec();
        enc.push(0);
        assert_eq!(Content::decode(&enc), Err(ContentError::Malformed));
        enc.pop();
        enc[0] = 2;
        assert_eq!(
            Content::decode(&enc),
            Err(ContentError::UnsupportedVersion(2))
        );
        // Variant index 6 does not exist.
        let mut unknown = vec![1u8];
        unknown.extend_from_slice(&[0; 16]);
        unknown.extend_from_slice(&[0, 0, 0, 6]);
        assert_eq!(Content::decode(&unknown), Err(ContentError::Malformed));
        assert_eq!(Content::decode(&[]), Err(ContentError::Empty));
    }

    #[test]
    fn non_canonical_encoding_is_refused() {
        // The sent-at varint of a text message written with a needless
        // continuation byte decodes in postcard, but is not our encoding.
        let enc = Content::text(id(1), Timestamp(5), None, "x")
            .encode()
            .unwrap();
        assert_eq!(enc[17], 5, "sent_at follows version and message id");
        let mut long = enc[..17].to_vec();
        long.extend_from_slice(&[0x85, 0x00]);
        long.extend_from_slice(&enc[18..]);
        assert_eq!(Content::decode(&long), Err(ContentError::Malformed));
        assert!(Content::decode(&enc).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Content::decode(&bytes);
            let mut v = vec![CONTENT_VERSION];
            v.extend_from_slice(&bytes);
            let _ = Content::decode(&v);
        }

        #[test]
        fn text_round_trips(body in ".{0,200}", ms in any::<u64>(), m in any::<[u8; 16]>(), room in proptest::option::of(any::<[u8; 16]>())) {
            let c = Content::text(MessageId::from_bytes(m), Timestamp(ms), room.map(RoomId::from_bytes), &body);
            prop_assert_eq!(Content::decode(&c.encode().unwrap()).unwrap(), c);
        }
    }
}
