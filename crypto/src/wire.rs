//! Byte-level helpers shared by the wire formats: a bounds-checked reader and
//! the common `version || type` header check. Nothing here panics on input.

use crate::domain::WIRE_VERSION;
use crate::error::DecodeError;

/// A cursor over untrusted bytes; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Reads exactly `N` bytes.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let end = self.pos.checked_add(N).ok_or(DecodeError::TooShort {
            len: self.bytes.len(),
        })?;
        let slice = self.bytes.get(self.pos..end).ok_or(DecodeError::TooShort {
            len: self.bytes.len(),
        })?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array::<4>()?))
    }

    /// A 0/1 flag; anything else is refused so that encodings are canonical.
    pub(crate) fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidFlag),
        }
    }

    /// Reads exactly `n` bytes (borrowed).
    #[cfg(feature = "sessions")]
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let short = DecodeError::TooShort {
            len: self.bytes.len(),
        };
        let end = self.pos.checked_add(n).ok_or(short)?;
        let slice = self.bytes.get(self.pos..end).ok_or(short)?;
        self.pos = end;
        Ok(slice)
    }

    #[cfg(feature = "sessions")]
    /// The rest of the input.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        self.pos = self.bytes.len();
        rest
    }

    /// Refuses trailing bytes.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(DecodeError::WrongLength {
                len: self.bytes.len(),
                expected: self.pos,
            })
        }
    }
}

/// Checks the `version || type` prefix (and the maximum length) before any
/// other parsing, and returns a reader positioned after it.
pub(crate) fn open(
    bytes: &[u8],
    expected_type: u8,
    max_len: usize,
) -> Result<Reader<'_>, DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::TooLong {
            len: bytes.len(),
            max: max_len,
        });
    }
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != WIRE_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let found = r.u8()?;
    if found != expected_type {
        return Err(DecodeError::WrongMessageType {
            expected: expected_type,
            found,
        });
    }
    Ok(r)
}
