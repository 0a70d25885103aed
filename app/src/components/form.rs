//! Form helpers. Forms post to server functions as plain HTML forms; a failed
//! post comes back as a [`Flash`] holding the message for each field and the
//! values typed, so nothing the user entered is lost.

use crate::types::{Flash, Viewer};
use leptos::prelude::*;

/// The hidden anti-forgery field every form carries.
#[component]
pub fn Csrf(token: String) -> impl IntoView {
    view! { <input type="hidden" name="csrf" value=token/> }
}

/// The previous post's outcome, when it belongs to this form.
#[derive(Clone, Default)]
pub struct FormState {
    flash: Option<Flash>,
}

impl FormState {
    pub fn new(viewer: &Viewer, form: &str) -> Self {
        Self {
            flash: viewer.flash.clone().filter(|f| f.form == form),
        }
    }

    /// Whether the last post of this form failed and left what was typed.
    pub fn typed(&self) -> bool {
        self.flash.as_ref().is_some_and(|f| !f.values.is_empty())
    }

    /// Whether the last post of this form went through (it left a notice).
    pub fn succeeded(&self) -> bool {
        self.flash.as_ref().is_some_and(|f| f.notice.is_some() && f.error.is_none())
    }

    /// The value the user typed last time, if the post failed.
    pub fn value(&self, field: &str) -> String {
        self.flash
            .as_ref()
            .and_then(|f| f.values.get(field).cloned())
            .unwrap_or_default()
    }

    pub fn has_error(&self, field: &str) -> bool {
        self.flash
            .as_ref()
            .is_some_and(|f| f.field_errors.contains_key(field))
    }

    /// The message for a field, as text (empty when there is none).
    pub fn error_text(&self, field: &str) -> String {
        self.flash
            .as_ref()
            .and_then(|f| f.field_errors.get(field).cloned())
            .unwrap_or_default()
    }

    /// The message shown under a field, with an id the input points at.
    pub fn error(&self, field: &str) -> impl IntoView {
        let message = self
            .flash
            .as_ref()
            .and_then(|f| f.field_errors.get(field).cloned());
        let id = format!("{field}-error");
        message.map(|m| view! { <p class="field-error" id=id role="alert">{m}</p> })
    }

    /// The form-wide error or notice.
    pub fn banner(&self) -> impl IntoView {
        let flash = self.flash.clone().unwrap_or_default();
        view! {
            {flash.error.map(|e| view! { <p class="banner banner-error" role="alert">{e}</p> })}
            {flash.notice.map(|n| view! { <p class="banner banner-notice" role="status">{n}</p> })}
        }
    }
}
