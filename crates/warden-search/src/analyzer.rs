//! How `message` is cut into words. Log text is full of addresses, paths
//! and dotted names that analysts search whole (`10.0.0.5`, `/etc/passwd`,
//! `malware.exe`), by a piece (`evil.sh` in `/tmp/evil.sh`,
//! `evil.example.com` in a URL, `10.0.0.5` in `10.0.0.5:8080`) or by part
//! (`passwd`, `exe`). A word with inner punctuation takes one position per
//! part, so that `"etc passwd"` is a phrase of `/etc/passwd`; the whole
//! word is indexed at its first part's position, and each piece (the word
//! cut at `/`, `\`, `:`, `@` and the like, keeping dotted and dashed names
//! together) at its own first part's, the way Elasticsearch's word
//! delimiter keeps the original. A query is cut the same way, so a phrase
//! of whole words skips the positions its words' parts take.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Longest term indexed, in bytes: a longer word (a base64 blob, a URL
/// with a long query string) is not indexed whole, but its pieces and
/// parts that fit are.
const MAX_WORD_BYTES: usize = 255;

/// The analyzer's name in the index's tokenizer registry.
pub const MESSAGE_ANALYZER: &str = "warden_message";

/// Cuts text into words (and a wildcard term, `size=5*`, into the words
/// it spans).
pub fn separates_words(c: char) -> bool {
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

/// Cuts a word into the pieces analysts name on their own: file, host
/// and dotted names stay together (`.`, `-` and `_` do not cut).
pub fn separates_pieces(c: char) -> bool {
    separates_parts(c) && !matches!(c, '.' | '-' | '_')
}

/// Sentence punctuation around a word (`root.`, `user:`) is not part of it.
pub fn trimmed(c: char) -> bool {
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
                if !word.is_empty() {
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

/// Non-empty runs of `word` between characters `cut` holds, with the byte
/// where each starts.
fn runs(word: &str, cut: fn(char) -> bool) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in word
        .char_indices()
        .chain(std::iter::once((word.len(), '/')))
    {
        if i == word.len() || cut(c) {
            if i > start {
                out.push((start, &word[start..i]));
            }
            start = i + c.len_utf8();
        }
    }
    out
}

/// Emits what one word indexes, in position order: each term with its
/// position relative to the word's first; returns how many positions the
/// word takes (one per part, at least one). A piece sits at the position
/// of the part it starts with.
pub fn word_terms(word: String, emit: impl FnMut(usize, String)) -> usize {
    let mut emit = fitting(emit);
    if !word.contains(separates_parts) {
        emit(0, word);
        return 1;
    }
    let parts = runs(&word, separates_parts);
    // Pieces that are more than one part and less than the word.
    let mut pieces = runs(&word, separates_pieces)
        .into_iter()
        .filter(|(_, piece)| piece.contains(separates_parts) && piece.len() < word.len())
        .peekable();
    emit(0, word.clone());
    for (position, (_, part)) in parts.iter().enumerate() {
        let next_part = parts
            .get(position + 1)
            .map_or(word.len(), |(next, _)| *next);
        while let Some((_, piece)) = pieces.next_if(|(start, _)| *start < next_part) {
            emit(position, piece.to_string());
        }
        emit(position, part.to_string());
    }
    parts.len().max(1)
}

/// `emit`, passing over terms too long to index.
fn fitting(mut emit: impl FnMut(usize, String)) -> impl FnMut(usize, String) {
    move |position, term: String| {
        if term.len() <= MAX_WORD_BYTES {
            emit(position, term)
        }
    }
}

/// How many positions a word takes: one per part, at least one.
pub fn word_span(word: &str) -> usize {
    runs(word, separates_parts).len().max(1)
}

/// A word's parts, in order, when it has several (`example.com`,
/// `10.0.0`): such a word may be a run of parts inside a longer indexed
/// word (`evil.example.com`, `10.0.0.5`), which its parts, following each
/// other, find. `None` for a word of one part.
pub fn parts_of(word: &str) -> Option<Vec<String>> {
    let parts = runs(word, separates_parts);
    (parts.len() > 1).then(|| parts.into_iter().map(|(_, p)| p.to_string()).collect())
}

/// A word's parts, in order, when it has several pieces (`etc/passwd`,
/// `evil.example.com/payload.bin`): such a word may be a run of pieces
/// inside a longer indexed word (`/etc/passwd`, a URL), which its parts,
/// following each other, find. `None` for a word of one piece.
pub fn parts_across_pieces(word: &str) -> Option<Vec<String>> {
    word.contains(|c: char| separates_pieces(c)).then(|| {
        runs(word, separates_parts)
            .into_iter()
            .map(|(_, part)| part.to_string())
            .collect()
    })
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
        let mut position = 0;
        for (from, to, word) in words(text) {
            position += word_terms(word, |offset, term| {
                tokens.push(Token {
                    offset_from: from,
                    offset_to: to,
                    position: position + offset,
                    text: term,
                    position_length: 1,
                })
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
        assert_eq!(pos("passwd"), pos("etc") + 1, "parts follow each other");
        assert_eq!(pos("from") + 1, pos("10.0.0.5"));
        assert_eq!(
            pos("see"),
            pos("10.0.0.5") + 4,
            "10.0.0.5 takes 4 positions"
        );
    }

    #[test]
    fn pieces_of_paths_urls_and_addresses_are_words_too() {
        let got = texts(
            "spawned /tmp/evil.sh; GET https://evil.example.com/payload.bin from \
             192.168.1.10:8080 via C:\\Windows\\System32\\cmd.exe as bob@corp-mail.example",
        );
        let pos = |w: &str| {
            got.iter()
                .find(|(_, t)| t == w)
                .unwrap_or_else(|| panic!("{w} in {got:?}"))
                .0
        };
        for (piece, first_part) in [
            ("evil.sh", "evil"),
            ("evil.example.com", "evil"),
            ("payload.bin", "payload"),
            ("192.168.1.10", "192"),
            ("cmd.exe", "cmd"),
            ("corp-mail.example", "corp"),
        ] {
            assert!(
                got.iter()
                    .any(|(p, t)| t == piece && got.contains(&(*p, first_part.to_string()))),
                "{piece} at {first_part}'s position in {got:?}"
            );
        }
        assert_eq!(pos("8080"), pos("192") + 4);
        assert!(
            got.windows(2).all(|w| w[0].0 <= w[1].0),
            "tokens in position order: {got:?}"
        );
        // A word without pieces is not repeated.
        assert_eq!(got.iter().filter(|(_, t)| t == "spawned").count(), 1);
        assert_eq!(got.iter().filter(|(_, t)| t == "tmp").count(), 1);
    }

    #[test]
    fn a_long_word_keeps_its_pieces_and_parts() {
        let url = format!(
            "https://evil2.example.com/{}/payload2.bin?x=1",
            "a".repeat(300)
        );
        let got = texts(&format!("GET {url} 200"));
        let has = |w: &str| got.iter().any(|(_, t)| t == w);
        assert!(!has(&url.to_lowercase()), "the whole word is too long");
        assert!(has("evil2.example.com") && has("payload2.bin") && has("https"));
        assert!(!got.iter().any(|(_, t)| t.len() > MAX_WORD_BYTES));
        let pos = |w: &str| got.iter().find(|(_, t)| t == w).unwrap().0;
        assert_eq!(pos("https") + 1, pos("evil2"));
        assert_eq!(pos("get") + 1, pos("https"));
        assert_eq!(
            parts_across_pieces("etc/passwd"),
            Some(vec!["etc".to_string(), "passwd".to_string()])
        );
        assert_eq!(parts_across_pieces("evil.sh"), None);
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
