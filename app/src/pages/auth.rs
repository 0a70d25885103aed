//! Sign up, sign in, and password reset. Plain HTML forms posting to server
//! functions: they work with JavaScript off and before hydration.

use crate::components::{query_value, use_viewer, Csrf, FormState, Loading};
use crate::types::Viewer;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::Redirect;

/// Renders `form` for signed-out visitors; signed-in ones go to their account.
fn signed_out_only<V: IntoView + 'static>(
    viewer: Viewer,
    form: impl FnOnce(Viewer) -> V,
) -> AnyView {
    if viewer.user.is_some() {
        view! { <Redirect path="/account"/> }.into_any()
    } else {
        form(viewer).into_any()
    }
}

#[component]
fn Field(
    state: FormState,
    name: &'static str,
    label: &'static str,
    #[prop(default = "text")] kind: &'static str,
    #[prop(default = "")] autocomplete: &'static str,
    #[prop(optional)] hint: Option<&'static str>,
    #[prop(default = true)] required: bool,
) -> impl IntoView {
    let invalid = state.has_error(name);
    let value = if kind == "password" {
        String::new()
    } else {
        state.value(name)
    };
    let described = if invalid {
        format!("{name}-error")
    } else {
        String::new()
    };
    view! {
        <div class="field" class:field-invalid=invalid>
            <label for=name>{label}</label>
            <input
                id=name
                name=name
                type=kind
                autocomplete=autocomplete
                value=value
                required=required
                aria-invalid=if invalid { "true" } else { "false" }
                aria-describedby=described
            />
            {hint.map(|h| view! { <p class="hint">{h}</p> })}
            {state.error(name)}
        </div>
    }
}

#[component]
pub fn SignUpPage() -> impl IntoView {
    let viewer = use_viewer();
    view! {
        <Title text="Sign up"/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                let invitation = query_value("invitation");
                signed_out_only(viewer.await, move |v| {
                    let f = FormState::new(&v, "signup");
                    let org_field = invitation.is_empty().then(|| view! {
                        <Field state=f.clone() name="organization" label="Organization name"
                            autocomplete="organization" required=false
                            hint="Leave empty to use your name. You can invite your team later."/>
                    });
                    view! {
                        <section class="panel auth-card">
                            <h1>"Create your account"</h1>
                            <p class="muted">"Free plan, 100 credits a month included. No card needed."</p>
                            {f.banner()}
                            <form method="post" action="/api/sign_up" novalidate>
                                <Csrf token=v.csrf.clone()/>
                                <input type="hidden" name="invitation" value=invitation/>
                                <Field state=f.clone() name="display_name" label="Your name" autocomplete="name"/>
                                <Field state=f.clone() name="email" label="Email" kind="email" autocomplete="email"/>
                                <Field state=f.clone() name="password" label="Password" kind="password"
                                    autocomplete="new-password" hint="At least 10 characters."/>
                                {org_field}
                                <button type="submit" class="button">"Create account"</button>
                            </form>
                            <p class="muted">"Already have an account? " <a href="/login">"Sign in"</a></p>
                        </section>
                    }
                })
            })}
        </Suspense>
    }
}

#[component]
pub fn SignInPage() -> impl IntoView {
    let viewer = use_viewer();
    view! {
        <Title text="Sign in"/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                let return_to = query_value("return_to");
                signed_out_only(viewer.await, move |v| {
                    let f = FormState::new(&v, "login");
                    view! {
                        <section class="panel auth-card">
                            <h1>"Sign in"</h1>
                            {f.banner()}
                            <form method="post" action="/api/sign_in" novalidate>
                                <Csrf token=v.csrf.clone()/>
                                <input type="hidden" name="return_to" value=return_to/>
                                <Field state=f.clone() name="email" label="Email" kind="email" autocomplete="username"/>
                                <Field state=f.clone() name="password" label="Password" kind="password"
                                    autocomplete="current-password"/>
                                <button type="submit" class="button">"Sign in"</button>
                            </form>
                            <p class="muted">
                                <a href="/password/forgot">"Forgot your password?"</a>
                                " · New here? " <a href="/signup">"Create an account"</a>
                            </p>
                        </section>
                    }
                })
            })}
        </Suspense>
    }
}

#[component]
pub fn ForgotPasswordPage() -> impl IntoView {
    let viewer = use_viewer();
    view! {
        <Title text="Reset your password"/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                let v = viewer.await;
                let f = FormState::new(&v, "password_forgot");
                view! {
                    <section class="panel auth-card">
                        <h1>"Reset your password"</h1>
                        <p class="muted">"We will email you a link that works once, for one hour."</p>
                        {f.banner()}
                        <form method="post" action="/api/password_forgot" novalidate>
                            <Csrf token=v.csrf.clone()/>
                            <Field state=f.clone() name="email" label="Email" kind="email" autocomplete="email"/>
                            <button type="submit" class="button">"Send the link"</button>
                        </form>
                        <p class="muted"><a href="/login">"Back to sign in"</a></p>
                    </section>
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn ResetPasswordPage() -> impl IntoView {
    let viewer = use_viewer();
    view! {
        <Title text="Choose a new password"/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                let v = viewer.await;
                let token = query_value("token");
                let f = FormState::new(&v, "password_reset");
                view! {
                    <section class="panel auth-card">
                        <h1>"Choose a new password"</h1>
                        {f.banner()}
                        <form method="post" action="/api/password_reset" novalidate>
                            <Csrf token=v.csrf.clone()/>
                            <input type="hidden" name="token" value=token/>
                            <Field state=f.clone() name="password" label="New password" kind="password"
                                autocomplete="new-password" hint="At least 10 characters."/>
                            <button type="submit" class="button">"Set password and sign in"</button>
                        </form>
                    </section>
                }
            })}
        </Suspense>
    }
}

/// Where an email-verification link lands: the address is confirmed (the
/// link works once), or the page says why not and where to get a new one.
#[component]
pub fn VerifyEmailPage() -> impl IntoView {
    let token = query_value("token");
    let outcome = Resource::new(move || (), move |_| crate::server_fns::get_email_verification(token.clone()));
    view! {
        <Title text="Confirm your email"/>
        <Suspense fallback=Loading>
            {move || Suspend::new(async move {
                match outcome.await {
                    Ok(message) => view! {
                        <section class="panel">
                            <h1>"Email confirmed"</h1>
                            <p class="banner banner-notice" role="status" data-testid="email-verified">{message}</p>
                            <p><a class="button" href="/billing/plans">"See the plans"</a> " " <a href="/account">"Your account"</a></p>
                        </section>
                    }.into_any(),
                    Err(e) => view! {
                        <section class="panel">
                            <h1>"Confirm your email"</h1>
                            <p class="banner banner-error" role="alert" data-testid="email-not-verified">{e.to_string()}</p>
                            <p><a href="/account">"Your account"</a></p>
                        </section>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}
