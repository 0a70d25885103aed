//! The `Keys` port: list, create, revoke, rotate.

use super::{date_time, errors, member, Portal};
use crate::api_keys::store;
use crate::api_keys::KeyError;
use app::backend::{Caller, CreateKeyForm, FormError, Keys, NewSecret};
use app::error::AppError;
use app::types::{ApiKeyView, KeysPage};
use uuid::Uuid;

/// The member, if they may manage keys (owners, admins, developers).
fn key_member(caller: &Caller) -> Result<super::Member, AppError> {
    let m = member(caller)?;
    if m.role.manages_keys() {
        Ok(m)
    } else {
        Err(AppError::Forbidden)
    }
}

fn key_form_member(caller: &Caller) -> Result<super::Member, FormError> {
    key_member(caller).map_err(|e| match e {
        AppError::Forbidden => FormError::message("Only developers, admins and owners manage API keys."),
        e => FormError::message(e.to_string()),
    })
}

#[async_trait::async_trait]
impl Keys for Portal {
    async fn page(&self, caller: &Caller) -> Result<KeysPage, AppError> {
        let m = key_member(caller)?;
        let now = self.now();
        let keys = store::list(&self.state.db, m.org)
            .await
            .map_err(|e| errors::page(caller, e))?;
        Ok(KeysPage {
            org_name: m.org_name.clone(),
            can_manage: m.role.manages_keys(),
            keys: keys
                .into_iter()
                .map(|k| {
                    let status = match (k.revoked_at, k.expires_at) {
                        (Some(r), _) if r <= now => "revoked",
                        (_, Some(e)) if e <= now => "expired",
                        (Some(_), _) => "expiring",
                        _ => "active",
                    };
                    let ends = match (k.revoked_at, k.expires_at) {
                        (Some(r), Some(e)) => Some(r.min(e)),
                        (r, e) => r.or(e),
                    };
                    ApiKeyView {
                        id: k.id.to_string(),
                        display: format!("{}…{}", k.prefix, k.last4),
                        name: k.name,
                        mode: k.mode.as_str().to_string(),
                        scopes: k.scopes,
                        created: date_time(k.created_at),
                        last_used: k.last_used_at.map(date_time),
                        expires: ends.map(date_time),
                        status: status.to_string(),
                    }
                })
                .collect(),
            scopes: crate::gateway::routes::scopes(&self.state.gateway.routes),
            // Filled from the `Usage` port by the page's server function.
            live_credits: 0,
            sandbox_credits: 0,
            new_key: None,
        })
    }

    async fn create(&self, caller: &Caller, form: CreateKeyForm) -> Result<NewSecret, FormError> {
        let m = key_form_member(caller)?;
        let verified = caller.user.as_ref().is_some_and(|u| u.email_verified);
        if form.mode == "live" && self.state.config.live_keys_need_verified_email && !verified {
            return Err(FormError {
                message: "Please correct the highlighted fields.".into(),
                fields: vec![("mode".into(), "Confirm your email address before creating a live key (see your account page); test keys work now.".into())],
            });
        }
        let expires_in_days = match form.expires_in_days.as_str() {
            "never" | "" => None,
            d => Some(d.parse::<i64>().unwrap_or(-1)),
        };
        let input = store::NewKey {
            name: form.name,
            mode: form.mode,
            scopes: form.scopes,
            expires_in_days,
        };
        store::create(&self.state.db, m.org, m.user, input, self.now())
            .await
            .map(|(_, secret)| NewSecret(secret.expose().to_string()))
            .map_err(|e| errors::form(caller, e))
    }

    async fn revoke(&self, caller: &Caller, key_id: String) -> Result<String, FormError> {
        let m = key_form_member(caller)?;
        let result = match Uuid::parse_str(&key_id) {
            Ok(id) => store::revoke(&self.state.db, m.org, m.user, id, self.now()).await,
            Err(_) => Err(KeyError::NotFound),
        };
        result.map_err(|e| errors::form(caller, e))?;
        Ok("Key revoked. Calls with it are refused from now on.".into())
    }

    async fn rotate(
        &self,
        caller: &Caller,
        key_id: String,
        overlap_hours: String,
    ) -> Result<NewSecret, FormError> {
        let m = key_form_member(caller)?;
        let overlap = overlap_hours.trim().parse::<i64>().unwrap_or(-1);
        let result = match Uuid::parse_str(&key_id) {
            Ok(id) => store::rotate(&self.state.db, m.org, m.user, id, overlap, self.now()).await,
            Err(_) => Err(KeyError::NotFound),
        };
        result
            .map(|(_, secret)| NewSecret(secret.expose().to_string()))
            .map_err(|e| errors::form(caller, e))
    }
}
