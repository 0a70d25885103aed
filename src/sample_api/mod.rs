//! The built-in sample API, the gateway's default upstream: ping, a
//! deterministic lexicon sentiment score, and an extractive summary. It runs
//! in-process, so the gateway's own overhead is what benchmarks measure.

pub mod openapi;

use serde::Deserialize;
use serde_json::{json, Value};

/// Input is limited so one call cannot pin a core.
pub const MAX_TEXT_CHARS: usize = 100_000;

#[derive(Deserialize)]
struct TextInput {
    text: Option<Value>,
    #[serde(default)]
    max_sentences: Option<Value>,
}

/// A parsed, valid request: what it costs and how to answer it.
pub enum Call {
    Ping,
    Sentiment(String),
    Summarize { text: String, max_sentences: usize },
}

pub type FieldErrors = Vec<(String, String)>;

fn text_field(body: &[u8]) -> Result<(String, Option<Value>), FieldErrors> {
    let input: TextInput = serde_json::from_slice(body).map_err(|e| {
        vec![(
            "body".to_string(),
            format!("The body must be a JSON object like {{\"text\": \"…\"}} ({e})."),
        )]
    })?;
    match input.text {
        Some(Value::String(t)) if t.trim().is_empty() => {
            Err(vec![("text".into(), "Must not be empty.".into())])
        }
        Some(Value::String(t)) if t.chars().count() > MAX_TEXT_CHARS => Err(vec![(
            "text".into(),
            format!("Must be at most {MAX_TEXT_CHARS} characters."),
        )]),
        Some(Value::String(t)) => Ok((t, input.max_sentences)),
        Some(_) => Err(vec![("text".into(), "Must be a string.".into())]),
        None => Err(vec![("text".into(), "Is required.".into())]),
    }
}

pub fn parse(endpoint: &str, body: &[u8]) -> Result<Call, FieldErrors> {
    match endpoint {
        "ping" => Ok(Call::Ping),
        "sentiment" => text_field(body).map(|(t, _)| Call::Sentiment(t)),
        "summarize" => {
            let (text, max) = text_field(body)?;
            let max_sentences = match max {
                None => 3,
                Some(Value::Number(n)) if n.as_u64().is_some_and(|n| (1..=20).contains(&n)) => {
                    n.as_u64().unwrap_or(3) as usize
                }
                Some(_) => {
                    return Err(vec![(
                        "max_sentences".into(),
                        "Must be a whole number from 1 to 20.".into(),
                    )])
                }
            };
            Ok(Call::Summarize {
                text,
                max_sentences,
            })
        }
        _ => Err(vec![("endpoint".into(), "Unknown endpoint.".into())]),
    }
}

pub fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

impl Call {
    /// Credits the call costs: summarize is 1 per started 100 words.
    pub fn cost(&self) -> i64 {
        match self {
            Call::Ping => 0,
            Call::Sentiment(_) => 1,
            Call::Summarize { text, .. } => ((word_count(text) as i64 + 99) / 100).max(1),
        }
    }

    pub fn answer(&self, now: time::OffsetDateTime) -> Value {
        match self {
            Call::Ping => {
                json!({"pong": true, "time": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()})
            }
            Call::Sentiment(text) => sentiment(text),
            Call::Summarize {
                text,
                max_sentences,
            } => summarize(text, *max_sentences),
        }
    }
}

const POSITIVE: &[&str] = &[
    "good",
    "great",
    "excellent",
    "love",
    "like",
    "happy",
    "fast",
    "wonderful",
    "best",
    "amazing",
    "nice",
    "reliable",
    "easy",
    "helpful",
    "perfect",
    "pleased",
];
const NEGATIVE: &[&str] = &[
    "bad",
    "terrible",
    "awful",
    "hate",
    "slow",
    "sad",
    "worst",
    "broken",
    "poor",
    "angry",
    "difficult",
    "useless",
    "bug",
    "fail",
    "failed",
    "expensive",
];

fn sentiment(text: &str) -> Value {
    let (mut pos, mut neg) = (0i64, 0i64);
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let w = w.to_lowercase();
        if POSITIVE.contains(&w.as_str()) {
            pos += 1;
        } else if NEGATIVE.contains(&w.as_str()) {
            neg += 1;
        }
    }
    // Score in thousandths from -1000 to 1000: integers, never floats.
    let score = if pos + neg == 0 {
        0
    } else {
        (pos - neg) * 1000 / (pos + neg)
    };
    let label = match score {
        s if s > 200 => "positive",
        s if s < -200 => "negative",
        _ => "neutral",
    };
    json!({"label": label, "score_milli": score, "positive_words": pos, "negative_words": neg})
}

fn summarize(text: &str, max_sentences: usize) -> Value {
    let sentences: Vec<&str> = text
        .split_inclusive(['.', '!', '?'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let summary = sentences
        .iter()
        .take(max_sentences)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    json!({"summary": summary, "sentences": sentences.len().min(max_sentences), "input_words": word_count(text)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarize_costs_one_credit_per_started_hundred_words() {
        let words = |n: usize| vec!["word"; n].join(" ");
        for (n, cost) in [(1, 1), (100, 1), (101, 2), (250, 3)] {
            let body = json!({"text": words(n)}).to_string();
            assert_eq!(
                parse("summarize", body.as_bytes()).ok().unwrap().cost(),
                cost,
                "{n} words"
            );
        }
        assert_eq!(parse("ping", b"").ok().unwrap().cost(), 0);
        assert_eq!(
            parse("sentiment", br#"{"text":"hi"}"#).ok().unwrap().cost(),
            1
        );
    }

    #[test]
    fn sentiment_is_deterministic() {
        let v = sentiment("Great docs, fast and reliable, but one bug.");
        assert_eq!(v["label"], "positive");
        assert_eq!(v["score_milli"], 500);
        assert_eq!(sentiment("nothing to see")["label"], "neutral");
    }

    #[test]
    fn invalid_input_names_the_field() {
        assert_eq!(parse("sentiment", b"{}").err().unwrap()[0].0, "text");
        assert_eq!(
            parse("sentiment", br#"{"text": 3}"#).err().unwrap()[0].0,
            "text"
        );
        assert_eq!(parse("sentiment", b"not json").err().unwrap()[0].0, "body");
        assert_eq!(
            parse("summarize", br#"{"text":"a","max_sentences":0}"#)
                .err()
                .unwrap()[0]
                .0,
            "max_sentences"
        );
    }
}
