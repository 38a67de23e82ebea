//! Usernames and room names.
//!
//! # Rules
//!
//! A [`Username`] or [`RoomName`]:
//! - is 3 to 32 characters long ([`MIN_NAME_LEN`], [`MAX_NAME_LEN`]);
//! - uses only `a`–`z`, `0`–`9`, `_` and `.`; upper-case ASCII letters are
//!   accepted on input and folded to lower case, so `Alice` and `alice` are
//!   one name;
//! - starts with a letter, does not end with `.`, and has no `..`;
//! - when it is being claimed (registration, room creation: `parse_new`), is
//!   not one of the reserved names in [`RESERVED`], which would let an account
//!   pass for the relay or its operators.
//!
//! The reserved list is policy, not syntax: it is checked where a name is
//! claimed, never while decoding a frame, so that a relay or client with a
//! longer list still decodes every frame that mentions an existing name. The
//! syntax rules above are frozen for protocol version 1.
//!
//! Everything outside ASCII is refused rather than normalised. Unicode holds
//! thousands of characters that look like Latin letters (Cyrillic `а`, Greek
//! `ο`, full-width forms, combining marks, zero-width joiners); a name made of
//! them can impersonate another in every font. Confusable-skeleton matching
//! (UTS #39) would let such names in and then try to catch collisions; refusing
//! them leaves nothing to catch. Display names, which are free text, live in
//! the encrypted profile instead, where the relay never sees them.

use core::fmt;

use serde::{Deserialize, Serialize};

/// The shortest name allowed: two-letter names are too easy to squat in bulk.
pub const MIN_NAME_LEN: usize = 3;
/// The longest name allowed: fits a terminal sidebar and a log line.
pub const MAX_NAME_LEN: usize = 32;
/// Names no one may register, because they would pass for the service.
pub const RESERVED: &[&str] = &[
    "admin",
    "administrator",
    "root",
    "relay",
    "spider",
    "system",
    "support",
    "security",
    "moderator",
    "operator",
    "postmaster",
    "abuse",
    "everyone",
    "here",
];

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Fewer than [`MIN_NAME_LEN`] characters.
    #[error("too short: names have at least {MIN_NAME_LEN} characters")]
    TooShort,
    /// More than [`MAX_NAME_LEN`] characters.
    #[error("too long: names have at most {MAX_NAME_LEN} characters")]
    TooLong,
    /// A character outside `a-z 0-9 _ .` (after folding ASCII case).
    #[error("only letters a-z, digits, '_' and '.' are allowed")]
    BadCharacter,
    /// The first character is not a letter.
    #[error("names start with a letter")]
    BadStart,
    /// A trailing `.` or a `..`.
    #[error("names neither end with '.' nor contain '..'")]
    BadDots,
    /// One of [`RESERVED`].
    #[error("this name is reserved")]
    Reserved,
}

fn parse_name(input: &str) -> Result<String, NameError> {
    // Check length on bytes first: anything non-ASCII is refused below anyway,
    // and this bounds the work done on hostile input.
    if input.len() > MAX_NAME_LEN {
        // A long non-ASCII string is refused for its characters, which is the
        // more useful message.
        if !input.is_ascii() {
            return Err(NameError::BadCharacter);
        }
        return Err(NameError::TooLong);
    }
    if !input.is_ascii() {
        return Err(NameError::BadCharacter);
    }
    if input.len() < MIN_NAME_LEN {
        return Err(NameError::TooShort);
    }
    let name = input.to_ascii_lowercase();
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    {
        return Err(NameError::BadCharacter);
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return Err(NameError::BadStart);
    }
    if name.ends_with('.') || name.contains("..") {
        return Err(NameError::BadDots);
    }
    Ok(name)
}

macro_rules! name_type {
    ($(#[$m:meta])* $name:ident, $sigil:literal) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "&str", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and normalises a name by the rules of this module. A
            #[doc = concat!("leading `", $sigil, "` is accepted and dropped.")]
            pub fn parse(input: &str) -> Result<Self, NameError> {
                let input = input.strip_prefix($sigil).unwrap_or(input);
                parse_name(input).map(Self)
            }

            /// As [`parse`](Self::parse), and refuses reserved names: for a
            /// name being claimed.
            pub fn parse_new(input: &str) -> Result<Self, NameError> {
                let name = Self::parse(input)?;
                if name.is_reserved() {
                    return Err(NameError::Reserved);
                }
                Ok(name)
            }

            /// Whether this is one of [`RESERVED`].
            pub fn is_reserved(&self) -> bool {
                RESERVED.contains(&self.0.as_str())
            }

            /// The normalised name, without sigil.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            /// With the sigil, as users type it.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $sigil, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $sigil, self.0)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                // On the wire a name must already be in normal form: a
                // non-normal name from a peer is a bug or an attack.
                let n = Self::parse(s)?;
                if n.0 != s {
                    return Err(NameError::BadCharacter);
                }
                Ok(n)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl core::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }
    };
}

