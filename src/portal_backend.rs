//! The implementation of the UI's port (`app::backend::PortalBackend`): the
//! one place where domain results become what the UI shows. Every method
//! reads the session from the request, authorises, calls the domain once,
//! and either returns data or (for forms) says where the browser goes next,
//! leaving a one-shot [`Flash`] in the session.

use crate::accounts::organizations::{self, Membership};
use crate::accounts::sessions::{self, FLASH, ORG_ID};
use crate::accounts::{invitations, reset, signin, users, AccountsError, Role};
use crate::state::AppState;
use app::backend::*;
use app::error::AppError;
use app::types::*;
use http::request::Parts;
use std::fmt::Display;
use time::OffsetDateTime;
use tower_sessions::Session;
use uuid::Uuid;

pub struct Portal {
    state: AppState,
}

/// The signed-in user acting in their current organization.
struct Actor {
    user: users::User,
    membership: Option<Membership>,
}

impl Actor {
    fn org(&self) -> Result<&Membership, AppError> {
        self.membership.as_ref().ok_or(AppError::Forbidden)
    }
}

fn date(t: OffsetDateTime) -> String {
    format!("{} {}, {}", t.month(), t.day(), t.year())
}

fn date_time(t: OffsetDateTime) -> String {
    format!("{} {:02}:{:02} UTC", date(t), t.hour(), t.minute())
}

/// Only same-site paths are followed after sign-in, never another host.
fn safe_return_to(target: Option<&str>) -> Option<String> {
    let t = target?.trim();
    let ok = t.starts_with('/')
        && !t.starts_with("//")
        && !t.contains('\\')
        && !t.chars().any(char::is_control);
    ok.then(|| t.to_string())
}

fn plan_view(p: &crate::billing::plans::Plan) -> PlanView {
    PlanView {
        code: p.code.clone(),
        name: p.name.clone(),
        price: crate::billing::format_money(p.price_minor, &p.currency),
        included_credits: p.included_credits,
        rate_limit_per_sec: p.rate_limit_per_sec,
        requires_approval: p.requires_approval,
        endpoints: p.endpoints.clone(),
    }
}

fn sentence(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str()),
        None => String::new(),
    }
}

impl Portal {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    fn now(&self) -> OffsetDateTime {
        self.state.clock.now()
    }

    fn internal(&self, req: &Parts, e: impl Display) -> AppError {
        let request_id = crate::http::request_id::of(req);
        tracing::error!(error = %e, "portal backend failed");
        AppError::Internal { request_id }
    }

