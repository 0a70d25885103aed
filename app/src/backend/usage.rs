//! Usage: what the organization has left to spend.

use super::Caller;
use crate::error::AppError;
use crate::types::Balances;

#[async_trait::async_trait]
pub trait Usage: Send + Sync + 'static {
    /// The live balance (included and purchased) and the sandbox's.
    async fn balances(&self, caller: &Caller) -> Result<Balances, AppError>;
}
