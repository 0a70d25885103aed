//! API keys: list, create (shown once), revoke, rotate.

use super::{Caller, FormError};
use crate::error::AppError;
use crate::types::KeysPage;

#[derive(Clone, Debug)]
pub struct CreateKeyForm {
    pub name: String,
    pub mode: String,
    pub scopes: Vec<String>,
    /// "never" or a number of days.
    pub expires_in_days: String,
}

/// A key just made, to show once. Its `Debug` is redacted.
pub struct NewSecret(pub String);

impl std::fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewSecret([redacted])")
    }
}

#[async_trait::async_trait]
pub trait Keys: Send + Sync + 'static {
    /// The organization's keys. `new_key` is left empty: the server function
    /// fills it from the one-shot cookie that carries a key just created.
    async fn page(&self, caller: &Caller) -> Result<KeysPage, AppError>;
    async fn create(&self, caller: &Caller, form: CreateKeyForm) -> Result<NewSecret, FormError>;
    /// Returns the notice to show.
    async fn revoke(&self, caller: &Caller, key_id: String) -> Result<String, FormError>;
    async fn rotate(
        &self,
        caller: &Caller,
        key_id: String,
        overlap_hours: String,
    ) -> Result<NewSecret, FormError>;
}
