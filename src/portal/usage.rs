//! The `Usage` port: balances now; usage graphs and the request log build
//! on the same events later.

use super::{errors, member, Portal};
use app::backend::{Caller, Usage};
use app::error::AppError;
use app::types::Balances;

#[async_trait::async_trait]
impl Usage for Portal {
    async fn balances(&self, caller: &Caller) -> Result<Balances, AppError> {
        let m = member(caller)?;
        let b = crate::billing::ledger::spendable(&self.state.db, m.org, self.now())
            .await
            .map_err(|e| errors::page(caller, e))?;
        Ok(Balances {
            live: b.live(),
            sandbox: b.sandbox,
        })
    }
}
