//! Names: what a person's name may be, and when two names are the same name.
//!
//! A name tells everyone who is speaking, so two names that *look* alike must be one name.
//! Names are compared by two keys ([`key`], [`upper_key`]) and are the same name when either
//! matches ([`same`]). Both start from NFKC, drop the accents of Latin, Greek and Cyrillic
//! letters and the `_ - .` a name may hold, and end in the confusable skeleton of Unicode TR39;
//! one folds case before the skeleton, the other after, since some look-alikes exist only in
//! lower case (`bоss`, with a Cyrillic о) and some only in upper case (`Ian` and `lan`, `ТОМ`
//! in Cyrillic and `TOM`). So `boss`, `BOSS`, `b0ss`, `bоss`, `boss.`, `bóss` and `𝐛𝐨𝐬𝐬` are one
//! name, and whoever holds one holds them all: the accounts, the bans, the reserved names and
//! the names in use are all looked up this way.
//!
//! What a name may hold ([`validate`]): characters that TR39's General Security Profile allows
//! in identifiers and that may continue an identifier (letters, digits and the combining marks
//! of scripts such as Devanagari and Tamil), plus `-` and `.`; so nothing invisible or
//! default-ignorable (U+3164 HANGUL FILLER, U+200D ZERO WIDTH JOINER), no compatibility forms
//! (fullwidth or mathematical letters), and no mix of scripts that is a classic spoof (Latin with
//! Cyrillic or Greek): at most TR39's "moderately restrictive" level.
//!
//! This module depends on nothing else in the crate: protocol, accounts and bans use it.

use std::collections::HashMap;
use std::fmt;

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
    // IRC's services and their staff: IRC clients send passwords to NickServ by habit.
    "nickserv",
    "chanserv",
    "memoserv",
    "operserv",
    "hostserv",
    "botserv",
    "saslserv",
    "services",
    "global",
    "irc",
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
    /// Only `_`, `-` and `.`.
    NoLetter,
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
            NameError::NoLetter => write!(f, "a name needs at least one letter or digit"),
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

/// Checks a name: 1 to 32 allowed characters, at least one a letter or digit, at most two
/// combining marks in a row, one script, not (like) a reserved name.
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
    if !name.chars().any(char::is_alphanumeric) {
        return Err(NameError::NoLetter);
    }
    if let Some(ch) = stacked_mark(name) {
        return Err(NameError::InvalidChar { ch });
    }
    if name.detect_restriction_level() > RestrictionLevel::ModeratelyRestrictive {
        return Err(NameError::MixedScripts);
    }
    // `plain` here, not inside the key functions: called from this frame it is the shallowest
    // it can be, and a connection's first name is the deepest its stack goes.
    if reserved_plain(&plain(name)) {
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

/// The third combining mark in a row, if there is one: marks stacked on one letter spill over
/// the lines around it on a terminal (and no script needs three).
fn stacked_mark(name: &str) -> Option<char> {
    let mut run = 0;
    for c in name.chars() {
        if unicode_normalization::char::is_combining_mark(c) {
            run += 1;
            if run > 2 {
                return Some(c);
            }
        } else {
            run = 0;
        }
    }
    None
}

/// Whether a name already made [`plain`] is one of the reserved names (or looks like one).
/// The reserved names' keys are made once.
fn reserved_plain(plain: &str) -> bool {
    static KEYS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| RESERVED.iter().map(|r| (key(r), upper_key(r))).collect());
    let (k, u) = (key_of_plain(plain), upper_key_of_plain(plain));
    keys.iter().any(|(rk, ru)| *rk == k || *ru == u)
}

/// Whether two names are the same name: either key matches.
pub fn same(a: &str, b: &str) -> bool {
    key(a) == key(b) || upper_key(a) == upper_key(b)
}

/// The first key under which names are the same name: case folded, then reduced to its TR39
/// confusable skeleton. Not for display: `boss` becomes `boss`, but `m` becomes `rn`.
pub fn key(name: &str) -> String {
    key_of_plain(&plain(name))
}

