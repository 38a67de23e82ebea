//! The two ways in: QUIC, and WebSocket over TLS for networks that block UDP.
//! Each turns its transport into a [`FrameSink`](crate::connection::FrameSink)
//! and a queue of [`Inbound`](crate::connection::Inbound) frames, then hands
//! them to [`serve`](crate::connection::serve).

pub(crate) mod quic;
pub(crate) mod ws;
