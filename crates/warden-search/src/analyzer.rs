//! How `message` is cut into words. Log text is full of addresses, paths
//! and dotted names that analysts search whole (`10.0.0.5`, `/etc/passwd`,
//! `malware.exe`) or by part (`passwd`, `exe`); each word is indexed whole
//! and, when it has inner punctuation, also by its parts at the same
//! position, the way Elasticsearch's word delimiter keeps the original.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Longest word indexed, in bytes; longer ones are skipped (base64 blobs).
const MAX_WORD_BYTES: usize = 255;

/// The analyzer's name in the index's tokenizer registry.
pub const MESSAGE_ANALYZER: &str = "warden_message";

fn separates_words(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '"' | '\''
                | '('
                | ')'
                | '['
                | ']'
                | '{'
                | '}'
                | '<'
                | '>'
                | ','
                | ';'
                | '|'
                | '='
                | '!'
                | '?'
                | '`'
        )
}

fn separates_parts(c: char) -> bool {
    matches!(
        c,
        '.' | '/' | ':' | '-' | '_' | '@' | '\\' | '+' | '#' | '$' | '%' | '&' | '*' | '~'
    )
}

/// Sentence punctuation around a word (`root.`, `user:`) is not part of it.
fn trimmed(c: char) -> bool {
    matches!(c, '.' | ':' | '-' | '*' | '~' | '#')
}

/// Whole words of `text`, lowercased, with their byte offsets.
pub fn words(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        if separates_words(c) {
            if let Some(s) = start.take() {
                let raw: &str = &text[s..i];
                let lead = raw.len() - raw.trim_start_matches(trimmed).len();
                let word = raw.trim_matches(trimmed);
                if !word.is_empty() && word.len() <= MAX_WORD_BYTES {
                    let from = s + lead;
                    out.push((from, from + word.len(), word.to_lowercase()));
                }
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    out
}

/// The parts of a word between inner punctuation, when it has any.
pub fn parts(word: &str) -> Vec<&str> {
    if !word.contains(separates_parts) {
        return Vec::new();
    }
    word.split(separates_parts)
        .filter(|p| !p.is_empty())
        .collect()
}

#[derive(Clone, Default)]
pub struct MessageAnalyzer;

pub struct MessageTokens {
    tokens: Vec<Token>,
    next: usize,
}

impl Tokenizer for MessageAnalyzer {
    type TokenStream<'a> = MessageTokens;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> MessageTokens {
        let mut tokens = Vec::new();
        for (position, (from, to, word)) in words(text).into_iter().enumerate() {
            for part in parts(&word) {
                if part.len() < word.len() {
                    tokens.push(Token {
                        offset_from: from,
                        offset_to: to,
                        position,
                        text: part.to_string(),
                        position_length: 1,
                    });
                }
            }
            tokens.push(Token {
                offset_from: from,
                offset_to: to,
                position,
                text: word,
                position_length: 1,
            });
        }
        MessageTokens { tokens, next: 0 }
    }
}

impl TokenStream for MessageTokens {
    fn advance(&mut self) -> bool {
        if self.next < self.tokens.len() {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<(usize, String)> {
        let mut analyzer = MessageAnalyzer;
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push((stream.token().position, stream.token().text.clone()));
        }
        out
    }

    #[test]
    fn words_are_kept_whole_and_by_part() {
        let got = texts("Failed password for root from 10.0.0.5: see /etc/passwd.");
        let words: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
        for w in [
            "failed",
            "root",
            "10.0.0.5",
            "10",
            "5",
            "/etc/passwd",
            "etc",
            "passwd",
        ] {
            assert!(words.contains(&w), "{w} in {words:?}");
        }
        let pos = |w: &str| got.iter().find(|(_, t)| t == w).unwrap().0;
        assert_eq!(pos("etc"), pos("/etc/passwd"));
        assert_eq!(pos("from") + 1, pos("10.0.0.5"));
    }

    #[test]
    fn separators_split_words() {
        let got: Vec<String> = texts("user=Root,uid=0 \"quoted\"")
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(got, vec!["user", "root", "uid", "0", "quoted"]);
    }
}
