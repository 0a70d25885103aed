//! Syntax highlighting for the docs' code blocks, rendered on the server: a
//! small tokenizer per language family (JSON, shell, HTTP, and the
//! C-like/Python family) that wraps tokens in `<span class="tok-…">`. Every
//! character of the source goes through [`escape`], so a code block can
//! never become markup.

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Family {
    Json,
    Shell,
    Http,
    Code { hash_comments: bool },
    Plain,
}

fn family(lang: &str) -> Family {
    match lang {
        "json" => Family::Json,
        "sh" | "bash" | "shell" | "console" | "curl" => Family::Shell,
        "http" => Family::Http,
        "python" | "py" | "ruby" | "toml" | "yaml" => Family::Code { hash_comments: true },
        "rust" | "rs" | "js" | "javascript" | "ts" | "typescript" | "go" | "java" | "c" => Family::Code { hash_comments: false },
        _ => Family::Plain,
    }
}

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "def", "else", "enum", "export", "false", "fn", "for", "from",
    "function", "if", "impl", "import", "in", "let", "loop", "match", "mut", "new", "None", "null", "pub", "return",
    "self", "Self", "static", "struct", "throw", "True", "False", "true", "try", "type", "use", "var", "while", "with",
];

fn span(out: &mut String, class: &str, text: &str) {
    out.push_str("<span class=\"tok-");
    out.push_str(class);
    out.push_str("\">");
    out.push_str(&escape(text));
    out.push_str("</span>");
}

/// The highlighted HTML of `code` in `lang` (unknown languages: escaped only).
pub fn highlight(code: &str, lang: &str) -> String {
    let fam = family(&lang.to_ascii_lowercase());
    if fam == Family::Plain {
        return escape(code);
    }
    let mut out = String::with_capacity(code.len() * 2);
    for (i, line) in code.split_inclusive('\n').enumerate() {
        if fam == Family::Http {
            http_line(&mut out, line, i == 0);
        } else {
            line_tokens(&mut out, line, fam);
        }
    }
    out
}

fn http_line(out: &mut String, line: &str, first: bool) {
    if first {
        match line.split_once(' ') {
            Some((method, rest)) => {
                span(out, "kw", method);
                out.push(' ');
                out.push_str(&escape(rest));
            }
            None => out.push_str(&escape(line)),
        }
    } else if let Some((name, rest)) = line.split_once(':').filter(|(n, _)| !n.is_empty() && !n.contains(' ') && !n.starts_with('{')) {
        span(out, "attr", name);
        out.push(':');
        out.push_str(&escape(rest));
    } else {
        line_tokens(out, line, Family::Json);
    }
}

fn line_tokens(out: &mut String, line: &str, fam: Family) {
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let mut first_word = true;
    let text = |a: usize, b: usize| chars[a..b].iter().collect::<String>();
    while i < chars.len() {
        let c = chars[i];
        let comment = match fam {
            Family::Shell => c == '#' && (i == 0 || chars[i - 1].is_whitespace()),
            Family::Code { hash_comments: true } => c == '#',
            Family::Code { hash_comments: false } => c == '/' && chars.get(i + 1) == Some(&'/'),
            _ => false,
        };
        if comment {
            let end = chars.len() - usize::from(line.ends_with('\n'));
            span(out, "comment", &text(i, end));
            i = end;
            continue;
        }
        if c == '"' || c == '\'' || (c == '`' && matches!(fam, Family::Code { .. })) {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != c && chars[j] != '\n' {
                if chars[j] == '\\' {
                    j += 1;
                }
                j += 1;
            }
            let end = (j + 1).min(chars.len());
            let s = text(i, end);
            // A JSON key is a string followed by a colon.
            let is_key = fam == Family::Json && chars[end..].iter().find(|c| !c.is_whitespace()) == Some(&':');
            span(out, if is_key { "attr" } else { "str" }, &s);
            i = end;
            first_word = false;
            continue;
        }
        if c.is_ascii_digit() && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')) {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.' || chars[j] == '_') {
                j += 1;
            }
            span(out, "num", &text(i, j));
            i = j;
            first_word = false;
            continue;
        }
        if c.is_alphabetic() || c == '_' || (fam == Family::Shell && (c == '-' || c == '$')) {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '-' || (fam == Family::Shell && chars[j] == '.')) {
                j += 1;
            }
            let word = text(i, j);
            let class = match fam {
                Family::Shell if first_word => Some("kw"),
                Family::Shell if word.starts_with('-') => Some("attr"),
                Family::Shell if word.starts_with('$') => Some("var"),
                Family::Json if matches!(word.as_str(), "true" | "false" | "null") => Some("kw"),
                Family::Code { .. } if KEYWORDS.contains(&word.as_str()) => Some("kw"),
                _ => None,
            };
            match class {
                Some(class) => span(out, class, &word),
                None => out.push_str(&escape(&word)),
            }
            i = j;
            first_word = false;
            continue;
        }
        if !c.is_whitespace() && c != '\\' {
            first_word = false;
        }
        out.push_str(&escape(&c.to_string()));
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_get_classes_and_everything_is_escaped() {
        let html = highlight("{\"code\": \"<script>\", \"n\": 402, \"ok\": true}", "json");
        assert!(html.contains("<span class=\"tok-attr\">&quot;code&quot;</span>"), "{html}");
        assert!(html.contains("<span class=\"tok-str\">&quot;&lt;script&gt;&quot;</span>"), "{html}");
        assert!(html.contains("<span class=\"tok-num\">402</span>"));
        assert!(html.contains("<span class=\"tok-kw\">true</span>"));
        assert!(!html.contains("<script"));

        let sh = highlight("curl -H \"Authorization: Bearer $KEY\" https://x # note\n", "bash");
        assert!(sh.starts_with("<span class=\"tok-kw\">curl</span>"), "{sh}");
        assert!(sh.contains("<span class=\"tok-attr\">-H</span>"));
        assert!(sh.contains("<span class=\"tok-comment\"># note</span>"));

        let rs = highlight("let x = \"a\"; // why\n", "rust");
        assert!(rs.contains("<span class=\"tok-kw\">let</span>") && rs.contains("tok-comment"), "{rs}");
        assert_eq!(highlight("<b>&</b>", "unknown"), "&lt;b&gt;&amp;&lt;/b&gt;");
    }
}
