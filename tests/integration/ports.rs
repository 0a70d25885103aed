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
            email_verified: false,
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
    // A free call is decided in memory, from the rows; a charged one of an
    // organization this poor takes the exact path, through the function.
    let res = app.call("GET", "/v1/ping", Some(&key), None, &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = app.call("POST", "/v1/text/sentiment", Some(&key), Some(r#"{"text":"good"}"#), &[]).await;
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

/// Invites `email` as `role` from `inviter` and signs them up through the
/// emailed link, all at the port; returns them as a caller.
async fn joined(
    backend: &Backend,
    db: &PgPool,
    inviter: &Caller,
    email: &str,
    role: Role,
) -> Caller {
    let form = app::backend::InviteForm {
        email: email.into(),
        role: role.as_str().into(),
    };
    backend.accounts.invite(inviter, form).await.unwrap();
    let (_, body) = last_email(db, email).await.expect("an invitation email");
    let token = link_path(&body)
        .trim_start_matches("/invitations/")
        .to_string();
    let form = SignUpForm {
        display_name: "Member".into(),
        email: email.into(),
        password: PASSWORD.into(),
        organization: String::new(),
        invitation: Some(token),
    };
    let signed = backend.accounts.sign_up(&anonymous(), form).await.unwrap();
    Caller {
        user: Some(CallerUser {
            id: signed.user_id,
            email: email.into(),
            display_name: "Member".into(),
            email_verified: false,
        }),
        org: Some(CallerOrg {
            role,
            ..inviter.org.clone().unwrap()
        }),
        ..anonymous()
    }
}

#[sqlx::test]
async fn member_rules_hold_at_the_port(db: PgPool) {
    let (_app, backend) = ports(&db).await;
    let olive = owner(&backend, "olive@example.com").await;
    let olive_id = olive.user.clone().unwrap().id;
    let dev = joined(&backend, &db, &olive, "dev@example.com", Role::Developer).await;
    let adam = joined(&backend, &db, &olive, "adam@example.com", Role::Admin).await;
    let adam_id = adam.user.clone().unwrap().id;

    // Developers do not invite; admins neither grant nor take ownership.
    let invite = |email: &str, role: &str| app::backend::InviteForm {
        email: email.into(),
        role: role.into(),
    };
    assert_eq!(
        backend
            .accounts
            .invite(&dev, invite("friend@example.com", "owner"))
            .await
            .unwrap_err()
            .message,
        "Only owners and admins invite members."
    );
    assert!(last_email(&db, "friend@example.com").await.is_none());
    let demote_owner = MemberRoleForm {
        user_id: olive_id.clone(),
        role: "developer".into(),
    };
    assert_eq!(
        backend
            .accounts
            .change_role(&adam, demote_owner)
            .await
            .unwrap_err()
            .message,
        "Only owners can grant or remove the owner role."
    );
    assert!(backend
        .accounts
        .remove_member(&adam, olive_id.clone())
        .await
        .is_err());
    assert_eq!(
        backend
            .accounts
            .remove_member(&olive, olive_id)
            .await
            .unwrap_err()
            .message,
        "You cannot remove yourself."
    );

    // Invitations are checked, and can be taken back.
    let bad = backend
        .accounts
        .invite(&olive, invite("not-an-email", "developer"))
        .await
        .unwrap_err();
    assert_eq!(
        bad.fields,
        vec![(
            "email".to_string(),
            "Enter an email address like name@example.com.".to_string()
        )]
    );
    let again = backend
        .accounts
        .invite(&olive, invite("dev@example.com", "developer"))
        .await
        .unwrap_err();
    assert_eq!(
        again.fields,
        vec![(
            "email".to_string(),
            "This person is already a member.".to_string()
        )]
    );
    backend
        .accounts
        .invite(&olive, invite("temp@example.com", "billing"))
        .await
        .unwrap();
    let page = backend.accounts.members(&olive).await.unwrap();
    let temp = page
        .invitations
        .iter()
        .find(|i| i.email == "temp@example.com")
        .unwrap();
    assert_eq!(temp.role, "billing");
    assert_eq!(
        backend
            .accounts
            .revoke_invitation(&olive, temp.id.clone())
            .await
            .unwrap(),
        "Invitation revoked."
    );
    assert!(backend
        .accounts
        .members(&olive)
        .await
        .unwrap()
        .invitations
        .is_empty());

    // The owner re-roles, then removes the admin: the admin's next request
    // finds no organization.
    let change = MemberRoleForm {
        user_id: adam_id.clone(),
        role: "developer".into(),
    };
    assert_eq!(
        backend.accounts.change_role(&olive, change).await.unwrap(),
        "Role changed."
    );
    assert_eq!(
        backend
            .accounts
            .remove_member(&olive, adam_id)
            .await
            .unwrap(),
        "Member removed. Their access ended at once."
    );
    let roles: Vec<String> = backend
        .accounts
        .members(&olive)
        .await
        .unwrap()
        .members
        .into_iter()
        .map(|m| m.role)
        .collect();
    assert_eq!(roles, vec!["owner", "developer"]);
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log ORDER BY id")
        .fetch_all(&db)
        .await
        .unwrap();
    for expected in [
        "member.invited",
        "member.joined",
        "member.role_changed",
        "member.removed",
        "invitation.revoked",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} in {actions:?}"
        );
    }
}

#[sqlx::test]
async fn billing_docs_and_usage_answer_for_the_callers_organization(db: PgPool) {
    let (_app, backend) = ports(&db).await;
    let olive = owner(&backend, "olive@example.com").await;
    let plans = backend.billing.plans().await.unwrap();
    let codes: Vec<&str> = plans.iter().map(|p| p.code.as_str()).collect();
    assert_eq!(codes, vec!["free", "pro", "enterprise"]);
    assert_eq!(plans[1].price, "$29.00");
    let overview = backend.billing.overview(&olive).await.unwrap();
    assert_eq!(overview.plan.code, "free");
    assert_eq!(overview.status, "active");
    assert_eq!(
        backend.billing.overview(&anonymous()).await.unwrap_err(),
        AppError::NotSignedIn
    );
    let doc = backend
        .docs
        .page(&anonymous(), "errors/insufficient_credits".into())
        .await
        .unwrap();
    assert!(doc.html.contains("Top up"), "{}", doc.html);
    assert!(!doc.nav.is_empty());
    assert_eq!(
        backend.docs.page(&anonymous(), "../Cargo.toml".into()).await.unwrap_err(),
        AppError::NotFound
    );
    let usage = backend.usage.balances(&olive).await.unwrap();
    assert_eq!((usage.live, usage.sandbox), (100, 1000));
}
