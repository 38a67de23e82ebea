//! Encoding and decoding frames. Sans-I/O: bytes in, frames out.
//!
//! Two framings carry the same frame bodies:
//!
//! | transport          | one frame on the wire                               |
//! |--------------------|-----------------------------------------------------|
//! | QUIC stream        | `u32` big-endian body length, then the body         |
//! | WebSocket (binary) | one binary message is one body, nothing around it   |
//!
//! A body is the postcard encoding of a [`ClientFrame`] or [`ServerFrame`];
//! its first byte is the frame's tag. Decoding checks, in this order and
//! before allocating anything for the frame: the length is not zero, not over
//! [`MAX_FRAME_LEN`], the tag is known, and the length is not over the tag's
//! own maximum. Then postcard decodes the body, whose every variable-length
//! field is bounded again by its type (see [`crate::bytes`]), and the body
//! must have no bytes left over. No input makes the decoder panic.

use core::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ErrorCode;
use crate::frame::{ClientFrame, ClientKind, MAX_FRAME_LEN, ServerFrame, ServerKind};

/// Bytes of the length prefix on QUIC streams.
pub const LEN_PREFIX: usize = 4;

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::frame::ClientFrame {}
    impl Sealed for crate::frame::ServerFrame {}
}

/// A frame type: [`ClientFrame`] or [`ServerFrame`].
pub trait Frame: sealed::Sealed + Serialize + DeserializeOwned {
    /// Name and maximum body length of the kind with this tag.
    fn kind_of_tag(tag: u8) -> Option<(&'static str, usize)>;
    /// Name and maximum body length of this frame's kind.
    fn kind_info(&self) -> (&'static str, usize);
}

impl Frame for ClientFrame {
    fn kind_of_tag(tag: u8) -> Option<(&'static str, usize)> {
        ClientKind::from_tag(tag).map(|k| (k.name(), k.max_len()))
    }
    fn kind_info(&self) -> (&'static str, usize) {
        let k = self.kind();
        (k.name(), k.max_len())
    }
}

impl Frame for ServerFrame {
    fn kind_of_tag(tag: u8) -> Option<(&'static str, usize)> {
        ServerKind::from_tag(tag).map(|k| (k.name(), k.max_len()))
    }
    fn kind_info(&self) -> (&'static str, usize) {
        let k = self.kind();
        (k.name(), k.max_len())
    }
}

/// Why bytes are not a frame. The connection that sent them should get an
/// error frame with [`DecodeError::code`] and be closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A frame body of zero bytes.
    #[error("empty frame")]
    Empty,
    /// A declared length over the largest frame of any kind.
    #[error("frame length {len} is over the maximum of {max}")]
    TooLong {
        /// Declared length.
        len: usize,
        /// [`MAX_FRAME_LEN`].
        max: usize,
    },
    /// A tag that names no frame kind in this direction and version.
    #[error("unknown frame tag {tag}")]
    UnknownTag {
        /// The first byte of the body.
        tag: u8,
    },
    /// A declared length over this kind's maximum.
    #[error("{kind} frame of {len} bytes is over its maximum of {max}")]
    TooLongForKind {
        /// The frame kind.
        kind: &'static str,
        /// Declared length.
        len: usize,
        /// The kind's maximum.
        max: usize,
    },
    /// The body does not decode as its kind (a field is out of range, too
    /// long, not valid UTF-8, a name breaks the rules, the body ends early…).
    #[error("malformed {kind} frame")]
    Malformed {
        /// The frame kind.
        kind: &'static str,
        /// What postcard said.
        #[source]
        source: postcard::Error,
    },
    /// The body decoded, but is not the one encoding of what it decoded to
    /// (a varint with needless continuation bytes, say). Each frame has
    /// exactly one valid encoding, so that nothing signed or hashed can be
    /// re-encoded into a different but equivalent form.
    #[error("non-canonical {kind} frame")]
    NonCanonical {
        /// The frame kind.
        kind: &'static str,
    },
    /// The body decoded but bytes were left after it.
    #[error("{extra} bytes after the end of a {kind} frame")]
    Trailing {
        /// The frame kind.
        kind: &'static str,
        /// How many.
        extra: usize,
    },
}

impl DecodeError {
    /// The error code to send back before closing.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLong { .. } | Self::TooLongForKind { .. } => ErrorCode::FRAME_TOO_LARGE,
            _ => ErrorCode::MALFORMED_FRAME,
        }
    }
}

