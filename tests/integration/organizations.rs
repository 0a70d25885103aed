use crate::helpers::*;
use axum::http::StatusCode;
use sqlx::PgPool;

async fn invite(app: &mut TestApp, email: &str, role: &str) -> TestResponse {
    let csrf = extract_csrf(&app.get("/account/members").await.body);
    app.post_form(
        "/api/invite_member",
        &[("csrf", &csrf), ("email", email), ("role", role)],
    )
    .await
}

async fn role_of(db: &PgPool, email: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = $1",
    )
    .bind(email)
    .fetch_optional(db)
    .await
    .unwrap()
}

async fn user_id(db: &PgPool, email: &str) -> String {
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(db)
        .await
        .unwrap();
    id.to_string()
}

#[sqlx::test]
async fn an_invited_person_signs_up_into_the_inviting_organization(db: PgPool) {
    let mut owner = TestApp::new(db.clone()).await;
    owner
        .sign_up("Olive Owner", "olive@acme.test", PASSWORD)
        .await;
    let res = invite(&mut owner, "dev@acme.test", "developer").await;
    assert_eq!(res.location(), "/account/members");
    let members = owner.get("/account/members").await;
    assert!(members.body.contains("Invitation sent to dev@acme.test."));
    assert!(members.body.contains("data-testid=\"invitations\""));

    let (subject, body) = last_email(&db, "dev@acme.test")
        .await
        .expect("an invitation email");
    assert!(subject.starts_with("Join Olive Owner"), "{subject}");
    let path = link_path(&body);
    assert!(path.starts_with("/invitations/"));
    let token = path.trim_start_matches("/invitations/").to_string();

    let mut dev = owner.other_browser();
    let preview = dev.get(&path).await;
    assert_eq!(preview.status, StatusCode::OK);
    assert!(preview.body.contains("developer"));
    let csrf = extract_csrf(&dev.get(&format!("/signup?invitation={token}")).await.body);
    let res = dev
        .post_form(
            "/api/sign_up",
            &[
                ("csrf", &csrf),
                ("display_name", "Dev"),
                ("email", "dev@acme.test"),
                ("password", PASSWORD),
                ("invitation", &token),
            ],
        )
        .await;
    assert_eq!(res.location(), "/account", "{:?}", res);
    assert_eq!(
        role_of(&db, "dev@acme.test").await.as_deref(),
        Some("developer")
    );
    let orgs: i64 = sqlx::query_scalar("SELECT count(*) FROM organizations")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(orgs, 1, "joining by invitation creates no organization");
    assert!(dev
        .get("/account")
        .await
        .body
        .contains("data-testid=\"org-role\">developer<"));

    // The link is used up.
    let again = owner.other_browser().get(&path).await;
    assert!(again
        .body
        .contains("This invitation is invalid, was already used, or has expired."));
}

#[sqlx::test]
async fn an_existing_user_accepts_an_invitation_for_their_own_address_only(db: PgPool) {
    let mut owner = TestApp::new(db.clone()).await;
    owner.sign_up("Olive", "olive@acme.test", PASSWORD).await;
    let mut bob = owner.other_browser();
    bob.sign_up("Bob", "bob@else.test", PASSWORD).await;
    let mut mallory = owner.other_browser();
    mallory
        .sign_up("Mallory", "mallory@else.test", PASSWORD)
        .await;

    invite(&mut owner, "bob@else.test", "billing").await;
    let (_, body) = last_email(&db, "bob@else.test").await.unwrap();
    let path = link_path(&body);
    let token = path.trim_start_matches("/invitations/").to_string();

    let csrf = extract_csrf(&mallory.get(&path).await.body);
    let res = mallory
        .post_form(
            "/api/accept_invitation",
            &[("csrf", &csrf), ("token", &token)],
        )
        .await;
    assert_eq!(res.location(), path);
    assert!(mallory
        .get(&path)
        .await
        .body
        .contains("This invitation was sent to another email address."));

    let csrf = extract_csrf(&bob.get(&path).await.body);
    let res = bob
        .post_form(
            "/api/accept_invitation",
            &[("csrf", &csrf), ("token", &token)],
        )
        .await;
    assert_eq!(res.location(), "/account");
    let account = bob.get("/account").await;
    assert!(
        account.body.contains("data-testid=\"org-name\">Olive"),
        "the session switches to the joined organization"
    );
    assert!(account.body.contains("data-testid=\"org-role\">billing<"));
}

