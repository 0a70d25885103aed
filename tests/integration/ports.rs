//! The UI's ports called directly, as the server functions call them: no
//! page is rendered, no session is involved. Who is asking is a typed
//! `Caller`; forms answer with data or a `FormError`.

use crate::helpers::*;
use app::backend::{
    Backend, Caller, CallerOrg, CallerUser, CreateKeyForm, FormError, MemberRoleForm, Role,
    SignInForm, SignUpForm,
};
use app::error::AppError;
use axum::http::StatusCode;
use sqlx::PgPool;
use tollgate::portal::Portal;

async fn ports(db: &PgPool) -> (TestApp, Backend) {
    let app = TestApp::new(db.clone()).await;
    let backend = Portal::backend(app.state.clone());
    (app, backend)
}

fn anonymous() -> Caller {
    Caller {
        request_id: "req_port_test".into(),
        client_ip: "192.0.2.10".into(),
        ..Default::default()
    }
}

fn company(email: &str) -> String {
    format!("{} and partners", email.split('@').next().unwrap_or("x"))
}

/// Signs a new organization's owner up through the port, and returns them
/// as a caller.
async fn owner(backend: &Backend, email: &str) -> Caller {
    let form = SignUpForm {
        display_name: "Olive".into(),
        email: email.into(),
        password: PASSWORD.into(),
        organization: company(email),
        invitation: None,
    };
    let signed = backend.accounts.sign_up(&anonymous(), form).await.unwrap();
    Caller {
        user: Some(CallerUser {
            id: signed.user_id,
            email: email.into(),
            display_name: "Olive".into(),
        }),
        org: Some(CallerOrg {
            id: signed.org_id.expect("an organization"),
            name: company(email),
            role: Role::Owner,
        }),
        ..anonymous()
    }
}

fn key_form(name: &str) -> CreateKeyForm {
    CreateKeyForm {
        name: name.into(),
        mode: "live".into(),
        scopes: vec!["*".into()],
        expires_in_days: "never".into(),
    }
}

#[sqlx::test]
async fn accounts_answer_with_the_signed_in_user_or_the_fields_to_fix(db: PgPool) {
    let (_app, backend) = ports(&db).await;
    let caller = owner(&backend, "olive@example.com").await;
    assert!(caller.user.is_some());
    let again = SignUpForm {
        display_name: "".into(),
        email: "olive@example.com".into(),
        password: "short".into(),
        organization: "".into(),
        invitation: None,
    };
    let refused = backend
        .accounts
        .sign_up(&anonymous(), again)
        .await
        .unwrap_err();
    let fields: Vec<&str> = refused.fields.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, vec!["display_name", "password"]);
    assert_eq!(refused.message, "Please correct the highlighted fields.");
    let wrong = SignInForm {
        email: "olive@example.com".into(),
        password: "not the password".into(),
    };
    assert_eq!(
        backend
            .accounts
            .sign_in(&anonymous(), wrong)
            .await
            .unwrap_err(),
        FormError::message("Wrong email or password.")
    );
    let right = SignInForm {
        email: "OLIVE@example.com".into(),
        password: PASSWORD.into(),
    };
    let signed = backend.accounts.sign_in(&anonymous(), right).await.unwrap();
    assert_eq!(Some(signed.user_id), caller.user.map(|u| u.id));
}