    fn session(&self, req: &Parts) -> Result<Session, AppError> {
        req.extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| self.internal(req, "no session layer on this route"))
    }

    /// The user's membership in the organization the session shows, falling
    /// back to their first one (for example after being removed from it).
    async fn membership(
        &self,
        session: &Session,
        user: Uuid,
    ) -> Result<Option<Membership>, sqlx::Error> {
        if let Some(org) = sessions::get::<Uuid>(session, ORG_ID).await {
            if let Some(m) = organizations::membership(&self.state.db, org, user).await? {
                return Ok(Some(m));
            }
        }
        match organizations::default_for_user(&self.state.db, user).await? {
            Some(org) => organizations::membership(&self.state.db, org, user).await,
            None => Ok(None),
        }
    }

    async fn actor(&self, req: &Parts) -> Result<Actor, AppError> {
        let session = self.session(req)?;
        let Some(user_id) = sessions::user_id(&session).await else {
            return Err(AppError::NotSignedIn);
        };
        let user = users::by_id(&self.state.db, user_id)
            .await
            .map_err(|e| self.internal(req, e))?
            .ok_or(AppError::NotSignedIn)?;
        let membership = self
            .membership(&session, user_id)
            .await
            .map_err(|e| self.internal(req, e))?;
        Ok(Actor { user, membership })
    }

    async fn admin(&self, req: &Parts) -> Result<Actor, AppError> {
        let actor = self.actor(req).await?;
        if actor.user.is_platform_admin {
            Ok(actor)
        } else {
            Err(AppError::Forbidden)
        }
    }

    async fn set_flash(&self, session: &Session, flash: Flash) {
        if let Err(e) = session.insert(FLASH, flash).await {
            tracing::warn!(error = %e, "could not store the form message");
        }
    }

    async fn notice(&self, session: &Session, form: &str, text: impl Into<String>) {
        let flash = Flash {
            form: form.to_string(),
            notice: Some(text.into()),
            ..Default::default()
        };
        self.set_flash(session, flash).await;
    }

    /// Leaves the error and the values typed for the form, and sends the
    /// browser back to it.
    async fn fail(
        &self,
        req: &Parts,
        session: &Session,
        form: &str,
        err: AccountsError,
        values: &[(&str, &str)],
        back: String,
    ) -> String {
        let mut flash = Flash {
            form: form.to_string(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        match err {
            AccountsError::Invalid(fields) => {
                flash.field_errors = fields
                    .into_iter()
                    .map(|(f, m)| (f.to_string(), m))
                    .collect();
                flash.error = Some("Please correct the highlighted fields.".into());
            }
            AccountsError::InvalidCredentials => {
                flash.error = Some("Wrong email or password.".into())
            }
            AccountsError::Throttled { retry_after_secs } => {
                let minutes = (retry_after_secs + 59) / 60;
                flash.error = Some(format!(
                    "Too many failed sign-ins. Sign-in is paused for this account: try again in {minutes} minute{}, or reset your password.",
                    if minutes == 1 { "" } else { "s" }
                ));
            }
            AccountsError::AddressThrottled {
                action,
                retry_after_secs,
            } => {
                let minutes = (retry_after_secs + 59) / 60;
                flash.error = Some(format!(
                    "Too many {action} from your network. This is paused for your address: try again in {minutes} minute{}.",
                    if minutes == 1 { "" } else { "s" }
                ));
            }
            AccountsError::InvalidToken => {
                flash.error = Some(
                    "This link is invalid, already used, or expired. Ask for a new one.".into(),
                )
            }
            AccountsError::Forbidden(why) => flash.error = Some(sentence(why)),
            AccountsError::NotFound => {
                flash.error =
                    Some("That no longer exists. The page shows what is there now.".into())
            }
            e @ (AccountsError::Db(_) | AccountsError::Hashing(_)) => {
                let AppError::Internal { request_id } = self.internal(req, e) else {
                    unreachable!()
                };
                flash.error = Some(format!(
                    "Something went wrong on our side (request {request_id}). Please try again."
                ));
            }
        }
        self.set_flash(session, flash).await;
        back
    }

    /// Checks the form's anti-forgery token; on mismatch, fails the form.
    async fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        sessions::csrf_matches(session, token).await
    }

    async fn csrf_failed(
        &self,
        session: &Session,
        form: &str,
        values: &[(&str, &str)],
        back: String,
    ) -> String {
        let flash = Flash {
            form: form.to_string(),
            error: Some("This form expired. Please send it again.".into()),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        self.set_flash(session, flash).await;
        back
    }

    /// Resolves the actor of a member-management form, or says where to go.
    /// Checks a signed-in form's token and resolves who sent it, or says
    /// where the browser goes instead. `form` names the form (and its page,
    /// `back`) that a failure message belongs to.
    async fn form_actor(
        &self,
        req: &Parts,
        session: &Session,
        csrf: &str,
        form: &str,
        back: &str,
    ) -> Result<(Actor, Membership), String> {
        if !self.csrf_ok(session, csrf).await {
            return Err(self.csrf_failed(session, form, &[], back.to_string()).await);
        }
        match self.actor(req).await {
            Ok(actor) => match actor.membership.clone() {
                Some(m) => Ok((actor, m)),
                None => Err("/account".into()),
            },
            Err(_) => Err(format!(
                "/login?return_to={}",
                app::components::encode_component(back)
            )),
        }
    }

    /// An admin's form post: the anti-forgery token, then the admin role.
    async fn admin_form(
        &self,
        req: &Parts,
        session: &Session,
        csrf: &str,
        form: &str,
        values: &[(&str, &str)],
        back: &str,
    ) -> Result<Actor, String> {
        if !self.csrf_ok(session, csrf).await {
            return Err(self
                .csrf_failed(session, form, values, back.to_string())
                .await);
        }
        match self.admin(req).await {
            Ok(actor) => Ok(actor),
            Err(AppError::Forbidden) => Err(back.to_string()),
            Err(_) => Err(format!(
                "/login?return_to={}",
                app::components::encode_component(back)
            )),
        }
    }

    /// This instance sees a route change at once; the others when the
    /// database announces it.
    async fn reload_routes(&self) {
        if let Err(e) = self.state.routes.reload(&self.state.db).await {
            tracing::warn!(error = %e, "cannot reload the provider routes");
        }
    }

    async fn establish(
        &self,
        req: &Parts,
        session: &Session,
        user: Uuid,
        org: Option<Uuid>,
    ) -> Result<(), AppError> {
        sessions::establish(session, user, org)
            .await
            .map_err(|e| self.internal(req, e))
    }
}

#[async_trait::async_trait]
impl PortalBackend for Portal {
    async fn viewer(&self, req: &Parts, take_flash: bool) -> Result<Viewer, AppError> {
        let session = self.session(req)?;
        let csrf = sessions::csrf_token(&session)
            .await
            .map_err(|e| self.internal(req, e))?;
        let flash = if take_flash {
            session.remove::<Flash>(FLASH).await.ok().flatten()
        } else {
            None
        };
        let user = match self.actor(req).await {
            Ok(actor) => Some(UserView {
                email: actor.user.email.clone(),
                display_name: actor.user.display_name.clone(),
                is_platform_admin: actor.user.is_platform_admin,
                org: actor.membership.map(|m| OrgView {
                    id: m.org_id.to_string(),
                    name: m.org_name,
                    role: m.role,
                }),
            }),
            Err(AppError::NotSignedIn) => None,
            Err(e) => return Err(e),
        };
        Ok(Viewer { user, csrf, flash })
    }

    fn secure_cookies(&self) -> bool {
        self.state.config.secure_cookies
    }

    async fn sign_up(&self, req: &Parts, form: SignUpForm) -> String {
        let Ok(session) = self.session(req) else {
            return "/signup".into();
        };
        let back = match &form.invitation {
            Some(t) => format!(
                "/signup?invitation={}",
                app::components::encode_component(t)
            ),
            None => "/signup".to_string(),
        };
        let values = [
            ("display_name", form.display_name.as_str()),
            ("email", form.email.as_str()),
            ("organization", form.organization.as_str()),
        ];
        if !self.csrf_ok(&session, &form.csrf).await {
            return self.csrf_failed(&session, "signup", &values, back).await;
        }
        let input = signin::SignUp {
            display_name: form.display_name.clone(),
            email: form.email.clone(),
            password: form.password,
            organization: form.organization.clone(),
            invitation: form.invitation.clone(),
        };
        let ip = crate::http::client_ip(req, self.state.config.trusted_proxies);
        match signin::sign_up(&self.state.db, input, &ip, self.now()).await {
            Ok(s) => {
                if self
                    .establish(req, &session, s.user_id, s.org_id)
                    .await
                    .is_err()
                {
                    return "/login".into();
                }
                self.notice(&session, "", "Welcome to Tollgate! Your account is ready.")
                    .await;
                "/account".into()
            }
            Err(e) => self.fail(req, &session, "signup", e, &values, back).await,
        }
    }

    async fn sign_in(&self, req: &Parts, form: SignInForm) -> String {
        let Ok(session) = self.session(req) else {
            return "/login".into();
        };
        let return_to = safe_return_to(form.return_to.as_deref());
        let back = match &return_to {
            Some(r) => format!("/login?return_to={}", app::components::encode_component(r)),
            None => "/login".to_string(),
        };
        let values = [("email", form.email.as_str())];
        if !self.csrf_ok(&session, &form.csrf).await {
            return self.csrf_failed(&session, "login", &values, back).await;
        }
        let ip = crate::http::client_ip(req, self.state.config.trusted_proxies);
        match signin::sign_in(&self.state.db, &form.email, form.password, &ip, self.now()).await {
            Ok(s) => {
                if self
                    .establish(req, &session, s.user_id, s.org_id)
                    .await
                    .is_err()
                {
                    return back;
                }
                return_to.unwrap_or_else(|| "/account".into())
            }
            Err(e) => self.fail(req, &session, "login", e, &values, back).await,
        }
    }

    async fn sign_out(&self, req: &Parts, csrf: String) -> String {
        let Ok(session) = self.session(req) else {
            return "/".into();
        };
        if !self.csrf_ok(&session, &csrf).await {
            return self.csrf_failed(&session, "", &[], "/account".into()).await;
        }
        // Deletes the session row and expires the cookie: the old id is dead.
        if let Err(e) = session.flush().await {
            tracing::error!(error = %e, "could not end the session");
        }
        "/login".into()
    }

    async fn request_password_reset(&self, req: &Parts, csrf: String, email: String) -> String {
        let Ok(session) = self.session(req) else {
            return "/password/forgot".into();
        };
        let back = "/password/forgot".to_string();
        let values = [("email", email.as_str())];
        if !self.csrf_ok(&session, &csrf).await {
            return self
                .csrf_failed(&session, "password_forgot", &values, back)
                .await;
        }
        let ip = crate::http::client_ip(req, self.state.config.trusted_proxies);
        match reset::request(&self.state.db, &self.state.config, &email, &ip, self.now()).await {
            Ok(()) => {
                let text = "If an account exists for that address, we emailed it a link to choose a new password. The link works once, for one hour.";
                self.notice(&session, "password_forgot", text).await;
                back
            }
            Err(e) => {
                self.fail(req, &session, "password_forgot", e, &values, back)
                    .await
            }
        }
    }

    async fn reset_password(&self, req: &Parts, form: ResetPasswordForm) -> String {
        let Ok(session) = self.session(req) else {
            return "/password/forgot".into();
        };
        let back = format!(
            "/password/reset?token={}",
            app::components::encode_component(&form.token)
        );
        if !self.csrf_ok(&session, &form.csrf).await {
            return self
                .csrf_failed(&session, "password_reset", &[], back)
                .await;
        }
        let ip = crate::http::client_ip(req, self.state.config.trusted_proxies);
        match reset::reset(&self.state.db, &form.token, form.password, &ip, self.now()).await {
            Ok(user) => {
                let org = organizations::default_for_user(&self.state.db, user)
                    .await
                    .ok()
                    .flatten();
                if self.establish(req, &session, user, org).await.is_err() {
                    return "/login".into();
                }
                self.notice(
                    &session,
                    "",
                    "Your password was changed, and every other session was signed out.",
                )
                .await;
                "/account".into()
            }
            Err(e) => {
                self.fail(req, &session, "password_reset", e, &[], back)
                    .await
            }
        }
    }

    async fn members(&self, req: &Parts) -> Result<MembersPage, AppError> {
        let actor = self.actor(req).await?;
        let m = actor.org()?;
        let role = m.role();
        let now = self.now();
        let members = organizations::members(&self.state.db, m.org_id)
            .await
            .map_err(|e| self.internal(req, e))?;
        let invitations = if role.manages_members() {
            invitations::list_open(&self.state.db, m.org_id, now)
                .await
                .map_err(|e| self.internal(req, e))?
        } else {
            Vec::new()
        };
        Ok(MembersPage {
            org_name: m.org_name.clone(),
            my_role: m.role.clone(),
            can_manage: role.manages_members(),
            can_grant_owner: role == Role::Owner,
            members: members
                .into_iter()
                .map(|x| MemberView {
                    user_id: x.user_id.to_string(),
                    is_you: x.user_id == actor.user.id,
                    email: x.email,
                    display_name: x.display_name,
                    role: x.role,
                    joined: date(x.created_at),
                })
                .collect(),
            invitations: invitations
                .into_iter()
                .map(|i| InvitationView {
                    id: i.id.to_string(),
                    email: i.email,
                    role: i.role,
                    expires: date_time(i.expires_at),
                })
                .collect(),
        })
    }

    async fn invite_member(&self, req: &Parts, form: InviteForm) -> String {
        let Ok(session) = self.session(req) else {
            return "/account/members".into();
        };
        let (actor, m) = match self
            .form_actor(req, &session, &form.csrf, "members", "/account/members")
            .await
        {
            Ok(a) => a,
            Err(to) => return to,
        };
        let result = invitations::invite(
            &self.state.db,
            &self.state.config,
            m.org_id,
            actor.user.id,
            m.role(),
            &form.email,
            &form.role,
            self.now(),
        )
        .await;
        match result {
            Ok(()) => {
                self.notice(
                    &session,
                    "members",
                    format!("Invitation sent to {}.", form.email.trim()),
                )
                .await;
                "/account/members".into()
            }
            Err(e) => {
                let values = [("email", form.email.as_str())];
                self.fail(
                    req,
                    &session,
                    "members",
                    e,
                    &values,
                    "/account/members".into(),
                )
                .await
            }
        }
    }

    async fn change_member_role(&self, req: &Parts, form: MemberRoleForm) -> String {
        let Ok(session) = self.session(req) else {
            return "/account/members".into();
        };
        let (actor, m) = match self
            .form_actor(req, &session, &form.csrf, "members", "/account/members")
            .await
        {
            Ok(a) => a,
            Err(to) => return to,
        };
        let result = match (Uuid::parse_str(&form.user_id), Role::parse(&form.role)) {
            (Ok(target), Some(role)) => {
                organizations::change_role(
                    &self.state.db,
                    m.org_id,
                    actor.user.id,
                    m.role(),
                    target,
                    role,
                    self.now(),
                )
                .await
            }
            (Err(_), _) => Err(AccountsError::NotFound),
            (_, None) => Err(AccountsError::field("role", "Choose a role.")),
        };
        match result {
            Ok(()) => {
                self.notice(&session, "members", "Role changed.").await;
                "/account/members".into()
            }
            Err(e) => {
                self.fail(req, &session, "members", e, &[], "/account/members".into())
                    .await
            }
        }
    }

    async fn remove_member(&self, req: &Parts, csrf: String, user_id: String) -> String {
        let Ok(session) = self.session(req) else {
            return "/account/members".into();
        };
        let (actor, m) = match self
            .form_actor(req, &session, &csrf, "members", "/account/members")
            .await
        {
            Ok(a) => a,
            Err(to) => return to,
        };
        let result = match Uuid::parse_str(&user_id) {
            Ok(target) => {
                organizations::remove(
                    &self.state.db,
                    m.org_id,
                    actor.user.id,
                    m.role(),
                    target,
                    self.now(),
                )
                .await
            }
            Err(_) => Err(AccountsError::NotFound),
        };
        match result {
            Ok(()) => {
                self.notice(
                    &session,
                    "members",
                    "Member removed. Their access ended at once.",
                )
                .await;
                "/account/members".into()
            }
            Err(e) => {
                self.fail(req, &session, "members", e, &[], "/account/members".into())
                    .await
            }
        }
    }

    async fn revoke_invitation(&self, req: &Parts, csrf: String, invitation_id: String) -> String {
        let Ok(session) = self.session(req) else {
            return "/account/members".into();
        };
        let (actor, m) = match self
            .form_actor(req, &session, &csrf, "members", "/account/members")
            .await
        {
            Ok(a) => a,
            Err(to) => return to,
        };
        let result = match Uuid::parse_str(&invitation_id) {
            Ok(id) => {
                invitations::revoke(
                    &self.state.db,
                    m.org_id,
                    actor.user.id,
                    m.role(),
                    id,
                    self.now(),
                )
                .await
            }
            Err(_) => Err(AccountsError::NotFound),
        };
        match result {
            Ok(()) => {
                self.notice(&session, "members", "Invitation revoked.")
                    .await;
                "/account/members".into()
            }
            Err(e) => {
                self.fail(req, &session, "members", e, &[], "/account/members".into())
                    .await
            }
        }
    }

    async fn invitation(&self, token: String) -> Result<InvitationPreview, AppError> {
        match invitations::preview(&self.state.db, &token, self.now()).await {
            Ok(i) => Ok(InvitationPreview {
                org_name: i.org_name,
                email: i.email,
                role: i.role,
            }),
            Err(AccountsError::InvalidToken) => Err(AppError::Invalid(
                "This invitation is invalid, was already used, or has expired. Ask for a new one."
                    .into(),
            )),
            Err(e) => {
                tracing::error!(error = %e, "could not load an invitation");
                Err(AppError::Internal {
                    request_id: "invitation".into(),
                })
            }
        }
    }

    async fn accept_invitation(&self, req: &Parts, csrf: String, token: String) -> String {
        let Ok(session) = self.session(req) else {
            return "/".into();
        };
        let back = format!("/invitations/{}", app::components::encode_component(&token));
        if !self.csrf_ok(&session, &csrf).await {
            return self.csrf_failed(&session, "invitation", &[], back).await;
        }
        let Some(user) = sessions::user_id(&session).await else {
            return format!(
                "/login?return_to={}",
                app::components::encode_component(&back)
            );
        };
        match invitations::accept(&self.state.db, &token, user, self.now()).await {
            Ok(org) => {
                let _ = session.insert(ORG_ID, org).await;
                self.notice(&session, "", "You joined the organization.")
                    .await;
                "/account".into()
            }
            Err(e) => self.fail(req, &session, "invitation", e, &[], back).await,
        }
    }

    async fn api_keys(&self, req: &Parts) -> Result<KeysPage, AppError> {
        let actor = self.actor(req).await?;
        let m = actor.org()?;
        let now = self.now();
        let keys = crate::api_keys::store::list(&self.state.db, m.org_id)
            .await
            .map_err(|e| self.internal(req, e))?;
        let balances = crate::billing::ledger::balances(&self.state.db, m.org_id)
            .await
            .map_err(|e| self.internal(req, e))?;
        Ok(KeysPage {
            org_name: m.org_name.clone(),
            can_manage: crate::api_keys::store::may_manage(m.role()),
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
                        mode: k.mode,
                        scopes: k.scopes,
                        created: date_time(k.created_at),
                        last_used: k.last_used_at.map(date_time),
                        expires: ends.map(date_time),
                        status: status.to_string(),
                    }
                })
                .collect(),
            scopes: crate::gateway::routes::scopes(&self.state.routes),
            live_credits: balances.live(),
            sandbox_credits: balances.sandbox,
            new_key: None,
        })
    }

    async fn create_api_key(&self, req: &Parts, form: CreateKeyForm) -> KeyIssued {
        let back = "/account/keys".to_string();
        let issued = |redirect: String| KeyIssued {
            redirect,
            secret: None,
        };
        let Ok(session) = self.session(req) else {
            return issued(back);
        };
        let values = [("name", form.name.as_str())];
        if !self.csrf_ok(&session, &form.csrf).await {
            return issued(self.csrf_failed(&session, "keys", &values, back).await);
        }
        let actor = match self.actor(req).await {
            Ok(a) => a,
            Err(_) => return issued("/login?return_to=%2Faccount%2Fkeys".into()),
        };
        let Some(m) = actor.membership.clone() else {
            return issued("/account".into());
        };
        let expires_in_days = match form.expires_in_days.as_str() {
            "never" | "" => None,
            d => Some(d.parse::<i64>().unwrap_or(-1)),
        };
        let input = crate::api_keys::store::NewKey {
            name: form.name.clone(),
            mode: form.mode.clone(),
            scopes: form.scopes.clone(),
            expires_in_days,
        };
        match crate::api_keys::store::create(
            &self.state.db,
            m.org_id,
            actor.user.id,
            input,
            self.now(),
        )
        .await
        {
            Ok((_, secret)) => KeyIssued {
                redirect: back,
                secret: Some(secret.expose().to_string()),
            },
            Err(e) => issued(self.fail(req, &session, "keys", e, &values, back).await),
        }
    }

    async fn revoke_api_key(&self, req: &Parts, csrf: String, key_id: String) -> String {
        let back = "/account/keys".to_string();
        let Ok(session) = self.session(req) else {
            return back;
        };
        let (actor, m) = match self.form_actor(req, &session, &csrf, "keys", &back).await {
            Ok(a) => a,
            Err(to) => return to,
        };
        let result = match Uuid::parse_str(&key_id) {
            Ok(id) => {
                crate::api_keys::store::revoke(
                    &self.state.db,
                    m.org_id,
                    actor.user.id,
                    id,
                    self.now(),
                )
                .await
            }
            Err(_) => Err(AccountsError::NotFound),
        };
        match result {
            Ok(()) => {
                self.notice(
                    &session,
                    "keys",
                    "Key revoked. Calls with it are refused from now on.",
                )
                .await;
                back
            }
            Err(e) => self.fail(req, &session, "keys", e, &[], back).await,
        }
    }

    async fn rotate_api_key(
        &self,
        req: &Parts,
        csrf: String,
        key_id: String,
        overlap_hours: String,
    ) -> KeyIssued {
        let back = "/account/keys".to_string();
        let issued = |redirect: String| KeyIssued {
            redirect,
            secret: None,
        };
        let Ok(session) = self.session(req) else {
            return issued(back);
        };
        let (actor, m) = match self.form_actor(req, &session, &csrf, "keys", &back).await {
            Ok(a) => a,
            Err(to) => return issued(to),
        };
        let overlap = overlap_hours.trim().parse::<i64>().unwrap_or(-1);
        let result = match Uuid::parse_str(&key_id) {
            Ok(id) => {
                crate::api_keys::store::rotate(
                    &self.state.db,
                    m.org_id,
                    actor.user.id,
                    id,
                    overlap,
                    self.now(),
                )
                .await
            }
            Err(_) => Err(AccountsError::NotFound),
        };
        match result {
            Ok((_, secret)) => KeyIssued {
                redirect: back,
                secret: Some(secret.expose().to_string()),
            },
            Err(e) => issued(self.fail(req, &session, "keys", e, &[], back).await),
        }
    }

    async fn plans(&self) -> Result<Vec<PlanView>, AppError> {
        let plans = crate::billing::plans::list_active(&self.state.db)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not list plans");
                AppError::Internal {
                    request_id: "plans".into(),
                }
            })?;
        Ok(plans.iter().map(plan_view).collect())
    }

    async fn billing_overview(&self, req: &Parts) -> Result<BillingOverview, AppError> {
        let actor = self.actor(req).await?;
        let m = actor.org()?;
        let current = crate::billing::subscriptions::current(&self.state.db, m.org_id)
            .await
            .map_err(|e| self.internal(req, e))?
            .ok_or_else(|| self.internal(req, "organization without a subscription"))?;
        let plans = crate::billing::plans::list_active(&self.state.db)
            .await
            .map_err(|e| self.internal(req, e))?;
        Ok(BillingOverview {
            org_name: m.org_name.clone(),
            plan: plan_view(&current.plan),
            status: current.status,
            period_start: date(current.period_start),
            period_end: date(current.period_end),
            plans: plans.iter().map(plan_view).collect(),
        })
    }

    async fn admin_overview(&self, req: &Parts) -> Result<AdminOverview, AppError> {
        self.admin(req).await?;
        let (users, organizations, platform_admins, unsent_emails): (i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM organizations),
                    (SELECT count(*) FROM users WHERE is_platform_admin),
                    (SELECT count(*) FROM email_outbox WHERE sent_at IS NULL)",
            )
            .fetch_one(&self.state.db)
            .await
            .map_err(|e| self.internal(req, e))?;
        Ok(AdminOverview {
            users,
            organizations,
            platform_admins,
            unsent_emails,
        })
    }

    async fn admin_outbox(&self, req: &Parts) -> Result<Vec<OutboxEntry>, AppError> {
        self.admin(req).await?;
        let rows = crate::email::recent(&self.state.db, 200)
            .await
            .map_err(|e| self.internal(req, e))?;
        // Without SMTP the outbox is how emails reach people, so unsent
        // bodies show whole; with SMTP, admins never see a token.
        let delivers = self.state.config.smtp.is_none();
        Ok(rows
            .into_iter()
            .map(|r| OutboxEntry {
                id: r.id.to_string(),
                to: r.to_address,
                subject: r.subject,
                body: match r.body_secret {
                    Some(whole) if delivers && r.sent_at.is_none() => whole,
                    _ => r.body_text,
                },
                kind: r.kind,
                created: date_time(r.created_at),
                sent: r.sent_at.map(date_time),
                last_error: r.last_error,
            })
            .collect())
    }

    async fn admin_routes(&self, req: &Parts) -> Result<RoutesPage, AppError> {
        self.admin(req).await?;
        let db = &self.state.db;
        let routes = crate::gateway::routes::list(db)
            .await
            .map_err(|e| self.internal(req, e))?;
        let plans: Vec<(String, String)> =
            sqlx::query_as("SELECT code, name FROM plans ORDER BY sort_order, price_minor")
                .fetch_all(db)
                .await
                .map_err(|e| self.internal(req, e))?;
        Ok(RoutesPage {
            routes: routes
                .into_iter()
                .map(|r| RouteView {
                    id: r.id.to_string(),
                    price: r.price_label(),
                    pricing: r.pricing.clone(),
                    credits: r.price,
                    rate_per_1k: r.rate_per_1k,
                    path_prefix: r.path_prefix,
                    upstream_url: r.upstream_url,
                    endpoint: r.endpoint,
                    scope: r.scope,
                    plans: r.plans,
                    timeout_ms: r.timeout_ms,
                    active: r.active,
                    description: r.description,
                })
                .collect(),
            plans,
        })
    }

    async fn save_route(&self, req: &Parts, form: RouteForm) -> String {
        let editing = match form.route_id.trim() {
            "" => None,
            id => match Uuid::parse_str(id) {
                Ok(id) => Some(id),
                Err(_) => return "/admin/routes".into(),
            },
        };
        let back = match editing {
            Some(id) => format!("/admin/routes?edit={id}"),
            None => "/admin/routes".to_string(),
        };
        let Ok(session) = self.session(req) else {
            return back;
        };
        let plans = form.plans.join(",");
        let values = [
            ("path_prefix", form.path_prefix.as_str()),
            ("upstream_url", form.upstream_url.as_str()),
            ("endpoint", form.endpoint.as_str()),
            ("scope", form.scope.as_str()),
            ("pricing", form.pricing.as_str()),
            ("price", form.price.as_str()),
            ("rate_per_1k", form.rate_per_1k.as_str()),
            ("plans", plans.as_str()),
            ("timeout_ms", form.timeout_ms.as_str()),
            ("description", form.description.as_str()),
        ];
        let actor = match self
            .admin_form(req, &session, &form.csrf, "routes", &values, &back)
            .await
        {
            Ok(a) => a,
            Err(to) => return to,
        };
        let input = crate::gateway::routes::NewRoute {
            path_prefix: form.path_prefix.clone(),
            upstream_url: form.upstream_url.clone(),
            endpoint: form.endpoint.clone(),
            scope: form.scope.clone(),
            pricing: form.pricing.clone(),
            price: form.price.clone(),
            rate_per_1k: form.rate_per_1k.clone(),
            plans: form.plans.clone(),
            timeout_ms: form.timeout_ms.clone(),
            description: form.description.clone(),
        };
        let (db, who, now) = (&self.state.db, Some(actor.user.id), self.now());
        let saved = match editing {
            Some(id) => crate::gateway::routes::update(db, who, id, input, now).await,
            None => crate::gateway::routes::create(db, who, input, now).await,
        };
        match saved {
            Ok(route) => {
                self.reload_routes().await;
                let text = format!(
                    "Calls to {} now go to {}{}.",
                    route.path_prefix,
                    route.upstream_url,
                    if editing.is_some() {
                        ", with the new settings"
                    } else {
                        ""
                    }
                );
                self.notice(&session, "routes", text).await;
                "/admin/routes".into()
            }
            Err(e) => self.fail(req, &session, "routes", e, &values, back).await,
        }
    }

    async fn set_route_active(
        &self,
        req: &Parts,
        csrf: String,
        route_id: String,
        active: bool,
    ) -> String {
        let back = "/admin/routes".to_string();
        let Ok(session) = self.session(req) else {
            return back;
        };
        let actor = match self
            .admin_form(req, &session, &csrf, "routes", &[], &back)
            .await
        {
            Ok(a) => a,
            Err(to) => return to,
        };
        let result = match Uuid::parse_str(&route_id) {
            Ok(id) => {
                crate::gateway::routes::set_active(
                    &self.state.db,
                    Some(actor.user.id),
                    id,
                    active,
                    self.now(),
                )
                .await
            }
            Err(_) => Err(AccountsError::NotFound),
        };
        match result {
            Ok(()) => {
                self.reload_routes().await;
                let text = if active {
                    "The route is on: its calls go upstream again."
                } else {
                    "The route is off: its calls now answer 404."
                };
                self.notice(&session, "routes", text).await;
                back
            }
            Err(e) => self.fail(req, &session, "routes", e, &[], back).await,
        }
    }

    async fn doc_page(&self, slug: String) -> Result<DocPage, AppError> {
        let dir = &self.state.config.content_dir;
        let doc = crate::docs::load(dir, &slug)
            .await
            .ok_or(AppError::NotFound)?;
        let nav = crate::docs::nav(dir)
            .await
            .into_iter()
            .map(|(slug, title)| DocLink { slug, title })
            .collect();
        Ok(DocPage {
            slug: doc.slug,
            title: doc.title,
            html: doc.html,
            nav,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_stays_on_this_site() {
        assert_eq!(
            safe_return_to(Some("/account/keys?x=1")),
            Some("/account/keys?x=1".into())
        );
        assert_eq!(safe_return_to(Some("//evil.example")), None);
        assert_eq!(safe_return_to(Some("https://evil.example")), None);
        assert_eq!(safe_return_to(Some("/\\evil.example")), None);
        assert_eq!(safe_return_to(None), None);
    }
}