#[sqlx::test]
async fn only_owners_and_admins_manage_members(db: PgPool) {
    let mut owner = TestApp::new(db.clone()).await;
    owner.sign_up("Olive", "olive@acme.test", PASSWORD).await;
    invite(&mut owner, "dev@acme.test", "developer").await;
    let (_, body) = last_email(&db, "dev@acme.test").await.unwrap();
    let token = link_path(&body)
        .trim_start_matches("/invitations/")
        .to_string();
    let mut dev = owner.other_browser();
    let csrf = dev.csrf().await;
    dev.post_form(
        "/api/sign_up",
        &[
            ("csrf", &csrf),
            ("display_name", "Dev"),
            ("email", "dev@acme.test"),
            ("password", PASSWORD),
            ("invitation", &token),
        ],
    )
    .await;

    // The members page is the managers': a developer gets 403 and no list.
    let page = dev.get("/account/members").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!page.body.contains("olive@acme.test"), "no member's address");
    let csrf = extract_csrf(&dev.get("/account").await.body);
    dev.post_form(
        "/api/invite_member",
        &[
            ("csrf", &csrf),
            ("email", "friend@acme.test"),
            ("role", "owner"),
        ],
    )
    .await;
    assert!(last_email(&db, "friend@acme.test").await.is_none());
}

#[sqlx::test]
async fn owner_rules_and_removal_take_effect_at_once(db: PgPool) {
    let mut owner = TestApp::new(db.clone()).await;
    owner.sign_up("Olive", "olive@acme.test", PASSWORD).await;
    invite(&mut owner, "adam@acme.test", "admin").await;
    let (_, body) = last_email(&db, "adam@acme.test").await.unwrap();
    let token = link_path(&body)
        .trim_start_matches("/invitations/")
        .to_string();
    let mut admin = owner.other_browser();
    let csrf = admin.csrf().await;
    admin
        .post_form(
            "/api/sign_up",
            &[
                ("csrf", &csrf),
                ("display_name", "Adam"),
                ("email", "adam@acme.test"),
                ("password", PASSWORD),
                ("invitation", &token),
            ],
        )
        .await;
    assert_eq!(
        role_of(&db, "adam@acme.test").await.as_deref(),
        Some("admin")
    );

    // An admin cannot take the owner role away, nor grant it.
    let olive = user_id(&db, "olive@acme.test").await;
    let csrf = extract_csrf(&admin.get("/account/members").await.body);
    admin
        .post_form(
            "/api/member_role",
            &[("csrf", &csrf), ("user_id", &olive), ("role", "developer")],
        )
        .await;
    assert!(admin
        .get("/account/members")
        .await
        .body
        .contains("Only owners can grant or remove the owner role."));
    assert_eq!(
        role_of(&db, "olive@acme.test").await.as_deref(),
        Some("owner")
    );
    let adam = user_id(&db, "adam@acme.test").await;
    admin
        .post_form(
            "/api/remove_member",
            &[("csrf", &csrf), ("user_id", &olive)],
        )
        .await;
    assert_eq!(
        role_of(&db, "olive@acme.test").await.as_deref(),
        Some("owner")
    );

    // The owner cannot remove themself (the last owner).
    let csrf = extract_csrf(&owner.get("/account/members").await.body);
    owner
        .post_form(
            "/api/remove_member",
            &[("csrf", &csrf), ("user_id", &olive)],
        )
        .await;
    assert!(owner
        .get("/account/members")
        .await
        .body
        .contains("You cannot remove yourself."));

    // The owner re-roles, then removes the admin; the admin's access ends at once.
    owner
        .post_form(
            "/api/member_role",
            &[("csrf", &csrf), ("user_id", &adam), ("role", "developer")],
        )
        .await;
    assert_eq!(
        role_of(&db, "adam@acme.test").await.as_deref(),
        Some("developer")
    );
    owner
        .post_form("/api/remove_member", &[("csrf", &csrf), ("user_id", &adam)])
        .await;
    assert!(owner
        .get("/account/members")
        .await
        .body
        .contains("Member removed."));
    assert_eq!(role_of(&db, "adam@acme.test").await, None);
    assert_eq!(
        admin.get("/account/members").await.status,
        StatusCode::FORBIDDEN
    );

    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log ORDER BY id")
        .fetch_all(&db)
        .await
        .unwrap();
    for expected in [
        "member.invited",
        "member.joined",
        "member.role_changed",
        "member.removed",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} in {actions:?}"
        );
    }
}

#[sqlx::test]
async fn invitations_are_validated_and_can_be_revoked(db: PgPool) {
    let mut owner = TestApp::new(db.clone()).await;
    owner.sign_up("Olive", "olive@acme.test", PASSWORD).await;
    invite(&mut owner, "not-an-email", "developer").await;
    let page = owner.get("/account/members").await;
    assert!(page
        .body
        .contains("Enter an email address like name@example.com."));
    assert!(page.body.contains("value=\"not-an-email\""));
    invite(&mut owner, "olive@acme.test", "developer").await;
    assert!(owner
        .get("/account/members")
        .await
        .body
        .contains("This person is already a member."));

    invite(&mut owner, "temp@acme.test", "developer").await;
    let (_, body) = last_email(&db, "temp@acme.test").await.unwrap();
    let path = link_path(&body);
    let id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM invitations WHERE email = 'temp@acme.test'")
            .fetch_one(&db)
            .await
            .unwrap();
    let csrf = extract_csrf(&owner.get("/account/members").await.body);
    owner
        .post_form(
            "/api/revoke_invitation",
            &[("csrf", &csrf), ("invitation_id", &id.to_string())],
        )
        .await;
    assert!(owner
        .other_browser()
        .get(&path)
        .await
        .body
        .contains("This invitation is invalid"));
}

