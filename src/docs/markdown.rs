//! Markdown to HTML for the docs, with pulldown-cmark (tables, footnotes,
//! task lists, strikethrough), and nothing an author (or anyone who can
//! write to `content/`) types ever runs as script:
//! - raw HTML, block or inline, is shown as text, never passed through;
//! - a link or image whose address has a scheme other than http, https or
//!   mailto (`javascript:`, `data:`, `vbscript:`, however it is spelled,
//!   with tabs, newlines or entities in it) points at `#` instead;
//! - attribute values are escaped by pulldown-cmark and by us.
//!
//! Headings get anchors (ids unique in the page) and make the table of
//! contents; fenced code blocks are highlighted on the server
//! ([`super::highlight`]) and get a copy button, which the docs script shows.

use super::highlight::{escape, highlight};
use pulldown_cmark::{html, CodeBlockKind, CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// Front matter: `---` lines of `key: value` at the top of a file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrontMatter {
    pub title: Option<String>,
    pub section: Option<String>,
    pub order: Option<i64>,
    pub summary: Option<String>,
}

/// Splits the front matter off a file; a file without it has none.
pub fn front_matter(src: &str) -> (FrontMatter, &str) {
    let mut fm = FrontMatter::default();
    let Some(rest) = src.strip_prefix("---\n").or_else(|| src.strip_prefix("---\r\n")) else {
        return (fm, src);
    };
    let Some(end) = rest.find("\n---") else {
        return (fm, src);
    };
    for line in rest[..end].lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim().trim_matches('"').to_string();
        match key.trim() {
            "title" => fm.title = Some(value),
            "section" => fm.section = Some(value),
            "order" => fm.order = value.parse().ok(),
            "summary" => fm.summary = Some(value),
            _ => {}
        }
    }
    let body = &rest[end + 4..];
    (fm, body.strip_prefix('\n').or_else(|| body.strip_prefix("\r\n")).unwrap_or(body))
}

#[derive(Clone, Debug, PartialEq)]
pub struct Heading {
    pub level: u8,
    pub id: String,
    pub text: String,
}

/// A part of a page for search: the heading it sits under and its text.
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    pub anchor: String,
    pub heading: String,
    pub text: String,
}

#[derive(Clone, Debug, Default)]
pub struct Rendered {
    pub html: String,
    /// Headings of level 2 and 3, for the table of contents.
    pub toc: Vec<Heading>,
    /// The first level-1 heading's text.
    pub title: Option<String>,
    pub sections: Vec<Section>,
}

/// Whether a link address is safe to put in `href`/`src`: relative, or with
/// an http, https or mailto scheme.
pub fn safe_url(url: &str) -> bool {
    // Browsers drop ASCII tabs and newlines anywhere in a URL and leading
    // spaces and control characters: judge what the browser would see.
    let seen: String = url.chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
    let seen = seen.trim_start_matches(|c: char| c <= ' ');
    if seen.contains('\\') && !seen.starts_with('#') {
        return false;
    }
    let end = seen.find(['/', '?', '#']).unwrap_or(seen.len());
    match seen[..end].find(':') {
        None => !seen.starts_with("//"),
        Some(i) => matches!(seen[..i].to_ascii_lowercase().as_str(), "http" | "https" | "mailto"),
    }
}

fn slugify(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "section".into()
    } else {
        out
    }
}

fn level(l: HeadingLevel) -> u8 {
    l as u8
}

