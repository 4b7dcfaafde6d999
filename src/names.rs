//! Names: what a person's name may be, and when two names are the same name.
//!
//! A name tells everyone who is speaking, so two names that *look* alike must be one name.
//! Names are compared by a [`key`]: NFKC normalisation, case folding, then the confusable
//! skeleton of Unicode TR39, so `boss`, `BOSS`, `bоss` (Cyrillic о), `b0ss`, `ｂｏｓｓ` and `𝐛𝐨𝐬𝐬`
//! share one key and whoever holds one of them holds them all (the accounts, the bans, the
//! reserved names and the names in use are all looked up by key).
//!
//! What a name may hold ([`validate`]): characters that TR39's General Security Profile allows
//! in identifiers and that may continue an identifier (letters, digits and the combining marks
//! of scripts such as Devanagari and Tamil), plus `-` and `.`; so nothing invisible or
//! default-ignorable (U+3164 HANGUL FILLER, U+200D ZERO WIDTH JOINER), no compatibility forms
//! (fullwidth or mathematical letters), and no mix of scripts that is a classic spoof (Latin with
//! Cyrillic or Greek): at most TR39's "moderately restrictive" level.
//!
//! This module depends on nothing else in the crate: protocol, accounts and bans use it.

use std::fmt;
use std::sync::OnceLock;

use unicode_normalization::UnicodeNormalization;
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

/// The longest accepted name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// Names nobody may take (nor anything that looks like them): they would let a client pass
/// itself off as the server or its staff.
const RESERVED: &[&str] = &[
    "server",
    "admin",
    "administrator",
    "root",
    "system",
    "sysop",
    "operator",
    "moderator",
    "mod",
    "chatroom",
    "nobody",
    "everyone",
    "here",
];

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong {
        chars: usize,
    },
    InvalidChar {
        ch: char,
    },
    /// Letters of scripts that are not used together (Latin with Cyrillic, say).
    MixedScripts,
    /// The name is, or looks like, a reserved name.
    Reserved {
        name: String,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "a name needs at least one character"),
            NameError::TooLong { chars } => write!(
                f,
                "a name has at most {MAX_NAME_CHARS} characters; that one has {chars}"
            ),
            NameError::InvalidChar { ch } => write!(
                f,
                "a name may hold letters, digits, '_', '-' and '.', not {}",
                describe(*ch)
            ),
            NameError::MixedScripts => write!(
                f,
                "a name may not mix letters of different scripts (such as Latin and Cyrillic)"
            ),
            NameError::Reserved { name } => {
                write!(
                    f,
                    "the name {name} is reserved (or looks like a reserved name)"
                )
            }
        }
    }
}

/// Checks a name: 1 to 32 allowed characters, one script, not (like) a reserved name.
pub fn validate(name: &str) -> Result<(), NameError> {
    let chars = name.chars().count();
    if chars == 0 {
        return Err(NameError::Empty);
    }
    if chars > MAX_NAME_CHARS {
        return Err(NameError::TooLong { chars });
    }
    if let Some(ch) = invalid_char(name) {
        return Err(NameError::InvalidChar { ch });
    }
    if name.detect_restriction_level() > RestrictionLevel::ModeratelyRestrictive {
        return Err(NameError::MixedScripts);
    }
    if is_reserved(name) {
        return Err(NameError::Reserved {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// The first character that may not be in a name (or start one), if any. Room names follow the
/// same rule.
pub fn invalid_char(name: &str) -> Option<char> {
    let mut chars = name.chars();
    let first = chars.next()?;
    let starts = unicode_ident::is_xid_start(first) || first.is_numeric();
    if !(allowed(first) && (starts || matches!(first, '_' | '-' | '.'))) {
        return Some(first);
    }
    chars.find(|&c| !allowed(c))
}

fn allowed(c: char) -> bool {
    matches!(c, '-' | '.') || (unicode_ident::is_xid_continue(c) && c.identifier_allowed())
}

/// True when `name` is, or looks like, a reserved name.
pub fn is_reserved(name: &str) -> bool {
    static KEYS: OnceLock<Vec<String>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| RESERVED.iter().map(|r| key(r)).collect());
    keys.contains(&key(name))
}

/// The form under which names are the same name: NFKC, case-folded, then reduced to its TR39
/// confusable skeleton. Not for display: `boss` becomes `boss`, but `m` becomes `rn`.
pub fn key(name: &str) -> String {
    let folded = fold(&name.nfkc().collect::<String>());
    fold(&unicode_security::skeleton(&folded).collect::<String>())
}

/// Case folding only: for sorting names and for filters typed by an administrator, where
/// `boss` should not find `b0ss`.
pub fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// `'x' (U+0078)`, or just the code point for what cannot be shown safely.
fn describe(ch: char) -> String {
    if ch.is_control() || ch.is_whitespace() || !ch.identifier_allowed() {
        format!("U+{:04X}", ch as u32)
    } else {
        format!("'{ch}' (U+{:04X})", ch as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_share_a_key() {
        for spoof in ["BOSS", "bоss", "b0ss", "Boss"] {
            assert_eq!(key(spoof), key("boss"), "{spoof}");
        }
        assert_ne!(key("bass"), key("boss"));
        assert_eq!(key("arn"), key("am"), "rn looks like m");
        assert_eq!(key("I1l"), key("ill"));
    }

    #[test]
    fn reserved_names_and_their_look_alikes_are_refused() {
        // "ѕуѕор" is all Cyrillic: one script, but it reads "sysop".
        for name in ["admin", "ADMIN", "ѕуѕор", "r00t", "SYSOP"] {
            assert!(
                matches!(validate(name), Err(NameError::Reserved { .. })),
                "{name}: {:?}",
                validate(name)
            );
        }
        assert!(validate("аdmin").is_err(), "Cyrillic а in a Latin name");
        assert_eq!(validate("admins"), Ok(()));
    }

    #[test]
    fn invisible_compatibility_and_mixed_names_are_refused() {
        let invalid = |name: &str| matches!(validate(name), Err(NameError::InvalidChar { .. }));
        assert!(invalid("\u{3164}"), "HANGUL FILLER");
        assert!(
            invalid("\u{FFA0}\u{FFA0}\u{FFA0}"),
            "HALFWIDTH HANGUL FILLER"
        );
        assert!(invalid("a\u{200D}b"), "ZERO WIDTH JOINER");
        assert!(invalid("ｂｏｓｓ"), "fullwidth");
        assert!(invalid("𝐛𝐨𝐬𝐬"), "mathematical bold");
        assert!(invalid("ſerver"), "long s");
        assert!(invalid("a b") && invalid("a:b") && invalid("a'b"));
        assert!(invalid("\u{94D}ab"), "a combining mark cannot start a name");
        assert_eq!(validate("bоss"), Err(NameError::MixedScripts));
        assert_eq!(validate(""), Err(NameError::Empty));
        assert_eq!(
            validate(&"x".repeat(33)),
            Err(NameError::TooLong { chars: 33 })
        );
    }

    #[test]
    fn names_in_other_scripts_are_welcome() {
        for name in [
            "नमस्ते",
            "தமிழ்",
            "Jürgen",
            "山田太郎",
            "やまだ",
            "Ελένη",
            "Наташа",
            "a.b-c_d",
            "_x",
            "2fast",
        ] {
            assert_eq!(validate(name), Ok(()), "{name}");
        }
    }
}
