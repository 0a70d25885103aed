//! The audit log: who did what to which organization. Append-only. Every
//! action is an [`Action`], stored as its text (the one list of them; no
//! action is written as a string anywhere else).

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

crate::text_enum! {
    /// What the audit log records, by area.
    pub enum Action {
        AdminCreated = "admin.created",
        AdminGranted = "admin.granted",
        ApiKeyCreated = "api_key.created",
        ApiKeyRevoked = "api_key.revoked",
        ApiKeyRotated = "api_key.rotated",
        ApiKeyUsedInExplorer = "api_key.used_in_explorer",
        BillingCardAdded = "billing.card_added",
        BillingCardDefault = "billing.card_default",
        BillingCardRemoved = "billing.card_removed",
        BillingLimitsChanged = "billing.limits_changed",
        BillingRefundDue = "billing.refund_due",
        BillingRefundRequested = "billing.refund_requested",
        BillingRefunded = "billing.refunded",
        BillingRefundFailed = "billing.refund_failed",
        BillingDispute = "billing.dispute",
        BillingCardUpdated = "billing.card_updated",
        BillingSandboxRefilled = "billing.sandbox_refilled",
        BillingTopUpStarted = "billing.top_up_started",
        CreditsAdjusted = "credits.adjusted",
        InvitationRevoked = "invitation.revoked",
        MemberInvited = "member.invited",
        MemberJoined = "member.joined",
        MemberRemoved = "member.removed",
        MemberRoleChanged = "member.role_changed",
        RouteCreated = "route.created",
        RouteDisabled = "route.disabled",
        RouteEnabled = "route.enabled",
        RouteUpdated = "route.updated",
        SubscriptionApprovalRequested = "subscription.approval_requested",
        SubscriptionApproved = "subscription.approved",
        SubscriptionCanceled = "subscription.canceled",
        SubscriptionDowngradeScheduled = "subscription.downgrade_scheduled",
        SubscriptionKept = "subscription.kept",
        SubscriptionRejected = "subscription.rejected",
        SubscriptionRenewalStarted = "subscription.renewal_started",
        SubscriptionRenewed = "subscription.renewed",
        SubscriptionRequestWithdrawn = "subscription.request_withdrawn",
        SubscriptionTrialStarted = "subscription.trial_started",
        SubscriptionUpgradeStarted = "subscription.upgrade_started",
        SubscriptionUpgraded = "subscription.upgraded",
        UserEmailVerified = "user.email_verified",
        UserPasswordReset = "user.password_reset",
        UserSignedUp = "user.signed_up",
        OrgKeysSuspended = "org.keys_suspended",
        OrgKeysRestored = "org.keys_restored",
        PlanCreated = "plan.created",
        PlanUpdated = "plan.updated",
        PlanArchived = "plan.archived",
        PlanRestored = "plan.restored",
    }
}

/// One entry: who (`actor`), acting for which organization, what, and the
/// state before and after where the action changed one. The request id is
/// the current request's ([`crate::http::request_id::current`]); a job's
/// entries have none.
#[derive(Debug, Clone)]
pub struct Entry {
    pub actor: Option<Uuid>,
    pub org: Option<Uuid>,
    pub action: Action,
    pub details: serde_json::Value,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl Entry {
    pub fn new(actor: Option<Uuid>, org: Option<Uuid>, action: Action, details: serde_json::Value) -> Entry {
        Entry { actor, org, action, details, before: None, after: None }
    }

    pub fn change(mut self, before: serde_json::Value, after: serde_json::Value) -> Entry {
        self.before = Some(before);
        self.after = Some(after);
        self
    }
}

/// Appends an entry, on the connection (so in the transaction) of the
/// change it records.
pub async fn write(conn: &mut PgConnection, now: OffsetDateTime, entry: Entry) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_user_id, org_id, action, details, before, after, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(now)
    .bind(entry.actor)
    .bind(entry.org)
    .bind(entry.action)
    .bind(entry.details)
    .bind(entry.before)
    .bind(entry.after)
    .bind(crate::http::request_id::current())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn record(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    actor: Option<Uuid>,
    org: Option<Uuid>,
    action: Action,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    write(conn, now, Entry::new(actor, org, action, details)).await
}

#[cfg(test)]
mod tests {
    use super::Action;

    #[test]
    fn every_action_reads_back_and_names_its_area() {
        let mut seen = std::collections::HashSet::new();
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(*a));
            assert!(seen.insert(a.as_str()), "{a} twice");
            let (area, verb) = a.as_str().split_once('.').expect("area.verb");
            assert!(!area.is_empty() && !verb.is_empty() && verb.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{a}");
        }
    }
}