pub fn render(markdown: &str) -> Rendered {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_FOOTNOTES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);
    let mut out = Rendered::default();
    let mut events: Vec<Event> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut heading: Option<(u8, Vec<Event>, String)> = None;
    let mut code: Option<(String, String)> = None;
    let mut section = Section { anchor: String::new(), heading: String::new(), text: String::new() };

    for event in Parser::new_ext(markdown, options) {
        // Inside a code block: gather its text.
        if let Some((_, text)) = code.as_mut() {
            match event {
                Event::Text(t) => {
                    text.push_str(&t);
                    continue;
                }
                Event::End(TagEnd::CodeBlock) => {
                    let (lang, text) = code.take().unwrap_or_default();
                    section.text.push_str(&text);
                    section.text.push(' ');
                    let class = if lang.is_empty() { String::new() } else { format!(" class=\"language-{lang}\"") };
                    events.push(Event::Html(CowStr::from(format!(
                        "<div class=\"code\"><button type=\"button\" class=\"copy\" data-copy hidden>Copy</button>\
                         <pre tabindex=\"0\"><code{class}>{}</code></pre></div>\n",
                        highlight(&text, &lang)
                    ))));
                    continue;
                }
                _ => continue,
            }
        }
        let event = match event {
            // Raw HTML is shown, not obeyed.
            Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
            Event::Start(Tag::HtmlBlock) => Event::Start(Tag::Paragraph),
            Event::End(TagEnd::HtmlBlock) => Event::End(TagEnd::Paragraph),
            Event::Start(Tag::Link { link_type, dest_url, title, id }) => Event::Start(Tag::Link {
                link_type,
                dest_url: if safe_url(&dest_url) { dest_url } else { CowStr::from("#") },
                title,
                id,
            }),
            Event::Start(Tag::Image { link_type, dest_url, title, id }) => Event::Start(Tag::Image {
                link_type,
                dest_url: if safe_url(&dest_url) { dest_url } else { CowStr::from("#") },
                title,
                id,
            }),
            Event::Start(Tag::CodeBlock(kind)) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => info
                        .split(|c: char| c.is_whitespace() || c == ',')
                        .next()
                        .unwrap_or("")
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                        .collect(),
                    CodeBlockKind::Indented => String::new(),
                };
                code = Some((lang, String::new()));
                continue;
            }
            Event::Start(Tag::Heading { level: l, .. }) => {
                heading = Some((level(l), Vec::new(), String::new()));
                continue;
            }
            Event::End(TagEnd::Heading(_)) => {
                let Some((l, inner, text)) = heading.take() else { continue };
                let text = text.trim().to_string();
                let base = slugify(&text);
                let mut id = base.clone();
                let mut n = 1;
                while ids.contains(&id) {
                    n += 1;
                    id = format!("{base}-{n}");
                }
                ids.push(id.clone());
                if l == 1 && out.title.is_none() {
                    out.title = Some(text.clone());
                }
                if l == 2 || l == 3 {
                    out.toc.push(Heading { level: l, id: id.clone(), text: text.clone() });
                }
                if l <= 3 {
                    let done = std::mem::replace(&mut section, Section { anchor: id.clone(), heading: text.clone(), text: String::new() });
                    if !done.text.trim().is_empty() || !done.heading.is_empty() {
                        out.sections.push(done);
                    }
                }
                events.push(Event::Html(CowStr::from(format!("<h{l} id=\"{id}\">"))));
                events.extend(inner);
                events.push(Event::Html(CowStr::from(format!(
                    " <a class=\"anchor\" href=\"#{id}\" aria-label=\"Link to “{}”\">#</a></h{l}>\n",
                    escape(&text)
                ))));
                continue;
            }
            other => other,
        };
        if let Event::Text(t) | Event::Code(t) = &event {
            match heading.as_mut() {
                Some((_, _, text)) => text.push_str(t),
                None => section.text.push_str(t),
            }
        }
        if matches!(event, Event::SoftBreak | Event::HardBreak | Event::End(TagEnd::Paragraph) | Event::End(TagEnd::Item) | Event::End(TagEnd::TableCell)) {
            section.text.push(' ');
        }
        match heading.as_mut() {
            Some((_, inner, _)) => inner.push(event),
            None => events.push(event),
        }
    }
    if !section.text.trim().is_empty() {
        out.sections.push(section);
    }
    for s in &mut out.sections {
        s.text = s.text.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    html::push_html(&mut out.html, events.into_iter());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_footnotes_task_lists_and_strikethrough_render() {
        let r = render("# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nNote[^1].\n\n[^1]: The note.\n\n- [x] done\n- [ ] todo\n\n~~old~~\n");
        assert!(r.html.contains("<table>"));
        assert!(r.html.contains("footnote-definition"), "{}", r.html);
        assert!(r.html.contains("type=\"checkbox\""));
        assert!(r.html.contains("<del>old</del>"));
        assert_eq!(r.title.as_deref(), Some("Title"));
    }

    #[test]
    fn headings_get_unique_anchors_and_make_the_table_of_contents() {
        let r = render("# Page\n\n## How to fix it\n\ntext\n\n## How to fix it\n\n### A `code` heading\n");
        let ids: Vec<&str> = r.toc.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["how-to-fix-it", "how-to-fix-it-2", "a-code-heading"]);
        assert!(r.html.contains("<h2 id=\"how-to-fix-it\">How to fix it <a class=\"anchor\" href=\"#how-to-fix-it\""), "{}", r.html);
        assert_eq!(r.sections[1].heading, "How to fix it");
        assert_eq!(r.sections[1].text, "text");
    }

    #[test]
    fn raw_html_and_script_are_shown_as_text_never_run() {
        for hostile in [
            "<script>alert(1)</script>",
            "Hello <script>alert(1)</script> there",
            "<img src=x onerror=alert(1)>",
            "<div onclick=\"alert(1)\">x</div>",
            "<iframe src=\"https://evil.example\"></iframe>",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<style>body{display:none}</style>",
            "<!-- <script>alert(1)</script> -->",
            "`<script>` in code is fine: ``<script>``",
            "```html\n<script>alert(1)</script>\n```",
        ] {
            let html = render(hostile).html;
            for bad in ["<script", "<img", "<div on", "<iframe", "<a href=\"javascript", "<style", "<!--"] {
                assert!(!html.to_lowercase().contains(bad), "{hostile:?} gave {html}");
            }
        }
        assert!(render("<b>bold?</b>").html.contains("&lt;b&gt;bold?&lt;/b&gt;"));
    }

    /// Every href and src value in `html`.
    fn addresses(html: &str) -> Vec<String> {
        let mut out = Vec::new();
        for attr in ["href=\"", "src=\""] {
            let mut rest = html;
            while let Some(i) = rest.find(attr) {
                rest = &rest[i + attr.len()..];
                out.push(rest[..rest.find('"').unwrap_or(0)].to_string());
            }
        }
        out
    }

    #[test]
    fn only_http_https_mailto_and_relative_links_are_kept() {
        for bad in [
            "[x](javascript:alert(1))",
            "[x](JavaScript:alert(1))",
            "[x](java\tscript:alert(1))",
            "[x](<java\nscript:alert(1)>)",
            "[x](&#106;avascript:alert(1))",
            "[x](data:text/html;base64,PHNjcmlwdD4=)",
            "[x](vbscript:msgbox(1))",
            "[x](//evil.example/x)",
            "[x](\\\\evil.example)",
            "![x](javascript:alert(1))",
            "<javascript:alert(1)>",
            "[x][r]\n\n[r]: javascript:alert(1)",
        ] {
            let html = render(bad).html;
            // Either no link at all (the text is shown as text) or a dead one.
            assert!(addresses(&html).iter().all(|t| t == "#"), "{bad:?} gave {html}");
            assert!(!html.contains("href=\"java") && !html.contains("src=\"java"), "{bad:?} gave {html}");
        }
        assert_eq!(addresses(&render("[x](javascript:alert(1))").html), ["#"], "a link is made, and made dead");
        for bad in ["java\tscript:alert(1)", " javascript:x", "\u{1}javascript:x", "JAVASCRIPT:x", "data:text/html,x", "//evil", "\\\\evil"] {
            assert!(!safe_url(bad), "{bad:?}");
        }
        for good in ["[x](/docs/keys)", "[x](#top)", "[x](https://example.com/a?b=1)", "[x](mailto:help@example.com)", "[x](keys)"] {
            let html = render(good).html;
            assert!(html.contains("<a href=\"") && !html.contains("href=\"#\""), "{good:?} gave {html}");
        }
        // An attribute cannot be broken out of.
        let html = render("[x](/a\"onmouseover=\"alert(1) \"t\")").html;
        assert!(!html.contains("\"onmouseover"), "{html}");
    }

    #[test]
    fn code_blocks_are_highlighted_with_a_copy_button() {
        let r = render("```json\n{\"a\": 1}\n```\n");
        assert!(r.html.contains("<button type=\"button\" class=\"copy\" data-copy hidden>Copy</button>"));
        assert!(r.html.contains("class=\"language-json\""));
        assert!(r.html.contains("tok-num"));
        // A hostile info string cannot inject attributes.
        let r = render("```json\" onclick=\"x\n{}\n```\n");
        assert!(!r.html.contains("onclick"), "{}", r.html);
    }

    #[test]
    fn front_matter_is_read_and_removed() {
        let (fm, body) = front_matter("---\ntitle: Keys\nsection: Guides\norder: 3\nsummary: \"Make keys\"\n---\n# Keys\n");
        assert_eq!(fm, FrontMatter { title: Some("Keys".into()), section: Some("Guides".into()), order: Some(3), summary: Some("Make keys".into()) });
        assert_eq!(body, "# Keys\n");
        let (fm, body) = front_matter("# No front matter\n");
        assert_eq!((fm, body), (FrontMatter::default(), "# No front matter\n"));
    }
}
