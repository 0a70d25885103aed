//! The `Docs` port: pages rendered from the markdown in `content/`.

use super::Portal;
use app::backend::Docs;
use app::error::AppError;
use app::types::{DocLink, DocPage};

#[async_trait::async_trait]
impl Docs for Portal {
    async fn page(&self, slug: String) -> Result<DocPage, AppError> {
        let dir = &self.state.config.content_dir;
        let doc = crate::docs::load(dir, &slug)
            .await
            .ok_or(AppError::NotFound)?;
        let nav = crate::docs::nav(dir)
            .await
            .into_iter()
            .map(|(slug, title)| DocLink { slug, title })
            .collect();
        Ok(DocPage {
            slug: doc.slug,
            title: doc.title,
            html: doc.html,
            nav,
        })
    }
}
