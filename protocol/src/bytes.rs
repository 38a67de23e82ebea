//! Byte containers with their length in the type.
//!
//! Every variable-length field of a frame has a maximum, and the maximum is
//! checked while decoding, before anything is copied: postcard has already
//! checked that the declared length fits in the input, and these types check
//! it against their own bound before allocating. So no field of any frame can
//! make the decoder allocate more than that field's maximum, whatever its
//! declared length.
//!
//! On the wire (postcard):
//!
//! | type                | encoding                                        |
//! |---------------------|-------------------------------------------------|
//! | [`FixedBytes<N>`]   | exactly `N` raw bytes, no length prefix         |
//! | [`BoundedBytes<M>`] | varint length `L` (≤ `M`), then `L` raw bytes   |
//! | [`BoundedString<M>`]| varint length `L` (≤ `M`), then `L` UTF-8 bytes |
//! | [`BoundedVec<T, M>`]| varint count `C` (≤ `M`), then `C` items        |

use core::fmt;
use core::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeTuple, Serializer};

/// A value was longer than its field allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{len} is over the maximum length of {max}")]
pub struct LengthError {
    /// The length that was offered.
    pub len: usize,
    /// The maximum the field allows.
    pub max: usize,
}

/// Exactly `N` bytes: keys, signatures, identifiers.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FixedBytes<const N: usize>(pub [u8; N]);

impl<const N: usize> FixedBytes<N> {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> From<[u8; N]> for FixedBytes<N> {
    fn from(b: [u8; N]) -> Self {
        Self(b)
    }
}

impl<const N: usize> TryFrom<&[u8]> for FixedBytes<N> {
    type Error = LengthError;
    fn try_from(b: &[u8]) -> Result<Self, LengthError> {
        <[u8; N]>::try_from(b).map(Self).map_err(|_| LengthError {
            len: b.len(),
            max: N,
        })
    }
}

impl<const N: usize> fmt::Debug for FixedBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl<const N: usize> Serialize for FixedBytes<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A tuple, not bytes: postcard writes tuples with no length prefix.
        let mut t = s.serialize_tuple(N)?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de, const N: usize> Deserialize<'de> for FixedBytes<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for V<N> {
            type Value = FixedBytes<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{N} bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = [0u8; N];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                Ok(FixedBytes(out))
            }
        }
        d.deserialize_tuple(N, V::<N>)
    }
}

/// At most `MAX` bytes.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct BoundedBytes<const MAX: usize>(Vec<u8>);

impl<const MAX: usize> BoundedBytes<MAX> {
    /// The maximum length, in bytes.
    pub const MAX: usize = MAX;

    /// Wraps `v` if it is at most `MAX` bytes long.
    pub fn new(v: Vec<u8>) -> Result<Self, LengthError> {
        if v.len() > MAX {
            return Err(LengthError {
                len: v.len(),
                max: MAX,
            });
        }
        Ok(Self(v))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, by value.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<const MAX: usize> TryFrom<Vec<u8>> for BoundedBytes<MAX> {
    type Error = LengthError;
    fn try_from(v: Vec<u8>) -> Result<Self, LengthError> {
        Self::new(v)
    }
}

impl<const MAX: usize> TryFrom<&[u8]> for BoundedBytes<MAX> {
    type Error = LengthError;
    fn try_from(v: &[u8]) -> Result<Self, LengthError> {
        if v.len() > MAX {
            return Err(LengthError {
                len: v.len(),
                max: MAX,
            });
        }
        Ok(Self(v.to_vec()))
    }
}

impl<const MAX: usize> fmt::Debug for BoundedBytes<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Payloads are ciphertext, but even so: length only, never content.
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl<const MAX: usize> Serialize for BoundedBytes<MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de, const MAX: usize> Deserialize<'de> for BoundedBytes<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const MAX: usize>;
        impl<'de, const MAX: usize> Visitor<'de> for V<MAX> {
            type Value = BoundedBytes<MAX>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {MAX} bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                if v.len() > MAX {
                    return Err(E::invalid_length(v.len(), &self));
                }
                Ok(BoundedBytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                BoundedBytes::new(v).map_err(|e| E::invalid_length(e.len, &self))
            }
        }
        d.deserialize_bytes(V::<MAX>)
    }
}

/// A UTF-8 string of at most `MAX` bytes.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct BoundedString<const MAX: usize>(String);

impl<const MAX: usize> BoundedString<MAX> {
    /// The maximum length, in bytes of UTF-8.
    pub const MAX: usize = MAX;

    /// Wraps `s` if it is at most `MAX` bytes long.
    pub fn new(s: impl Into<String>) -> Result<Self, LengthError> {
        let s = s.into();
        if s.len() > MAX {
            return Err(LengthError {
                len: s.len(),
                max: MAX,
            });
        }
        Ok(Self(s))
    }

    /// Wraps `s`, cutting it at a character boundary so that it fits.
    pub fn truncating(s: &str) -> Self {
        let mut end = s.len().min(MAX);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        Self(s[..end].to_owned())
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> fmt::Debug for BoundedString<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<const MAX: usize> fmt::Display for BoundedString<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const MAX: usize> Serialize for BoundedString<MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de, const MAX: usize> Deserialize<'de> for BoundedString<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const MAX: usize>;
        impl<'de, const MAX: usize> Visitor<'de> for V<MAX> {
            type Value = BoundedString<MAX>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a string of at most {MAX} bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v.len() > MAX {
                    return Err(E::invalid_length(v.len(), &self));
                }
                Ok(BoundedString(v.to_owned()))
            }
        }
        d.deserialize_str(V::<MAX>)
    }
}

