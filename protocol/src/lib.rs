//! Spider wire protocol.
