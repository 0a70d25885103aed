//! API keys. A key just created travels from the form post to the page that
//! shows it once in a cookie (HttpOnly, this page only, two minutes, cleared
//! when shown); it is never stored on the server.

use crate::error::AppError;
use crate::types::*;
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use super::form::{submit, Form, Needs, Success};

pub const NEW_KEY_COOKIE: &str = "tollgate_new_key";

/// The cookie's attributes: this page only, HttpOnly, same site only, and
/// `Secure` when the portal is served over https.
#[cfg(feature = "ssr")]
fn key_cookie(value: &str, max_age: u32, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{NEW_KEY_COOKIE}={value}; Path=/account/keys; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

#[cfg(feature = "ssr")]
fn set_cookie(cookie: &str) {
    if let (Some(res), Ok(value)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::HeaderValue::from_str(cookie),
    ) {
        res.append_header(http::header::SET_COOKIE, value);
    }
}

#[server(endpoint = "api_keys")]
pub async fn get_api_keys() -> Result<KeysPage, AppError> {
    let (backend, parts) = super::ssr::ctx().await?;
    let caller = backend.web.caller(&parts).await?;
    let mut page = backend.keys.page(&caller).await?;
    let balances = backend.usage.balances(&caller).await?;
    page.live_credits = balances.live;
    page.sandbox_credits = balances.sandbox;
    let secret = parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == NEW_KEY_COOKIE)
        .map(|(_, v)| v.to_string());
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        set_cookie(&key_cookie("", 0, backend.web.secure_cookies()));
        if page.can_manage {
            page.new_key = Some(NewKey { secret });
        }
    }
    Ok(page)
}

#[cfg(feature = "ssr")]
fn keys_form(values: Vec<(&'static str, String)>) -> Form {
    Form {
        name: "keys",
        back: "/account/keys".into(),
        values,
        needs: Needs::Member,
    }
}

#[server(endpoint = "create_api_key")]
pub async fn create_api_key(
    csrf: String,
    name: String,
    mode: String,
    /// Checkboxes named `scopes[i]`, one per scope.
    scopes: Option<Vec<String>>,
    expires_in_days: String,
) -> Result<(), AppError> {
    use crate::backend::CreateKeyForm;
    let form = CreateKeyForm {
        name: name.clone(),
        mode,
        scopes: scopes.unwrap_or_default(),
        expires_in_days,
    };
    submit(keys_form(vec![("name", name)]), &csrf, |c| async move {
        let secret = c.backend.keys.create(&c.caller, form).await?;
        set_cookie(&key_cookie(&secret.0, 120, c.backend.web.secure_cookies()));
        Ok(Success::to("/account/keys"))
    })
    .await
}

#[server(endpoint = "revoke_api_key")]
pub async fn revoke_api_key(csrf: String, key_id: String) -> Result<(), AppError> {
    submit(keys_form(vec![]), &csrf, |c| async move {
        let notice = c.backend.keys.revoke(&c.caller, key_id).await?;
        Ok(Success::to("/account/keys").notice("keys", notice))
    })
    .await
}

#[server(endpoint = "rotate_api_key")]
pub async fn rotate_api_key(
    csrf: String,
    key_id: String,
    overlap_hours: String,
) -> Result<(), AppError> {
    submit(keys_form(vec![]), &csrf, |c| async move {
        let secret = c
            .backend
            .keys
            .rotate(&c.caller, key_id, overlap_hours)
            .await?;
        set_cookie(&key_cookie(&secret.0, 120, c.backend.web.secure_cookies()));
        Ok(Success::to("/account/keys"))
    })
    .await
}