/// At most `MAX` items.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BoundedVec<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> Default for BoundedVec<T, MAX> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T, const MAX: usize> BoundedVec<T, MAX> {
    /// The maximum number of items.
    pub const MAX: usize = MAX;

    /// Wraps `v` if it holds at most `MAX` items.
    pub fn new(v: Vec<T>) -> Result<Self, LengthError> {
        if v.len() > MAX {
            return Err(LengthError {
                len: v.len(),
                max: MAX,
            });
        }
        Ok(Self(v))
    }

    /// An empty list.
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// The items.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// The items, by value.
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the items.
    pub fn iter(&self) -> core::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<T, const MAX: usize> TryFrom<Vec<T>> for BoundedVec<T, MAX> {
    type Error = LengthError;
    fn try_from(v: Vec<T>) -> Result<Self, LengthError> {
        Self::new(v)
    }
}

impl<'a, T, const MAX: usize> IntoIterator for &'a BoundedVec<T, MAX> {
    type Item = &'a T;
    type IntoIter = core::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: fmt::Debug, const MAX: usize> fmt::Debug for BoundedVec<T, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

impl<T: Serialize, const MAX: usize> Serialize for BoundedVec<T, MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for BoundedVec<T, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const MAX: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for V<T, MAX> {
            type Value = BoundedVec<T, MAX>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {MAX} items")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // postcard reports the declared count: refuse it before
                // reserving anything.
                let declared = seq.size_hint().unwrap_or(0);
                if declared > MAX {
                    return Err(de::Error::invalid_length(declared, &self));
                }
                let mut out = Vec::with_capacity(declared);
                while let Some(item) = seq.next_element()? {
                    if out.len() == MAX {
                        return Err(de::Error::invalid_length(MAX + 1, &self));
                    }
                    out.push(item);
                }
                Ok(BoundedVec(out))
            }
        }
        d.deserialize_seq(V::<T, MAX>(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_bytes_accepts_max_and_refuses_max_plus_one() {
        assert!(BoundedBytes::<4>::new(vec![0; 4]).is_ok());
        assert_eq!(
            BoundedBytes::<4>::new(vec![0; 5]),
            Err(LengthError { len: 5, max: 4 })
        );
        let ok = postcard::to_allocvec(&BoundedBytes::<300>::new(vec![7; 4]).unwrap()).unwrap();
        assert_eq!(ok, [4, 7, 7, 7, 7]);
        let long = postcard::to_allocvec(&vec![7u8; 5]).unwrap();
        assert!(postcard::from_bytes::<BoundedBytes<4>>(&long).is_err());
    }

    #[test]
    fn bounded_vec_refuses_declared_count_over_max_without_items() {
        // A count of 2^32 with no items behind it: refused on the count alone.
        let evil = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(postcard::from_bytes::<BoundedVec<u64, 8>>(&evil).is_err());
        let ok = postcard::to_allocvec(&vec![1u16, 2, 3]).unwrap();
        assert_eq!(
            postcard::from_bytes::<BoundedVec<u16, 3>>(&ok)
                .unwrap()
                .as_slice(),
            &[1, 2, 3]
        );
        assert!(postcard::from_bytes::<BoundedVec<u16, 2>>(&ok).is_err());
    }

    #[test]
    fn bounded_string_edges() {
        assert!(BoundedString::<3>::new("abc").is_ok());
        assert!(BoundedString::<3>::new("abcd").is_err());
        // "é" is two bytes: truncation never splits a character.
        assert_eq!(BoundedString::<3>::truncating("aéé").as_str(), "aé");
        let enc = postcard::to_allocvec("abcd").unwrap();
        assert!(postcard::from_bytes::<BoundedString<3>>(&enc).is_err());
        assert_eq!(
            postcard::from_bytes::<BoundedString<4>>(&enc)
                .unwrap()
                .as_str(),
            "abcd"
        );
    }

    #[test]
    fn fixed_bytes_have_no_length_prefix() {
        let v = FixedBytes([1u8, 2, 3]);
        assert_eq!(postcard::to_allocvec(&v).unwrap(), [1, 2, 3]);
        assert!(postcard::from_bytes::<FixedBytes<4>>(&[1, 2, 3]).is_err());
        assert_eq!(format!("{:?}", FixedBytes([0xab, 0x01])), "ab01");
    }
}

#[cfg(feature = "arbitrary")]
mod arbitrary_impls {
    use super::*;
    use arbitrary::{Arbitrary, Result, Unstructured};

    impl<'a, const N: usize> Arbitrary<'a> for FixedBytes<N> {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            Ok(Self(u.arbitrary()?))
        }
    }

    impl<'a, const MAX: usize> Arbitrary<'a> for BoundedBytes<MAX> {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            let len = u.arbitrary_len::<u8>()?.min(MAX);
            Ok(Self(u.bytes(len)?.to_vec()))
        }
    }

    impl<'a, const MAX: usize> Arbitrary<'a> for BoundedString<MAX> {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            let s: &str = u.arbitrary()?;
            Ok(Self::truncating(s))
        }
    }

    impl<'a, T: Arbitrary<'a>, const MAX: usize> Arbitrary<'a> for BoundedVec<T, MAX> {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            let mut v = Vec::new();
            for item in u.arbitrary_iter()? {
                if v.len() == MAX {
                    break;
                }
                v.push(item?);
            }
            Ok(Self(v))
        }
    }
}
