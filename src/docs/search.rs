//! Full-text search over the docs: every page's sections (the text under
//! each heading) scored against the query's words, best section per page,
//! with a snippet around the first match and the matched words marked.
//!
//! Scoring, per section: each query word found as a word prefix counts 1
//! per occurrence in the text (at most 5), 6 in the section's heading and 10
//! in the page's title; a section holding every word gets 12 more, and the
//! whole query as a phrase 20 more. Small and in memory: the docs are tens
//! of pages, rebuilt with the library when a file changes.

use super::highlight::escape;

/// What is searched: one section of one page.
#[derive(Clone, Debug)]
pub struct Entry {
    pub slug: String,
    pub title: String,
    pub anchor: String,
    pub heading: String,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub slug: String,
    pub title: String,
    /// The section's anchor ("" for the page's top).
    pub anchor: String,
    pub heading: String,
    /// Escaped text with the matched words in `<mark>`.
    pub snippet_html: String,
    pub score: u32,
}

/// The most of a query that is read (characters), the most words it is
/// split into (counting the parts of a word with `_`), and the longest word:
/// a query's work is bounded whatever is typed or sent.
pub const MAX_QUERY_CHARS: usize = 200;
pub const MAX_WORDS: usize = 8;
pub const MAX_WORD_CHARS: usize = 40;

/// At most `MAX_QUERY_CHARS` of the query.
pub fn bounded(query: &str) -> &str {
    match query.char_indices().nth(MAX_QUERY_CHARS) {
        Some((i, _)) => &query[..i],
        None => query,
    }
}

/// The words of a query: lowercase, letters and digits (and `_`, so codes
/// such as `insufficient_credits` are one word and also found as two); at
/// most `MAX_WORDS` of them after splitting, each at most `MAX_WORD_CHARS`.
pub fn words(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let push = |out: &mut Vec<String>, w: String| {
        if out.len() < MAX_WORDS && !out.contains(&w) {
            out.push(w);
        }
    };
    for w in bounded(query).split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()) {
        let w: String = w.to_lowercase().chars().take(MAX_WORD_CHARS).collect();
        push(&mut out, w.clone());
        if w.contains('_') {
            for part in w.split('_').filter(|p| !p.is_empty()) {
                push(&mut out, part.to_string());
            }
        }
        if out.len() >= MAX_WORDS {
            break;
        }
    }
    out.sort();
    out
}

/// Byte ranges of `text` where a word of the text starts with one of `words`
/// (case-insensitively).
fn matches(text: &str, words: &[String]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // Lowercasing can change a character's length (İ, the Kelvin sign):
    // match only where every character keeps its length, so offsets in the
    // lowercase text are offsets in the original.
    if text.chars().any(|c| c.to_lowercase().map(char::len_utf8).sum::<usize>() != c.len_utf8()) {
        return out;
    }
    let lower = text.to_lowercase();
    let mut prev: Option<char> = None;
    let mut skip_to = 0;
    for (i, c) in lower.char_indices() {
        let starts_word = !prev.is_some_and(|p| p.is_alphanumeric()) && c.is_alphanumeric();
        prev = Some(c);
        if i < skip_to || !starts_word {
            continue;
        }
        if let Some(w) = words.iter().filter(|w| lower[i..].starts_with(w.as_str())).max_by_key(|w| w.len()) {
            out.push((i, i + w.len()));
            skip_to = i + w.len();
        }
    }
    out
}

fn count(text: &str, word: &str) -> u32 {
    matches(text, std::slice::from_ref(&word.to_string())).len() as u32
}

/// The best sections for `query`, one per page, best first, at most `limit`.
pub fn search(entries: &[Entry], query: &str, limit: usize) -> Vec<Hit> {
    let words = words(query);
    if words.is_empty() {
        return Vec::new();
    }
    let phrase = bounded(query).trim().to_lowercase();
    let mut best: Vec<Hit> = Vec::new();
    for e in entries {
        let mut score = 0;
        let mut all = true;
        for w in &words {
            let in_text = count(&e.text, w).min(5);
            let in_heading = count(&e.heading, w);
            let in_title = count(&e.title, w);
            if in_text + in_heading + in_title == 0 {
                all = false;
            }
            score += in_text + 6 * in_heading.min(1) + 10 * in_title.min(1);
        }
        if score == 0 {
            continue;
        }
        if all {
            score += 12;
        }
        if phrase.contains(' ') && (e.text.to_lowercase().contains(&phrase) || e.heading.to_lowercase().contains(&phrase) || e.title.to_lowercase().contains(&phrase)) {
            score += 20;
        }
        match best.iter_mut().find(|h| h.slug == e.slug) {
            Some(h) if h.score >= score => {}
            Some(h) => *h = hit(e, &words, score),
            None => best.push(hit(e, &words, score)),
        }
    }
    best.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.title.cmp(&b.title)));
    best.truncate(limit);
    best
}