name_type!(
    /// A validated, normalised username, unique on a relay. Shown as `@name`.
    Username,
    "@"
);
name_type!(
    /// A validated, normalised room name, unique on a relay. Shown as `#name`.
    /// Room names are visible to the relay, like Matrix room aliases; the
    /// room's topic and other details travel encrypted.
    RoomName,
    "#"
);

#[cfg(feature = "arbitrary")]
mod arbitrary_impls {
    use super::*;
    use arbitrary::{Arbitrary, Result, Unstructured};

    /// A valid name: a letter, then letters, digits and `_`.
    fn valid(u: &mut Unstructured<'_>) -> Result<String> {
        const FIRST: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
        const REST: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_";
        let len = u.int_in_range(MIN_NAME_LEN..=MAX_NAME_LEN)?;
        let mut s = String::with_capacity(len);
        s.push(char::from(*u.choose(FIRST)?));
        while s.len() < len {
            s.push(char::from(*u.choose(REST)?));
        }
        Ok(s)
    }

    impl<'a> Arbitrary<'a> for Username {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            Ok(Self(valid(u)?))
        }
    }

    impl<'a> Arbitrary<'a> for RoomName {
        fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
            Ok(Self(valid(u)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_normalised_to_lower_case() {
        assert_eq!(Username::parse("Alice").unwrap().as_str(), "alice");
        assert_eq!(Username::parse("@bob_2.x").unwrap().as_str(), "bob_2.x");
        assert_eq!(RoomName::parse("#Ops").unwrap().to_string(), "#ops");
    }

    #[test]
    fn length_edges() {
        assert_eq!(Username::parse("ab"), Err(NameError::TooShort));
        assert!(Username::parse("abc").is_ok());
        assert!(Username::parse(&"a".repeat(MAX_NAME_LEN)).is_ok());
        assert_eq!(
            Username::parse(&"a".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong)
        );
    }

    #[test]
    fn characters_outside_the_set_are_refused() {
        for bad in [
            "al ice",
            "al-ice",
            "al@ice",
            "ali\u{0}ce",
            "al/ice",
            "al+ice",
        ] {
            assert_eq!(
                Username::parse(bad),
                Err(NameError::BadCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn confusables_and_all_non_ascii_are_refused() {
        // Cyrillic а (U+0430), Greek ο, full-width a, zero-width joiner,
        // combining acute, and a long run of non-ASCII.
        for bad in [
            "\u{430}lice",
            "b\u{3bf}b",
            "\u{ff41}lice",
            "al\u{200d}ice",
            "ale\u{301}x",
            &"é".repeat(40),
        ] {
            assert_eq!(
                Username::parse(bad),
                Err(NameError::BadCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn start_and_dot_rules() {
        assert_eq!(Username::parse("1alice"), Err(NameError::BadStart));
        assert_eq!(Username::parse("_alice"), Err(NameError::BadStart));
        assert_eq!(Username::parse(".alice"), Err(NameError::BadStart));
        assert_eq!(Username::parse("alice."), Err(NameError::BadDots));
        assert_eq!(Username::parse("al..ice"), Err(NameError::BadDots));
        assert!(Username::parse("al.ice").is_ok());
    }

    #[test]
    fn reserved_names_cannot_be_claimed_in_any_case_but_still_decode() {
        assert_eq!(Username::parse_new("admin"), Err(NameError::Reserved));
        assert_eq!(Username::parse_new("Spider"), Err(NameError::Reserved));
        assert_eq!(RoomName::parse_new("#everyone"), Err(NameError::Reserved));
        assert!(Username::parse_new("alice").is_ok());
        // Policy, not syntax: a frame naming a reserved account decodes.
        let admin = Username::parse("admin").unwrap();
        assert!(admin.is_reserved());
        let enc = postcard::to_allocvec("admin").unwrap();
        assert_eq!(postcard::from_bytes::<Username>(&enc).unwrap(), admin);
    }

    #[test]
    fn wire_form_must_already_be_normal() {
        let ok = postcard::to_allocvec("alice").unwrap();
        assert_eq!(
            postcard::from_bytes::<Username>(&ok).unwrap().as_str(),
            "alice"
        );
        for bad in ["Alice", "@alice", "a"] {
            let enc = postcard::to_allocvec(bad).unwrap();
            assert!(postcard::from_bytes::<Username>(&enc).is_err(), "{bad}");
        }
    }
}
