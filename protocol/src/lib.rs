//! Spider's wire protocol: frame types and their codec. Sans-I/O.
//!
//! This crate turns frames into bytes and bytes into frames; it never touches
//! a socket, a clock or a random number generator. The relay and the client
//! drive it from their transports. docs/protocol.md specifies every frame byte
//! by byte from these types, with hex examples that a test regenerates.
//!
//! ```text
//!  client                                            relay
//!    | -- Hello {versions}  ----------------------->  |   version negotiation
//!    | <------------ Welcome {version, challenge} --  |   (or Error + close)
//!    | -- Register | Login | AddDevice {signature} -> |   auth, bound to the TLS
//!    | <-------------------------------- AuthOk ----  |   exporter and relay name
//!    | <------------ Deliver {seq, envelope} ... ---  |   queued mail, in order
//!    | <-------------------------------- CaughtUp --  |
//!    | -- Ack {up_to} ----------------------------->  |   steady state: requests
//!    | -- SendDirect {req, copies} ---------------->  |   carry a `req` that the
//!    | <----------------------- Sent {req, ...} ----  |   reply echoes
//!    | <-------------------------------- Drain -----  |   relay shutting down
//! ```
//!
//! # Layout
//!
//! - [`frame`]: [`ClientFrame`] and [`ServerFrame`], each variant's tag and
//!   maximum size.
//! - [`message`]: the payload of each frame, by domain.
//! - [`codec`]: length-prefixed framing for QUIC streams, bare bodies for
//!   WebSocket messages, and a streaming [`FrameDecoder`].
//! - [`ids`], [`name`], [`keys`], [`bytes`]: typed identifiers, validated
//!   names, key material as bytes, length-bounded containers.
//! - [`error`]: stable error codes. [`version`]: negotiation and constants.
//!
//! # Example
//!
//! ```
//! use spider_protocol::{
//!     ClientFrame, FrameDecoder, ServerFrame, codec, version,
//!     message::{Ack, Welcome},
//!     ids::{Seq, Timestamp},
//!     bytes::{BoundedString, FixedBytes},
//! };
//!
//! // The client opens with a hello, length-prefixed on a QUIC stream.
//! let mut wire = Vec::new();
//! codec::encode_stream(&ClientFrame::Hello(version::hello("example/1.0")), &mut wire)?;
//! codec::encode_stream(&ClientFrame::Ack(Ack { up_to: Seq(41) }), &mut wire)?;
//!
//! // The relay feeds whatever the stream gives into a decoder...
//! let mut decoder = FrameDecoder::<ClientFrame>::new();
//! decoder.push(&wire[..3]);
//! assert!(decoder.next_frame()?.is_none()); // not a whole frame yet
//! decoder.push(&wire[3..]);
//! let Some(ClientFrame::Hello(hello)) = decoder.next_frame()? else { unreachable!() };
//!
//! // ...and answers in the version both speak.
//! let v = version::negotiate(&hello, version::SUPPORTED_VERSIONS).expect("v1");
//! let welcome = ServerFrame::Welcome(Welcome {
//!     version: v,
//!     relay_name: BoundedString::new("relay.example")?,
//!     challenge: FixedBytes([7; 32]),
//!     server_time: Timestamp(1_700_000_000_000),
//!     idle_timeout_ms: 60_000,
//! });
//! // Over WebSocket one binary message is one body, with no prefix.
//! let body = codec::encode_body(&welcome)?;
//! assert_eq!(codec::decode_body::<ServerFrame>(&body)?, welcome);
//! assert_eq!(decoder.next_frame()?, Some(ClientFrame::Ack(Ack { up_to: Seq(41) })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod bytes;
pub mod codec;
pub mod error;
pub mod frame;
pub mod ids;
pub mod keys;
pub mod message;
pub mod name;
pub mod version;

pub use codec::{DecodeError, EncodeError, FrameDecoder};
pub use error::ErrorCode;
pub use frame::{ClientFrame, ClientKind, MAX_FRAME_LEN, ServerFrame, ServerKind};

/// Entry points for fuzz/: each decoder of untrusted bytes, taking any input.
#[doc(hidden)]
pub mod fuzzing {
    use crate::codec::{Frame, decode_body, decode_stream, encode_body};
    use crate::frame::{ClientFrame, ServerFrame};

    /// Decodes `data` as one frame body; what decodes must re-encode to
    /// exactly `data`, since each frame has one encoding.
    fn body<F: Frame>(data: &[u8]) {
        if let Ok(f) = decode_body::<F>(data) {
            let again = encode_body(&f).ok();
            assert_eq!(
                again.as_deref(),
                Some(data),
                "decoded frame must re-encode to its input"
            );
        }
    }

    /// Runs a stream decoder over `data` until it stops.
    fn stream<F: Frame>(data: &[u8]) {
        let mut rest = data;
        while let Ok(Some((_, used))) = decode_stream::<F>(rest) {
            rest = &rest[used..];
        }
    }

    /// What the relay does with every WebSocket message.
    pub fn client_body(data: &[u8]) {
        body::<ClientFrame>(data);
    }

    /// What a client does with every WebSocket message.
    pub fn server_body(data: &[u8]) {
        body::<ServerFrame>(data);
    }

    /// A client-frame QUIC stream, as the relay reads it.
    pub fn client_stream(data: &[u8]) {
        stream::<ClientFrame>(data);
    }

    /// A relay-frame QUIC stream, as a client reads it.
    pub fn server_stream(data: &[u8]) {
        stream::<ServerFrame>(data);
    }

    /// Parses `data` as a username and a room name.
    pub fn names(data: &[u8]) {
        if let Ok(s) = core::str::from_utf8(data) {
            if let Ok(n) = crate::name::Username::parse(s) {
                assert!(n.as_str().len() <= crate::name::MAX_NAME_LEN);
                assert_eq!(crate::name::Username::parse(n.as_str()).ok(), Some(n));
            }
            let _ = crate::name::RoomName::parse(s);
        }
    }
}