#[sqlx::test]
async fn the_organization_switcher_acts_for_the_chosen_one_and_survives_sign_in(db: sqlx::PgPool) {
    let mut bob = TestApp::new(db.clone()).await;
    bob.sign_up("Bob", "bob@example.com", PASSWORD).await;
    let bob_org = bob.org_of("bob@example.com").await;
    let mut ada = bob.other_browser();
    ada.sign_up("Ada", "ada@example.com", PASSWORD).await;
    let ada_org = ada.org_of("ada@example.com").await;
    // One organization: no switcher.
    assert!(!ada.get("/account").await.body.contains("data-testid=\"org-switcher\""));
    invite(&mut bob, "ada@example.com", "developer").await;
    let (_, body) = last_email(&db, "ada@example.com").await.expect("an invitation");
    let token = link_path(&body).trim_start_matches("/invitations/").to_string();
    let csrf = extract_csrf(&ada.get(&format!("/invitations/{token}")).await.body);
    let res = ada.post_form("/api/accept_invitation", &[("csrf", &csrf), ("token", &token)]).await;
    assert_eq!(res.location(), "/account");
    let mut joined = ada;
    let page = joined.get("/account/keys").await.body;
    assert!(page.contains("data-testid=\"org-switcher\""), "two organizations: a switcher");
    let names: Vec<(uuid::Uuid, String)> = sqlx::query_as("SELECT id, name FROM organizations").fetch_all(&db).await.unwrap();
    let name = |id: uuid::Uuid| names.iter().find(|n| n.0 == id).unwrap().1.clone();
    let (bob_name, ada_name) = (name(bob_org), name(ada_org));
    // Switch to Ada's own organization from the keys page: back on it, acting there.
    let csrf = extract_csrf(&page);
    let ada_id = ada_org.to_string();
    let res = joined.post_form("/api/switch_org", &[("csrf", &csrf), ("org_id", &ada_id), ("return_to", "/account/keys")]).await;
    assert_eq!(res.location(), "/account/keys");
    let members = decode_html(&joined.get("/account/members").await.body).replace("<!>", "");
    assert!(members.contains(&format!("Members of {ada_name}")), "acts for the chosen organization: {ada_name} {}", &members[members.find("<h1").unwrap_or(0)..][..200.min(members.len())]);
    // An organization she does not belong to (any spelling): refused, nothing changes.
    let mut stranger = joined.other_browser();
    stranger.sign_up("Cy", "cy@example.com", PASSWORD).await;
    let cy_org = stranger.org_of("cy@example.com").await;
    for spelling in [cy_org.to_string(), cy_org.to_string().to_uppercase(), cy_org.simple().to_string()] {
        let csrf = extract_csrf(&joined.get("/account").await.body);
        joined.post_form("/api/switch_org", &[("csrf", &csrf), ("org_id", &spelling), ("return_to", "/account")]).await;
        let last: Option<uuid::Uuid> = sqlx::query_scalar("SELECT last_org_id FROM users WHERE email = 'ada@example.com'").fetch_one(&db).await.unwrap();
        assert_eq!(last, Some(ada_org), "{spelling}");
    }
    assert!(decode_html(&joined.get("/account").await.body).contains("not a member of that organization"));
    // Signed out and in again: still the one chosen.
    joined.sign_out().await;
    joined.sign_in("ada@example.com", PASSWORD).await;
    let members = decode_html(&joined.get("/account/members").await.body).replace("<!>", "");
    assert!(members.contains(&format!("Members of {ada_name}")), "{members}");
    let csrf = extract_csrf(&members);
    let bob_id = bob_org.to_string();
    joined.post_form("/api/switch_org", &[("csrf", &csrf), ("org_id", &bob_id), ("return_to", "/account")]).await;
    joined.sign_out().await;
    joined.sign_in("ada@example.com", PASSWORD).await;
    let last: Option<uuid::Uuid> = sqlx::query_scalar("SELECT last_org_id FROM users WHERE email = 'ada@example.com'").fetch_one(&db).await.unwrap();
    assert_eq!(last, Some(bob_org));
    let page = joined.get("/account").await.body;
    assert!(page.contains(&format!("<option value=\"{bob_org}\" selected")), "the next sign-in lands in the organization chosen last");
    // A developer there: the members page is not hers to see.
    assert_eq!(joined.get("/account/members").await.status, StatusCode::FORBIDDEN, "{bob_name}");
}
