//! From what the user typed to an FTS5 query: [`QueryMode`] says whether the input is plain
//! words (quoted here, so no input is ever FTS5 syntax) or FTS5 syntax passed through; a
//! malformed FTS5 query becomes [`Error::InvalidArgument`].

use std::collections::HashSet;

use kvault::{Error, Result};
use rusqlite::ErrorCode;

use crate::tokenizer::Tokenizer;

/// How a search turns its input into an FTS5 query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueryMode {
    /// Plain words; a document must hold every one. Each whitespace-separated word is quoted,
    /// so operators, quotes, `*`, `^`, `:`, parentheses and `NEAR` are only text. A word
    /// joined by punctuation (`e-mail`, `test@example.com`) must appear as that sequence.
    #[default]
    All,
    /// Plain words; a document needs any one, and BM25 ranks those with more (and rarer)
    /// words first. In a trigram table every word is broken into its trigrams, so a word with
    /// a typo still finds the documents sharing most of its trigrams.
    Any,
    /// The whole input as one phrase: its words adjacent and in order (kohakuvault's
    /// escaping).
    Phrase,
    /// FTS5 query syntax, passed through (`AND`, `OR`, `NOT`, `NEAR`, `"phrases"`, `prefix*`,
    /// `column:`, `^`); a malformed query is an [`Error::InvalidArgument`].
    Raw,
}

impl QueryMode {
    /// Parses `"all"`, `"any"`, `"phrase"` or `"raw"`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for anything else.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "all" => Ok(Self::All),
            "any" => Ok(Self::Any),
            "phrase" => Ok(Self::Phrase),
            "raw" => Ok(Self::Raw),
            _ => Err(Error::InvalidArgument(format!(
                "unknown query mode {text:?}: use 'all', 'any', 'phrase' or 'raw'"
            ))),
        }
    }
}

/// A quoted FTS5 string: the text between double quotes, inner quotes doubled. NUL, which
/// would end the query text early inside SQLite, becomes a space.
fn quoted(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        match c {
            '"' => out.push_str("\"\""),
            '\0' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The trigrams of `word` (itself when shorter), as the trigram tokenizer forms them.
fn trigrams(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    if chars.len() <= 3 {
        return vec![word.to_string()];
    }
    chars.windows(3).map(|w| w.iter().collect()).collect()
}

/// The FTS5 query for `input` under `mode`; `None` when the input has no words (the search
/// then finds nothing).
#[must_use]
pub fn fts5_query(input: &str, mode: QueryMode, tokenizer: Tokenizer) -> Option<String> {
    let words: Vec<&str> = input
        .split(|c: char| c.is_whitespace() || c == '\0')
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return None;
    }
    Some(match mode {
        QueryMode::Raw => input.to_string(),
        QueryMode::Phrase => quoted(&words.join(" ")),
        QueryMode::All => words
            .iter()
            .map(|w| quoted(w))
            .collect::<Vec<_>>()
            .join(" "),
        QueryMode::Any => {
            let mut seen = HashSet::new();
            let terms: Vec<String> = if tokenizer == Tokenizer::Trigram {
                words.iter().flat_map(|w| trigrams(w)).collect()
            } else {
                words.iter().map(|w| (*w).to_string()).collect()
            };
            terms
                .into_iter()
                .filter(|t| seen.insert(t.to_lowercase()))
                .map(|t| quoted(&t))
                .collect::<Vec<_>>()
                .join(" OR ")
        }
    })
}

/// An error while running a statement that matches `query`: SQLite's generic error there
/// is FTS5 refusing the query (syntax, unknown column, ...), the caller's mistake.
pub(crate) fn query_error(err: rusqlite::Error, query: &str) -> Error {
    if err.sqlite_error_code() == Some(ErrorCode::Unknown) {
        let detail = match &err {
            rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
            other => other.to_string(),
        };
        return Error::InvalidArgument(format!("malformed full-text query {query:?}: {detail}"));
    }
    Error::from(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_are_quoted() {
        let q = |s: &str, m| fts5_query(s, m, Tokenizer::Unicode61);
        assert_eq!(q("a b", QueryMode::All).unwrap(), "\"a\" \"b\"");
        assert_eq!(
            q("say \"hi\" OR", QueryMode::All).unwrap(),
            "\"say\" \"\"\"hi\"\"\" \"OR\""
        );
        assert_eq!(q(" a  b ", QueryMode::Phrase).unwrap(), "\"a b\"");
        assert_eq!(q("a b a", QueryMode::Any).unwrap(), "\"a\" OR \"b\"");
        assert_eq!(q("x\0y", QueryMode::All).unwrap(), "\"x\" \"y\"");
        assert_eq!(q("NEAR(a b)", QueryMode::Raw).unwrap(), "NEAR(a b)");
        assert!(q(" \t\n", QueryMode::All).is_none());
        assert!(q("", QueryMode::Raw).is_none());
    }

    #[test]
    fn trigram_any_breaks_words_into_trigrams() {
        let q = fts5_query("Helo", QueryMode::Any, Tokenizer::Trigram).unwrap();
        assert_eq!(q, "\"Hel\" OR \"elo\"");
        let short = fts5_query("ab", QueryMode::Any, Tokenizer::Trigram).unwrap();
        assert_eq!(short, "\"ab\"");
    }

    #[test]
    fn modes_parse() {
        assert_eq!(QueryMode::parse("any").unwrap(), QueryMode::Any);
        assert!(QueryMode::parse("ALL").is_err());
    }
}