/// Why a frame could not be encoded. Only a bug can cause this: every field
/// is bounded by its type, and the kind maxima cover the bounded fields.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded body is over its kind's maximum.
    #[error("{kind} frame of {len} bytes is over its maximum of {max}")]
    TooLong {
        /// The frame kind.
        kind: &'static str,
        /// Encoded length.
        len: usize,
        /// The kind's maximum.
        max: usize,
    },
    /// postcard failed.
    #[error("could not encode a {kind} frame")]
    Postcard {
        /// The frame kind.
        kind: &'static str,
        /// What postcard said.
        #[source]
        source: postcard::Error,
    },
}

/// Encodes a frame's body: one WebSocket binary message.
pub fn encode_body<F: Frame>(frame: &F) -> Result<Vec<u8>, EncodeError> {
    let (kind, max) = frame.kind_info();
    let body =
        postcard::to_allocvec(frame).map_err(|source| EncodeError::Postcard { kind, source })?;
    if body.len() > max {
        return Err(EncodeError::TooLong {
            kind,
            len: body.len(),
            max,
        });
    }
    Ok(body)
}

/// Appends a frame with its length prefix, as sent on a QUIC stream.
pub fn encode_stream<F: Frame>(frame: &F, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let body = encode_body(frame)?;
    // body.len() <= MAX_FRAME_LEN, far below u32::MAX.
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Checks a body's length against its kind, from the tag alone.
fn check_header<F: Frame>(len: usize, tag: Option<u8>) -> Result<(), DecodeError> {
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    if len > MAX_FRAME_LEN {
        return Err(DecodeError::TooLong {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    if let Some(tag) = tag {
        let (kind, max) = F::kind_of_tag(tag).ok_or(DecodeError::UnknownTag { tag })?;
        if len > max {
            return Err(DecodeError::TooLongForKind { kind, len, max });
        }
    }
    Ok(())
}

/// Decodes one frame body: one WebSocket binary message.
pub fn decode_body<F: Frame>(body: &[u8]) -> Result<F, DecodeError> {
    check_header::<F>(body.len(), body.first().copied())?;
    let kind = body
        .first()
        .and_then(|t| F::kind_of_tag(*t))
        .map_or("unknown", |(k, _)| k);
    let (frame, rest) = postcard::take_from_bytes::<F>(body)
        .map_err(|source| DecodeError::Malformed { kind, source })?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing {
            kind,
            extra: rest.len(),
        });
    }
    if !is_canonical(&frame, body) {
        return Err(DecodeError::NonCanonical { kind });
    }
    Ok(frame)
}

/// Whether encoding `value` with postcard gives exactly `expected`, compared
/// as the serializer goes, without allocating. Decoders of other postcard
/// formats (the client's message content, say) use it to refuse
/// non-canonical input as frames do.
pub fn is_canonical<T: Serialize>(value: &T, expected: &[u8]) -> bool {
    struct Compare<'a> {
        rest: &'a [u8],
    }
    impl postcard::ser_flavors::Flavor for Compare<'_> {
        type Output = bool;
        fn try_push(&mut self, b: u8) -> postcard::Result<()> {
            self.try_extend(&[b])
        }
        fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
            match self.rest.strip_prefix(data) {
                Some(rest) => {
                    self.rest = rest;
                    Ok(())
                }
                None => Err(postcard::Error::SerializeBufferFull),
            }
        }
        fn finalize(self) -> postcard::Result<bool> {
            Ok(self.rest.is_empty())
        }
    }
    postcard::serialize_with_flavor(value, Compare { rest: expected }).unwrap_or(false)
}

/// Decodes the first frame of a QUIC stream buffer.
///
/// Returns `Ok(None)` while the buffer holds less than a whole frame (read
/// more and call again), and `Ok(Some((frame, consumed)))` once it holds one.
/// An oversize or unknown frame is refused as soon as its five header bytes
/// (length and tag) are present, so a caller that reads only while this
/// returns `None` never buffers more than one frame of the largest allowed
/// kind.
pub fn decode_stream<F: Frame>(buf: &[u8]) -> Result<Option<(F, usize)>, DecodeError> {
    let Some(prefix) = buf.first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*prefix) as usize;
    check_header::<F>(len, buf.get(LEN_PREFIX).copied())?;
    let Some(body) = buf.get(LEN_PREFIX..LEN_PREFIX + len) else {
        return Ok(None);
    };
    decode_body(body).map(|f| Some((f, LEN_PREFIX + len)))
}

