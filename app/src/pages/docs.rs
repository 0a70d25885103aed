//! Documentation rendered on the server from the markdown in `content/` and
//! the OpenAPI document: navigation by section, a table of contents,
//! previous/next, and search. Reads fully without JavaScript; the small
//! docs script (public/docs.js) adds copy buttons and results as you type.

use crate::components::{ErrorView, Loading};
use crate::server_fns::{get_doc, search_docs};
use crate::types::NavSection;
use leptos::prelude::*;
use leptos_meta::{Meta, Title};
use leptos_router::hooks::{use_params_map, use_query_map};

#[component]
fn DocsNav(nav: Vec<NavSection>, current: String) -> impl IntoView {
    let sections = nav
        .into_iter()
        .map(|s| {
            let links = s
                .links
                .into_iter()
                .map(|l| {
                    let active = l.slug == current;
                    view! {
                        <li>
                            <a href=format!("/docs/{}", l.slug) class:active=active aria-current=active.then_some("page")>
                                {l.title}
                            </a>
                        </li>
                    }
                })
                .collect_view();
            view! {
                <li class="docs-nav-section">
                    <span class="docs-nav-title">{s.title}</span>
                    <ul>{links}</ul>
                </li>
            }
        })
        .collect_view();
    view! {
        <nav class="docs-nav" aria-label="Documentation">
            <ul>{sections}</ul>
        </nav>
    }
}

#[component]
pub fn DocsPage() -> impl IntoView {
    let params = use_params_map();
    let slug = move || params.read().get("slug").unwrap_or_else(|| "index".to_string());
    let page = Resource::new(slug, get_doc);
    view! {
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(doc) => {
                        let toc = (!doc.toc.is_empty()).then(|| {
                            let items = doc
                                .toc
                                .iter()
                                .map(|h| {
                                    view! {
                                        <li class=format!("toc-{}", h.level)>
                                            <a href=format!("#{}", h.id)>{h.text.clone()}</a>
                                        </li>
                                    }
                                })
                                .collect_view();
                            view! {
                                <nav class="docs-toc" aria-label="On this page">
                                    <p class="docs-nav-title">"On this page"</p>
                                    <ul>{items}</ul>
                                </nav>
                            }
                        });
                        let pager = view! {
                            <nav class="docs-pager" aria-label="Previous and next page">
                                {doc.prev.clone().map(|p| view! {
                                    <a class="docs-prev" rel="prev" href=format!("/docs/{}", p.slug)>
                                        <span>"Previous"</span> {p.title}
                                    </a>
                                })}
                                {doc.next.clone().map(|n| view! {
                                    <a class="docs-next" rel="next" href=format!("/docs/{}", n.slug)>
                                        <span>"Next"</span> {n.title}
                                    </a>
                                })}
                            </nav>
                        };
                        view! {
                            <Title text=doc.title.clone()/>
                            {doc.summary.clone().map(|s| view! { <Meta name="description" content=s/> })}
                            <div class="docs">
                                <DocsNav nav=doc.nav.clone() current=doc.slug.clone()/>
                                <div class="docs-main">
                                    {doc.personal_note.clone().map(|n| view! { <p class="docs-personal" data-testid="personal">{n}</p> })}
                                    <article class="panel prose" inner_html=doc.html.clone()></article>
                                    {pager}
                                </div>
                                {toc}
                            </div>
                        }
                        .into_any()
                    }
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// `/docs/search?q=…`: ranked results with the matched words marked.
#[component]
pub fn SearchPage() -> impl IntoView {
    let query = use_query_map();
    let q = move || query.read().get("q").unwrap_or_default();
    let results = Resource::new(q, search_docs);
    view! {
        <Title text="Search the docs"/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match results.await {
                    Ok(r) => {
                        let count = r.hits.len();
                        let hits = r
                            .hits
                            .into_iter()
                            .map(|h| {
                                view! {
                                    <li class="search-hit">
                                        <a href=h.href.clone()>
                                            <strong>{h.title.clone()}</strong>
                                            {(!h.heading.is_empty() && h.heading != h.title).then(|| view! { <span class="search-heading">" › " {h.heading.clone()}</span> })}
                                        </a>
                                        <p inner_html=h.snippet_html.clone()></p>
                                    </li>
                                }
                            })
                            .collect_view();
                        let said = if r.query.trim().is_empty() {
                            "Type a few words to search the docs.".to_string()
                        } else if count == 0 {
                            format!("Nothing found for “{}”. Try fewer or other words.", r.query)
                        } else {
                            format!("{count} page(s) for “{}”", r.query)
                        };
                        view! {
                            <div class="docs">
                                <DocsNav nav=r.nav current=String::new()/>
                                <div class="docs-main">
                                    <section class="panel">
                                        <h1>"Search the docs"</h1>
                                        <form method="get" action="/docs/search" role="search" class="search-form">
                                            <label for="search-page-q">"Search"</label>
                                            <input type="search" id="search-page-q" name="q" value=r.query.clone()/>
                                            <button type="submit" class="button">"Search"</button>
                                        </form>
                                        <p role="status" data-testid="search-count">{said}</p>
                                        <ol class="search-hits">{hits}</ol>
                                    </section>
                                </div>
                            </div>
                        }
                        .into_any()
                    }
                    Err(e) => view! { <ErrorView error=e/> }.into_any(),
                }
            })}
        </Suspense>
    }
}