fn hit(e: &Entry, words: &[String], score: u32) -> Hit {
    Hit {
        slug: e.slug.clone(),
        title: e.title.clone(),
        anchor: e.anchor.clone(),
        heading: e.heading.clone(),
        snippet_html: snippet(&e.text, words, 180),
        score,
    }
}

/// About `width` bytes of `text` around its first match, escaped, with the
/// matches marked.
pub fn snippet(text: &str, words: &[String], width: usize) -> String {
    let found = matches(text, words);
    let first = found.first().map(|m| m.0).unwrap_or(0);
    let mut start = first.saturating_sub(width / 3);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    // Start at a word.
    if start > 0 {
        if let Some(sp) = text[start..first].find(' ') {
            start += sp + 1;
        }
    }
    let mut end = (start + width).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    if end < text.len() {
        if let Some(sp) = text[first.max(start)..end].rfind(' ') {
            end = first.max(start) + sp;
        }
    }
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut at = start;
    for (a, b) in found.into_iter().filter(|(a, b)| *a >= start && *b <= end) {
        out.push_str(&escape(&text[at..a]));
        out.push_str("<mark>");
        out.push_str(&escape(&text[a..b]));
        out.push_str("</mark>");
        at = b;
    }
    out.push_str(&escape(&text[at..end]));
    if end < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(slug: &str, title: &str, heading: &str, text: &str) -> Entry {
        Entry { slug: slug.into(), title: title.into(), anchor: String::new(), heading: heading.into(), text: text.into() }
    }

    #[test]
    fn the_page_about_it_ranks_first_and_the_snippet_marks_the_words() {
        let entries = vec![
            entry("credits", "Credits and billing", "Top-ups", "Buy credits when your balance runs low. Credits never expire."),
            entry("errors/insufficient_credits", "Insufficient credits", "What happened", "The call costs more credits than your balance holds."),
            entry("quickstart", "Quickstart", "", "Sign up, create a key, call the API."),
        ];
        let hits = search(&entries, "insufficient credits", 10);
        assert_eq!(hits[0].slug, "errors/insufficient_credits");
        assert_eq!(hits.len(), 2, "{hits:?}");
        assert!(hits[0].snippet_html.contains("<mark>credits</mark>"), "{}", hits[0].snippet_html);
        assert!(search(&entries, "insufficient_credits", 10)[0].slug == "errors/insufficient_credits");
        assert!(search(&entries, "   ", 10).is_empty());
        assert!(search(&entries, "zebra", 10).is_empty());
        // Prefixes match: "cred" finds credits.
        assert!(!search(&entries, "cred", 10).is_empty());
        // Text beyond ASCII is searched without splitting a character.
        let arrows = vec![entry("keys", "Keys", "", "Account → API keys → create one; café crème")];
        assert_eq!(search(&arrows, "api create", 10).len(), 1);
        assert!(search(&arrows, "crème", 10)[0].snippet_html.contains("<mark>crème</mark>"));
        // Characters whose lowercase is longer or shorter never split the text.
        let odd = vec![entry("odd", "Odd", "", "İİ ab \u{212A} and more ab text")];
        assert!(search(&odd, "ab", 10).len() <= 1);
        let _ = snippet("İİ ab \u{212A}", &words("ab"), 4);
    }

    #[test]
    fn snippets_escape_the_text() {
        let words = words("script");
        let s = snippet("a <script>alert(1)</script> b", &words, 100);
        assert!(!s.contains("<script"), "{s}");
        assert!(s.contains("&lt;<mark>script</mark>&gt;"), "{s}");
    }

    #[test]
    fn a_query_is_bounded_after_splitting_and_in_length() {
        let many = (0..500).map(|i| format!("w{i}")).collect::<Vec<_>>().join("_");
        assert!(words(&many).len() <= MAX_WORDS, "underscore parts count too");
        let spaced = (0..500).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        assert_eq!(words(&spaced).len(), MAX_WORDS);
        let long = "a".repeat(10_000);
        assert!(words(&long).iter().all(|w| w.chars().count() <= MAX_WORD_CHARS));
        assert_eq!(bounded(&"é".repeat(1000)).chars().count(), MAX_QUERY_CHARS);
        assert_eq!(words("insufficient_credits"), vec!["credits", "insufficient", "insufficient_credits"]);
    }
}