/// A buffer that turns stream bytes into frames.
///
/// Feed it what the stream gives with [`push`](Self::push), then take frames
/// with [`next_frame`](Self::next_frame) until it returns `None`. Used that way
/// it holds at most one partial frame (never more than [`MAX_FRAME_LEN`] plus
/// the prefix) and one read's worth of bytes. After an error the stream is
/// unusable: send the error code and close.
#[derive(Debug)]
pub struct FrameDecoder<F> {
    buf: Vec<u8>,
    _frame: PhantomData<fn() -> F>,
}

impl<F: Frame> Default for FrameDecoder<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Frame> FrameDecoder<F> {
    /// An empty decoder.
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            _frame: PhantomData,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame, if the buffer holds one.
    pub fn next_frame(&mut self) -> Result<Option<F>, DecodeError> {
        match decode_stream::<F>(&self.buf)? {
            Some((frame, used)) => {
                self.buf.drain(..used);
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }

    /// Bytes held that are not yet part of a returned frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Ping;

    fn ping(n: u64) -> ClientFrame {
        ClientFrame::Ping(Ping { nonce: n })
    }

    #[test]
    fn stream_round_trip_byte_by_byte() {
        let mut wire = Vec::new();
        for n in [0, 1, u64::MAX] {
            encode_stream(&ping(n), &mut wire).unwrap();
        }
        let mut d = FrameDecoder::<ClientFrame>::new();
        let mut got = Vec::new();
        for b in &wire {
            d.push(core::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, vec![ping(0), ping(1), ping(u64::MAX)]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn oversize_length_is_refused_from_the_prefix_alone() {
        let len = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
        assert!(matches!(
            decode_stream::<ClientFrame>(&len),
            Err(DecodeError::TooLong { .. })
        ));
        let huge = u32::MAX.to_be_bytes();
        assert!(matches!(
            decode_stream::<ServerFrame>(&huge),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn per_kind_limit_is_checked_from_the_tag_before_the_body_arrives() {
        // A ping (tag 24) claiming to be 2000 bytes: over its 1024 maximum.
        let mut hdr = 2000u32.to_be_bytes().to_vec();
        hdr.push(ClientKind::Ping.tag());
        let err = decode_stream::<ClientFrame>(&hdr).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::TooLongForKind {
                kind: "Ping",
                len: 2000,
                ..
            }
        ));
        assert_eq!(err.code(), ErrorCode::FRAME_TOO_LARGE);
        // Exactly at the maximum is allowed to arrive (then fails as garbage).
        let mut at = (ClientKind::Ping.max_len() as u32).to_be_bytes().to_vec();
        at.push(ClientKind::Ping.tag());
        assert!(decode_stream::<ClientFrame>(&at).unwrap().is_none());
    }

    #[test]
    fn empty_unknown_and_trailing_are_refused() {
        assert!(matches!(
            decode_body::<ClientFrame>(&[]),
            Err(DecodeError::Empty)
        ));
        assert!(matches!(
            decode_body::<ClientFrame>(&[200, 0]),
            Err(DecodeError::UnknownTag { tag: 200 })
        ));
        let mut body = encode_body(&ping(5)).unwrap();
        body.push(0);
        assert!(matches!(
            decode_body::<ClientFrame>(&body),
            Err(DecodeError::Trailing { extra: 1, .. })
        ));
        assert!(matches!(
            decode_body::<ClientFrame>(&body[..1]),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn non_canonical_varint_is_refused() {
        // Ping{nonce: 5} is [24, 5]; [24, 0x85, 0x00] also decodes to 5.
        assert_eq!(encode_body(&ping(5)).unwrap(), [24, 5]);
        assert!(matches!(
            decode_body::<ClientFrame>(&[24, 0x85, 0x00]),
            Err(DecodeError::NonCanonical { kind: "Ping" })
        ));
    }

    #[test]
    fn zero_length_prefix_is_refused() {
        assert!(matches!(
            decode_stream::<ClientFrame>(&[0, 0, 0, 0]),
            Err(DecodeError::Empty)
        ));
    }
}
