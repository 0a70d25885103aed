//! Documentation: markdown files under `content/` (front matter: title,
//! section, order, summary), rendered with pulldown-cmark ([`markdown`]),
//! highlighted on the server ([`highlight`]) and searchable ([`search`]).
//!
//! [`Docs`] renders the whole library once and keeps it; each request looks
//! at the files' sizes and modification times (a directory walk of a few
//! dozen entries) and renders the library again when any file changed, was
//! added or removed, so edited docs show without a restart.

pub mod highlight;
pub mod markdown;
pub mod search;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

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

#[derive(Clone, Debug)]
pub struct Page {
    pub slug: String,
    pub title: String,
    pub section: String,
    pub order: i64,
    pub summary: Option<String>,
    pub html: String,
    pub toc: Vec<markdown::Heading>,
}

/// Every page, rendered, in reading order; sections in the order of their
/// first page.
#[derive(Debug, Default)]
pub struct Library {
    pub pages: Vec<Page>,
    by_slug: HashMap<String, usize>,
    pub entries: Vec<search::Entry>,
}

impl Library {
    pub fn get(&self, slug: &str) -> Option<&Page> {
        self.by_slug.get(slug).map(|&i| &self.pages[i])
    }

    /// The pages before and after `slug` in reading order.
    pub fn neighbours(&self, slug: &str) -> (Option<&Page>, Option<&Page>) {
        let Some(&i) = self.by_slug.get(slug) else { return (None, None) };
        (i.checked_sub(1).and_then(|j| self.pages.get(j)), self.pages.get(i + 1))
    }

    /// (section, pages) in order.
    pub fn sections(&self) -> Vec<(&str, Vec<&Page>)> {
        let mut out: Vec<(&str, Vec<&Page>)> = Vec::new();
        for p in &self.pages {
            match out.iter_mut().find(|(s, _)| *s == p.section) {
                Some((_, pages)) => pages.push(p),
                None => out.push((&p.section, vec![p])),
            }
        }
        out
    }

    pub fn search(&self, query: &str, limit: usize) -> Vec<search::Hit> {
        search::search(&self.entries, query, limit)
    }

    /// Renders every `.md` file under `dir`.
    pub fn build(dir: &Path) -> Library {
        let mut files = Vec::new();
        walk(dir, dir, &mut files);
        let mut pages = Vec::new();
        let mut entries = Vec::new();
        for (slug, path) in files {
            let Ok(src) = std::fs::read_to_string(&path) else { continue };
            let (fm, body) = markdown::front_matter(&src);
            let r = markdown::render(body);
            let title = fm.title.or(r.title).unwrap_or_else(|| slug.clone());
            for s in r.sections {
                entries.push(search::Entry { slug: slug.clone(), title: title.clone(), anchor: s.anchor, heading: s.heading, text: s.text });
            }
            pages.push(Page {
                section: fm.section.unwrap_or_else(|| "Guides".into()),
                order: fm.order.unwrap_or(1_000),
                summary: fm.summary,
                html: r.html,
                toc: r.toc,
                title,
                slug,
            });
        }
        // Sections in the order of their first page, pages by order then title.
        let mut first: HashMap<String, i64> = HashMap::new();
        for p in &pages {
            let e = first.entry(p.section.clone()).or_insert(p.order);
            *e = (*e).min(p.order);
        }
        pages.sort_by(|a, b| {
            (first[&a.section], &a.section, a.order, &a.title).cmp(&(first[&b.section], &b.section, b.order, &b.title))
        });
        let by_slug = pages.iter().enumerate().map(|(i, p)| (p.slug.clone(), i)).collect();
        Library { pages, by_slug, entries }
    }
}

/// (slug, path) of every markdown file below `dir`, skipping anything whose
/// name would not be a valid slug (so nothing outside it, and no dotfiles).
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(read) = std::fs::read_dir(dir) else { return };
    for entry in read.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            walk(root, &path, out);
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "md") {
            let Ok(rel) = path.with_extension("").strip_prefix(root).map(Path::to_path_buf) else { continue };
            let slug = rel.to_string_lossy().replace('\\', "/");
            if valid_slug(&slug) {
                out.push((slug, path));
            }
        }
    }
}

/// What identifies the library's files as they are now.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    let mut out: Vec<_> = files
        .into_iter()
        .map(|(_, p)| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            let modified = meta.and_then(|m| m.modified().ok());
            (p, len, modified)
        })
        .collect();
    out.sort();
    out
}

type Cached = (Vec<(PathBuf, u64, Option<SystemTime>)>, Arc<Library>);

/// The rendered library, kept until a file changes.
pub struct Docs {
    dir: PathBuf,
    cache: Mutex<Option<Cached>>,
}

impl Docs {
    pub fn new(dir: PathBuf) -> Self {
        Docs { dir, cache: Mutex::new(None) }
    }

    /// The library as the files are now (rendered again only if they changed).
    pub async fn library(self: &Arc<Self>) -> Arc<Library> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.library_blocking())
            .await
            .unwrap_or_default()
    }

    fn library_blocking(&self) -> Arc<Library> {
        let now = fingerprint(&self.dir);
        if let Some((seen, lib)) = self.cache.lock().expect("docs cache").as_ref() {
            if *seen == now {
                return lib.clone();
            }
        }
        let lib = Arc::new(Library::build(&self.dir));
        *self.cache.lock().expect("docs cache") = Some((now, lib.clone()));
        lib
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_cannot_escape_the_content_directory() {
        assert!(valid_slug("quickstart"));
        assert!(valid_slug("errors/insufficient_credits"));
        for bad in ["", "../secret", "a//b", "/etc/passwd", "Quickstart", "a/../b", "x.md", "a\\b", "%2e%2e"] {
            assert!(!valid_slug(bad), "{bad}");
        }
    }

    #[test]
    fn the_library_is_rendered_once_and_again_when_a_file_changes() {
        let dir = std::env::temp_dir().join(format!("tollgate-docs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("errors")).unwrap();
        std::fs::write(dir.join("index.md"), "---\ntitle: Home\nsection: Start\norder: 1\n---\n# Home\n").unwrap();
        std::fs::write(dir.join("errors/a_b.md"), "---\nsection: Errors\norder: 50\n---\n# A b\n\n## Fix\n\nDo it.\n").unwrap();
        std::fs::write(dir.join(".hidden.md"), "# hidden").unwrap();
        let docs = Arc::new(Docs::new(dir.clone()));
        let one = docs.library_blocking();
        assert!(Arc::ptr_eq(&one, &docs.library_blocking()), "not rendered again when nothing changed");
        assert_eq!(one.pages.iter().map(|p| p.slug.as_str()).collect::<Vec<_>>(), ["index", "errors/a_b"]);
        assert_eq!(one.get("errors/a_b").unwrap().title, "A b");
        assert_eq!(one.neighbours("index").1.unwrap().slug, "errors/a_b");
        assert_eq!(one.sections().iter().map(|s| s.0).collect::<Vec<_>>(), ["Start", "Errors"]);
        std::fs::write(dir.join("index.md"), "---\ntitle: Welcome home\nsection: Start\norder: 1\n---\n# Home\n").unwrap();
        let two = docs.library_blocking();
        assert_eq!(two.get("index").unwrap().title, "Welcome home");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
