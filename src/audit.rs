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
    }
}

pub async fn record(
    conn: &mut PgConnection,
    now: OffsetDateTime,
    actor: Option<Uuid>,
    org: Option<Uuid>,
    action: Action,
    details: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_user_id, org_id, action, details) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(now)
    .bind(actor)
    .bind(org)
    .bind(action)
    .bind(details)
    .execute(conn)
    .await?;
    Ok(())
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