fn key_of_plain(plain: &str) -> String {
    let folded = fold(plain);
    fold(&unicode_security::skeleton(&folded).collect::<String>())
}

/// Both keys of a name (one, when they agree): two names are one when any key matches, so a
/// claim on a name (the cluster's) holds both.
pub fn keys(name: &str) -> Vec<String> {
    let (a, b) = (key(name), upper_key(name));
    if a == b { vec![a] } else { vec![a, b] }
}

/// The second key: the name in capitals, then its skeleton, then case folding, for the
/// look-alikes that exist only in upper case (`I` and `l`; Cyrillic and Greek capitals).
/// Capitals first, because a name is the same name in any case: `ADMlN` (a small L) looks like
/// `ADMIN`, which is `admin`; `MlKE` and `M1KE` look like `MIKE`, which is `Mike`.
pub fn upper_key(name: &str) -> String {
    upper_key_of_plain(&plain(name))
}

fn upper_key_of_plain(plain: &str) -> String {
    let skeleton = |s: &str| fold(&unicode_security::skeleton(s).collect::<String>());
    // Twice: the first maps capitals to what they look like (`Ѕ` to `S`, `I` to `l`), the
    // second what those look like in lower case (`m` to `rn`, as the first key has it).
    skeleton(&skeleton(&plain.to_uppercase()))
}

/// The name as both keys start from: NFKC, without the accents of Latin, Greek and Cyrillic
/// letters (a dot below is easy to miss; the marks of other scripts are letters of their own)
/// and without `_`, `-` and `.`.
fn plain(name: &str) -> String {
    use unicode_script::{Script, UnicodeScript};
    // Sized up front (NFKC of a name rarely triples it): growing a string by reallocation is
    // the deepest point of a connection's stack, and a page of stack for every connection.
    let mut nfkc = String::with_capacity(name.len() * 3);
    nfkc.extend(name.nfkc());
    let mut out = String::with_capacity(nfkc.len() * 2);
    let mut base = Script::Common;
    for c in nfkc.nfd() {
        if unicode_normalization::char::is_combining_mark(c) {
            if matches!(base, Script::Latin | Script::Greek | Script::Cyrillic) {
                continue;
            }
        } else {
            base = c.script();
        }
        if !matches!(c, '_' | '-' | '.') {
            out.push(c);
        }
    }
    let mut composed = String::with_capacity(out.len());
    composed.extend(out.nfc());
    composed
}

/// Case folding only: for sorting names and for filters typed by an administrator, where
/// `boss` should not find `b0ss`.
pub fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// A map from names to values in which look-alike names are one name: a lookup finds the
/// entry whose name is [`same`] as the one asked for. What the names in use, the accounts and
/// the mutes are kept in.
#[derive(Debug, Clone)]
pub struct NameMap<V> {
    /// By [`key`]: the [`upper_key`] of the name stored, and the value.
    by_key: HashMap<String, (String, V)>,
    /// [`upper_key`] to [`key`].
    upper: HashMap<String, String>,
}

impl<V> Default for NameMap<V> {
    fn default() -> NameMap<V> {
        NameMap {
            by_key: HashMap::new(),
            upper: HashMap::new(),
        }
    }
}

impl<V> NameMap<V> {
    /// The key of the entry `name` is the same name as, if any.
    fn find(&self, name: &str) -> Option<String> {
        let k = key(name);
        if self.by_key.contains_key(&k) {
            return Some(k);
        }
        self.upper.get(&upper_key(name)).cloned()
    }

