//! Documentation rendered from the markdown in `content/`.

use crate::components::{ErrorView, Loading};
use crate::server_fns::get_doc;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

#[component]
pub fn DocsPage() -> impl IntoView {
    let params = use_params_map();
    let slug = move || {
        params
            .read()
            .get("slug")
            .unwrap_or_else(|| "index".to_string())
    };
    let page = Resource::new(slug, get_doc);
    view! {
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(doc) => {
                        let current = doc.slug.clone();
                        let nav = doc
                            .nav
                            .into_iter()
                            .map(|l| {
                                let active = l.slug == current;
                                view! { <li><a href=format!("/docs/{}", l.slug) class:active=active>{l.title}</a></li> }
                            })
                            .collect_view();
                        view! {
                            <Title text=doc.title.clone()/>
                            <div class="docs">
                                <nav class="docs-nav" aria-label="Documentation"><ul>{nav}</ul></nav>
                                <article class="panel prose" inner_html=doc.html></article>
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
