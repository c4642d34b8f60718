//! [`Tokenizer`]: how a text table splits its texts into searchable terms.

use kvault::{Error, Result};

/// The tokenizer of a text table, fixed when the table is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tokenizer {
    /// Unicode words, case-folded, diacritics removed (`café` matches `cafe`): FTS5's
    /// `unicode61 remove_diacritics 2`.
    #[default]
    Unicode61,
    /// As [`Tokenizer::Unicode61`], then English words reduced to their stem (`running` matches
    /// `runs`): `porter unicode61 remove_diacritics 2`.
    Porter,
    /// Every three-character sequence, case-folded and without diacritics: substring search
    /// (any three or more characters of a word) and, with [`crate::QueryMode::Any`],
    /// typo-tolerant ranking by shared trigrams. FTS5's `trigram remove_diacritics 1`.
    Trigram,
}

impl Tokenizer {
    /// Parses `"unicode61"`, `"porter"` or `"trigram"`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for anything else.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "unicode61" => Ok(Self::Unicode61),
            "porter" => Ok(Self::Porter),
            "trigram" => Ok(Self::Trigram),
            _ => Err(Error::InvalidArgument(format!(
                "unknown tokenizer {text:?}: use 'unicode61', 'porter' or 'trigram'"
            ))),
        }
    }

    /// The name stored in the registry.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Unicode61 => "unicode61",
            Self::Porter => "porter",
            Self::Trigram => "trigram",
        }
    }

    /// The FTS5 `tokenize=` argument.
    #[must_use]
    pub fn fts5_spec(self) -> &'static str {
        match self {
            Self::Unicode61 => "unicode61 remove_diacritics 2",
            Self::Porter => "porter unicode61 remove_diacritics 2",
            Self::Trigram => "trigram remove_diacritics 1",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for t in [Tokenizer::Unicode61, Tokenizer::Porter, Tokenizer::Trigram] {
            assert_eq!(Tokenizer::parse(t.name()).unwrap(), t);
        }
        assert!(Tokenizer::parse("Porter").is_err());
        assert!(Tokenizer::parse("").is_err());
    }
}
