//! The interactive API explorer. It needs API keys and the metered gateway,
//! which are not built yet; the page says so rather than pretending.

use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn ExplorerPage() -> impl IntoView {
    view! {
        <Title text="Explorer"/>
        <section class="panel">
            <h1>"API explorer"</h1>
            <p>
                "The explorer will let you try every endpoint with a test key and show each "
                "response, including the fix for any 402, right here."
            </p>
            <p class="banner banner-notice">
                "Not built yet: it arrives with API keys and the metered gateway. "
                "Until then, the " <a href="/docs/quickstart">"quickstart"</a> " describes the API."
            </p>
        </section>
    }
}
