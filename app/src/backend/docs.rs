//! Docs rendered from the markdown in `content/`.

use crate::error::AppError;
use crate::types::DocPage;

#[async_trait::async_trait]
pub trait Docs: Send + Sync + 'static {
    async fn page(&self, slug: String) -> Result<DocPage, AppError>;
}
