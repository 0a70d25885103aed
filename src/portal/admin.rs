//! The `Admin` port: counts, the email outbox, provider routes. Every method
//! is for platform admins only.

use super::{date_time, errors, Portal};
use crate::gateway::routes;
use crate::gateway::routes::RouteError;
use app::backend::{AdjustForm, Admin, Caller, FormError, PlanForm, RefundForm, RouteForm};
use app::error::AppError;
use app::types::*;
use uuid::Uuid;

impl Portal {
    /// The admin's user id, or why not.
    pub(super) fn admin_id(&self, caller: &Caller) -> Result<Uuid, AppError> {
        let user = caller.admin()?;
        Uuid::parse_str(&user.id).map_err(|e| errors::internal(caller, e))
    }

    pub(super) fn form_admin(&self, caller: &Caller) -> Result<Uuid, FormError> {
        self.admin_id(caller)
            .map_err(|e| FormError::message(e.to_string()))
    }

    /// This instance sees a route change at once; the others when the
    /// database announces it.
    async fn reload_routes(&self) {
        if let Err(e) = self.state.gateway.routes.reload(&self.state.db).await {
            tracing::warn!(error = %e, "cannot reload the provider routes");
        }
    }
}

#[async_trait::async_trait]
impl Admin for Portal {
    async fn outbox(&self, caller: &Caller) -> Result<Vec<OutboxEntry>, AppError> {
        self.admin_id(caller)?;
        let rows = crate::email::recent(&self.state.db, 200)
            .await
            .map_err(|e| errors::page(caller, e))?;
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

    async fn routes(&self, caller: &Caller) -> Result<RoutesPage, AppError> {
        self.admin_id(caller)?;
        let db = &self.state.db;
        let list = routes::list(db)
            .await
            .map_err(|e| errors::page(caller, e))?;
        let plans: Vec<(String, String)> = crate::billing::plans::list_all(db)
            .await
            .map_err(|e| errors::page(caller, e))?
            .into_iter()
            .map(|p| (p.code, p.name))
            .collect();
        Ok(RoutesPage {
            routes: list
                .into_iter()
                .map(|r| RouteView {
                    id: r.id.to_string(),
                    price: r.price_label(),
                    pricing: r.pricing.as_str().to_string(),
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
                    test_upstream_url: r.test_upstream_url.unwrap_or_default(),
                    test_example: r.test_example.unwrap_or_default(),
                })
                .collect(),
            plans,
        })
    }

    async fn save_route(&self, caller: &Caller, form: RouteForm) -> Result<String, FormError> {
        let admin = self.form_admin(caller)?;
        let editing = match form.route_id.trim() {
            "" => None,
            id => {
                Some(Uuid::parse_str(id).map_err(|_| errors::form(caller, RouteError::NotFound))?)
            }
        };
        let input = routes::NewRoute {
            path_prefix: form.path_prefix,
            upstream_url: form.upstream_url,
            endpoint: form.endpoint,
            scope: form.scope,
            pricing: form.pricing,
            price: form.price,
            rate_per_1k: form.rate_per_1k,
            plans: form.plans,
            timeout_ms: form.timeout_ms,
            description: form.description,
            test_upstream_url: form.test_upstream_url,
            test_example: form.test_example,
        };
        let (db, who, now) = (&self.state.db, Some(admin), self.now());
        let saved = match editing {
            Some(id) => routes::update(db, who, id, input, now).await,
            None => routes::create(db, who, input, now).await,
        };
        let route = saved.map_err(|e| errors::form(caller, e))?;
        self.reload_routes().await;
        Ok(format!(
            "Calls to {} now go to {}{}.",
            route.path_prefix,
            route.upstream_url,
            if editing.is_some() {
                ", with the new settings"
            } else {
                ""
            }
        ))
    }

    async fn approvals(&self, caller: &Caller) -> Result<Vec<ApprovalView>, AppError> {
        self.admin_id(caller)?;
        let rows = crate::billing::changes::pending(&self.state.db)
            .await
            .map_err(|e| errors::page(caller, e))?;
        Ok(rows
            .into_iter()
            .map(|(org, name, plan, replaces, at, request)| ApprovalView {
                org_id: org.to_string(),
                org_name: name,
                plan,
                replaces,
                requested: at.map(date_time).unwrap_or_default(),
                request,
            })
            .collect())
    }

    async fn decide_approval(
        &self,
        caller: &Caller,
        org_id: String,
        request: String,
        approve: bool,
        note: String,
    ) -> Result<String, FormError> {
        let admin = self.form_admin(caller)?;
        let org = Uuid::parse_str(org_id.trim())
            .map_err(|_| FormError::message("That request no longer exists."))?;
        let note = note.trim();
        if note.chars().count() > 500 {
            return Err(FormError {
                message: "Please correct the highlighted fields.".into(),
                fields: vec![("note".into(), "A note is at most 500 characters.".into())],
            });
        }
        let charged = crate::billing::changes::decide(&self.state.billing, org, admin, request.trim(), approve, note, self.now())
            .await
            .map_err(|e| errors::form(caller, e))?;
        Ok(match (approve, charged) {
            (false, _) => "Rejected; the customer was told.".into(),
            (true, Some(crate::billing::payments::Collected::Failed(r))) => format!(
                "Approved; the customer was told. Its first charge failed ({}), so the subscription is past due.",
                r.message()
            ),
            (true, _) => "Approved and charged; the customer was told.".into(),
        })
    }

    async fn set_route_active(
        &self,
        caller: &Caller,
        route_id: String,
        active: bool,
    ) -> Result<String, FormError> {
        let admin = self.form_admin(caller)?;
        let result = match Uuid::parse_str(&route_id) {
            Ok(id) => routes::set_active(&self.state.db, Some(admin), id, active, self.now()).await,
            Err(_) => Err(RouteError::NotFound),
        };
        result.map_err(|e| errors::form(caller, e))?;
        self.reload_routes().await;
        Ok(if active {
            "The route is on: its calls go upstream again."
        } else {
            "The route is off: its calls now answer 404."
        }
        .into())
    }

    async fn home(&self, caller: &Caller) -> Result<AdminHome, AppError> {
        self.console_home(caller).await
    }

    async fn recovery(&self, caller: &Caller, query: RecoveryQuery) -> Result<RecoveryPage, AppError> {
        self.console_recovery(caller, query).await
    }

    async fn orgs(&self, caller: &Caller, q: String) -> Result<OrgListPage, AppError> {
        self.console_orgs(caller, q).await
    }

    async fn org(&self, caller: &Caller, id: String) -> Result<OrgPage, AppError> {
        self.console_org(caller, id).await
    }

    async fn refund_invoice(&self, caller: &Caller, form: RefundForm) -> Result<String, FormError> {
        self.console_refund(caller, form).await
    }

    async fn reconcile(&self, caller: &Caller, query: ReconcileQuery) -> Result<ReconcilePage, AppError> {
        self.console_reconcile(caller, query).await
    }

    async fn adjust_credits(&self, caller: &Caller, form: AdjustForm) -> Result<String, FormError> {
        self.console_adjust(caller, form).await
    }

    async fn set_keys_suspended(&self, caller: &Caller, org_id: String, suspend: bool, reason: String) -> Result<String, FormError> {
        self.console_suspend(caller, org_id, suspend, reason).await
    }

    async fn audit(&self, caller: &Caller, query: AuditQuery) -> Result<AuditPage, AppError> {
        self.console_audit(caller, query).await
    }

    async fn audit_csv(&self, caller: &Caller, query: AuditQuery) -> Result<String, AppError> {
        self.console_audit_csv(caller, query).await
    }

    async fn plans(&self, caller: &Caller) -> Result<PlansAdminPage, AppError> {
        self.console_plans(caller).await
    }

    async fn save_plan(&self, caller: &Caller, form: PlanForm) -> Result<String, FormError> {
        self.console_save_plan(caller, form).await
    }

    async fn set_plan_archived(&self, caller: &Caller, plan_id: String, archive: bool) -> Result<String, FormError> {
        self.console_archive_plan(caller, plan_id, archive).await
    }
}