    pub fn get(&self, name: &str) -> Option<&V> {
        self.find(name)
            .and_then(|k| self.by_key.get(&k))
            .map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        let k = self.find(name)?;
        self.by_key.get_mut(&k).map(|(_, v)| v)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// Stores `value` under `name`, replacing (and returning) the entry of the same name.
    pub fn insert(&mut self, name: &str, value: V) -> Option<V> {
        let old = self.remove(name);
        let (k, u) = (key(name), upper_key(name));
        self.upper.insert(u.clone(), k.clone());
        self.by_key.insert(k, (u, value));
        old
    }

    pub fn remove(&mut self, name: &str) -> Option<V> {
        let k = self.find(name)?;
        let (u, v) = self.by_key.remove(&k)?;
        self.upper.remove(&u);
        Some(v)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.by_key.values().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.by_key.values_mut().map(|(_, v)| v)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let upper = &mut self.upper;
        self.by_key.retain(|_, (u, v)| {
            let kept = keep(v);
            if !kept {
                upper.remove(u);
            }
            kept
        });
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn clear(&mut self) {
        self.by_key.clear();
        self.upper.clear();
    }
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
    fn look_alikes_are_the_same_name() {
        for spoof in [
            "BOSS",
            "bоss",
            "b0ss",
            "Boss",
            "boss.",
            "b.o.s.s",
            "_boss",
            "bóss",
            "bos\u{0323}s",
        ] {
            assert!(same(spoof, "boss"), "{spoof}");
        }
        assert!(!same("bass", "boss"));
        assert!(same("arn", "am"), "rn looks like m");
        assert!(same("I1l", "ill"));
        // Look-alikes that exist only in upper case.
        for (a, b) in [
            ("Ian", "lan"),
            ("AI", "Al"),
            ("BiII", "Bill"),
            ("ЅУЅТЕМ", "SYSTEM"),
            ("ТОМ", "TOM"),
            ("ВОВ", "BOB"),
            ("ΚΑΤΕ", "KATE"),
        ] {
            assert!(same(a, b), "{a} {b}");
        }
        // The accents of other scripts are letters of their own.
        assert!(!same("नमस्ते", "नमसत"));
    }

    #[test]
    fn upper_case_look_alikes_of_any_case_are_the_same_name() {
        // A small L (or a 1) among capitals reads as a capital I: the name in capitals.
        for (spoof, name) in [
            ("ADMlN", "admin"),
            ("ADMlN", "Admin"),
            ("MlKE", "Mike"),
            ("M1KE", "Mike"),
            ("MlKE", "mike"),
            ("BlLL", "bill"),
            ("lVY", "ivy"),
        ] {
            assert!(same(spoof, name), "{spoof} {name}");
            assert!(same(name, spoof), "{name} {spoof}");
        }
        for name in ["ADMlN", "AdMlN", "ADM1N", "SYSTEM", "R00T", "MODERAT0R"] {
            assert!(
                matches!(validate(name), Err(NameError::Reserved { .. })),
                "{name}: {:?}",
                validate(name)
            );
        }
        let mut m = NameMap::default();
        m.insert("Mike", 1);
        assert_eq!(m.get("MlKE"), Some(&1));
        assert_eq!(m.get("M1KE"), Some(&1));
        // Names that differ in capitals too are still two.
        assert!(!same("mike", "make") && !same("MIKE", "MAKE"));
        assert!(!same("bob", "rob"));
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
        for name in ["ЅУЅТЕМ", "admin.", "root_", "ѕуѕtem", "everyone\u{0323}"] {
            assert!(validate(name).is_err(), "{name}");
        }
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
        assert_eq!(validate("..."), Err(NameError::NoLetter));
        assert!(
            invalid(&format!("a{}", "\u{0300}".repeat(3))),
            "stacked marks"
        );
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

    #[test]
    fn a_name_map_finds_look_alikes_by_either_key() {
        let mut m = NameMap::default();
        assert_eq!(m.insert("Bill", 1), None);
        assert_eq!(m.get("BILL"), Some(&1));
        assert_eq!(m.get("BiII"), Some(&1), "capital I for l");
        assert_eq!(m.get("bi11"), Some(&1));
        assert_eq!(m.insert("bill.", 2), Some(1), "the same name, replaced");
        assert_eq!(m.len(), 1);
        assert_eq!(m.remove("BILL"), Some(2));
        assert!(m.is_empty() && m.upper.is_empty());
        m.insert("ann", 3);
        m.insert("bob", 4);
        m.retain(|v| *v != 3);
        assert!(!m.contains("ann") && m.contains("B0B"));
        assert_eq!(m.upper.len(), 1);
    }
}