#[sqlx::test]
async fn keys_follow_the_callers_role_and_organization(db: PgPool) {
    let (_app, backend) = ports(&db).await;
    let olive = owner(&backend, "olive@example.com").await;
    let secret = backend
        .keys
        .create(&olive, key_form("server"))
        .await
        .unwrap();
    assert!(secret.0.starts_with("tg_live_"));
    let page = backend.keys.page(&olive).await.unwrap();
    assert_eq!(page.keys.len(), 1);
    assert!(page.can_manage);
    let balances = backend.usage.balances(&olive).await.unwrap();
    assert_eq!((balances.live, balances.sandbox), (100, 1000));

    // The same user as a billing member may not (the role is re-read when the
    // key is written, whatever the caller claims).
    let mut billing = olive.clone();
    billing.org.as_mut().unwrap().role = Role::Billing;
    sqlx::query("UPDATE memberships SET role = 'billing'")
        .execute(&db)
        .await
        .unwrap();
    let refused = backend
        .keys
        .create(&billing, key_form("nope"))
        .await
        .unwrap_err();
    assert_eq!(
        refused.message,
        "Only developers, admins and owners manage API keys."
    );
    sqlx::query("UPDATE memberships SET role = 'owner'")
        .execute(&db)
        .await
        .unwrap();

    // Another organization's key, by id: as if it did not exist.
    let eve = owner(&backend, "eve@example.com").await;
    let olives_key = page.keys[0].id.clone();
    for id in [olives_key.as_str(), "not-a-uuid", ""] {
        let refused = backend.keys.revoke(&eve, id.into()).await.unwrap_err();
        assert_eq!(
            refused.message, "That no longer exists. The page shows what is there now.",
            "{id:?}"
        );
    }
    assert!(backend.keys.page(&eve).await.unwrap().keys.is_empty());
    assert_eq!(
        backend.keys.revoke(&olive, olives_key).await.unwrap(),
        "Key revoked. Calls with it are refused from now on."
    );
    // Signed out, or without an organization: refused before anything runs.
    assert_eq!(
        backend.keys.page(&anonymous()).await.unwrap_err(),
        AppError::NotSignedIn
    );
    let mut orgless = olive.clone();
    orgless.org = None;
    assert_eq!(
        backend.keys.page(&orgless).await.unwrap_err(),
        AppError::Forbidden
    );
}

#[sqlx::test]
async fn members_of_one_organization_cannot_reach_another(db: PgPool) {
    let (_app, backend) = ports(&db).await;
    let olive = owner(&backend, "olive@example.com").await;
    let eve = owner(&backend, "eve@example.com").await;
    let olive_id = olive.user.clone().unwrap().id;
    let change = MemberRoleForm {
        user_id: olive_id.clone(),
        role: "billing".into(),
    };
    assert_eq!(
        backend
            .accounts
            .change_role(&eve, change)
            .await
            .unwrap_err()
            .message,
        "That no longer exists. The page shows what is there now."
    );
    assert!(backend
        .accounts
        .remove_member(&eve, olive_id)
        .await
        .is_err());
    let page = backend.accounts.members(&olive).await.unwrap();
    assert_eq!(page.members.len(), 1);
    assert_eq!(page.members[0].role, "owner");
    // The admin console is for platform admins only.
    assert_eq!(
        backend.admin.routes(&olive).await.unwrap_err(),
        AppError::Forbidden
    );
    assert_eq!(
        backend.admin.outbox(&anonymous()).await.unwrap_err(),
        AppError::NotSignedIn
    );
}

#[sqlx::test]
async fn a_state_the_code_does_not_know_is_an_error_never_a_default(db: PgPool) {
    let (mut app, backend) = ports(&db).await;
    let olive = owner(&backend, "olive@example.com").await;
    // A role no version of Tollgate wrote: the member is not quietly
    // treated as "billing".
    sqlx::query("ALTER TABLE memberships DROP CONSTRAINT memberships_role_check")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE memberships SET role = 'superuser'")
        .execute(&db)
        .await
        .unwrap();
    let refused = backend
        .keys
        .create(&olive, key_form("x"))
        .await
        .unwrap_err();
    assert!(
        refused
            .message
            .starts_with("Something went wrong on our side (request req_port_test)"),
        "{}",
        refused.message
    );
    sqlx::query("UPDATE memberships SET role = 'owner'")
        .execute(&db)
        .await
        .unwrap();
    let key = backend
        .keys
        .create(&olive, key_form("server"))
        .await
        .unwrap()
        .0;

    // An outcome the gateway does not know: 500 with the request id, not a 401.
    let ok = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(ok.status, StatusCode::OK);
    sqlx::query(
        "ALTER FUNCTION gateway_check(bytea, text, text, timestamptz, text[]) RENAME TO gateway_check_real",
    )
    .execute(&db)
    .await
    .unwrap();
    sqlx::query(
        "CREATE FUNCTION gateway_check(bytea, text, text, timestamptz, text[] DEFAULT NULL)
         RETURNS gateway_decision LANGUAGE plpgsql AS $$
         DECLARE d gateway_decision;
         BEGIN d := gateway_check_real($1, $2, $3, $4, $5); d.outcome := 'mystery'; RETURN d; END $$",
    )
    .execute(&db)
    .await
    .unwrap();
    let res = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(
        res.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        res.body
    );
    assert_eq!(
        res.json()["request_id"],
        res.header("request-id").unwrap().as_str()
    );
}
