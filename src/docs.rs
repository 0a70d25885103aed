//! Documentation: markdown files under `content/`, rendered with
//! pulldown-cmark. A page's title is its first `# ` heading; the side
//! navigation lists the top-level pages in the order of `content/nav.txt`.
//! Files are read on each request, so edited docs show without a restart.

use pulldown_cmark::{html, Options, Parser};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub slug: String,
    pub title: String,
    pub html: String,
}

/// A slug names a file under the content directory: lowercase words
/// separated by '/', never '..'.
pub fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 120
        && slug.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        })
}

pub fn render(markdown: &str) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_HEADING_ATTRIBUTES);
    let mut out = String::new();
    html::push_html(&mut out, Parser::new_ext(markdown, options));
    out
}

fn title_of(markdown: &str, slug: &str) -> String {
    markdown
        .lines()
        .find_map(|l| l.strip_prefix("# "))
        .map(|t| t.trim().to_string())
        .unwrap_or_else(|| slug.to_string())
}

pub async fn load(content_dir: &Path, slug: &str) -> Option<Doc> {
    if !valid_slug(slug) {
        return None;
    }
    let markdown = tokio::fs::read_to_string(content_dir.join(format!("{slug}.md")))
        .await
        .ok()?;
    Some(Doc {
        slug: slug.to_string(),
        title: title_of(&markdown, slug),
        html: render(&markdown),
    })
}

/// (slug, title) of the pages in `nav.txt`, in order.
pub async fn nav(content_dir: &Path) -> Vec<(String, String)> {
    let list = tokio::fs::read_to_string(content_dir.join("nav.txt"))
        .await
        .unwrap_or_default();
    let mut out = Vec::new();
    for slug in list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if let Some(doc) = load(content_dir, slug).await {
            out.push((doc.slug, doc.title));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_cannot_escape_the_content_directory() {
        assert!(valid_slug("quickstart"));
        assert!(valid_slug("errors/insufficient_credits"));
        for bad in [
            "",
            "../secret",
            "a//b",
            "/etc/passwd",
            "Quickstart",
            "a/../b",
            "x.md",
        ] {
            assert!(!valid_slug(bad), "{bad}");
        }
    }

    #[test]
    fn renders_markdown_with_tables() {
        let html = render("# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
        assert!(html.contains("<h1>Title</h1>"));
        assert!(html.contains("<table>"));
        assert_eq!(title_of("intro\n# Hello \n", "x"), "Hello");
    }
}
