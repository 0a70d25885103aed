//! Saved cards: added through the processor (Tollgate keeps brand, last 4,
//! expiry and the processor's reference), one default per organization,
//! removed softly (charges keep pointing at the card they used). Adding a
//! card or changing the default charges every owed invoice again at once.

use super::processor::ProcessorError;
use super::renewals::retry_owed;
use super::payments::Collected;
use super::BillingError;
use super::Billing;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SavedCard {
    pub id: Uuid,
    pub brand: String,
    pub last4: String,
    pub exp_month: i16,
    pub exp_year: i16,
    pub is_default: bool,
}

/// The organization's cards with the processor taking payments (one saved
/// with another, before a switch, cannot be charged and is not shown).
pub async fn list(state: &Billing, org: Uuid) -> Result<Vec<SavedCard>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, brand, last4, exp_month, exp_year, is_default FROM payment_methods
          WHERE org_id = $1 AND removed_at IS NULL AND processor = $2 ORDER BY is_default DESC, created_at DESC",
    )
    .bind(org)
    .bind(state.processor.name())
    .fetch_all(&state.db)
    .await
}

/// Whether the organization has a default card with `processor` (the one
/// taking payments).
pub(crate) async fn has_default(conn: &mut sqlx::PgConnection, processor: &str, org: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM payment_methods WHERE org_id = $1 AND is_default AND removed_at IS NULL AND processor = $2)",
    )
    .bind(org)
    .bind(processor)
    .fetch_one(conn)
    .await
}

/// Adds a card the processor tokenized (the default when asked, or when it
/// is the first), then retries what is owed. Returns the retries' outcomes.
pub async fn add(
    state: &Billing,
    org: Uuid,
    user: Uuid,
    token: &str,
    make_default: bool,
    now: OffsetDateTime,
) -> Result<Vec<Collected>, BillingError> {
    let customer = super::customer(&state.db, org).await?;
    let saved = match state.processor.attach_card(&customer, token, now).await {
        Ok(s) => s,
        Err(ProcessorError::Refused(r)) if r.code == "token_invalid" => {
            return Err(BillingError::State("This card form expired; enter the card again.".into()))
        }
        Err(ProcessorError::Refused(r)) => return Err(BillingError::Refused(r)),
        Err(ProcessorError::Unavailable(e)) => {
            tracing::warn!(error = %e, "processor unavailable while saving a card");
            return Err(BillingError::State("The payment processor is unavailable; try again in a moment.".into()));
        }
    };
    let mut tx = state.db.begin().await?;
    // Serializes card changes of one organization.
    sqlx::query("SELECT 1 FROM org_meters WHERE org_id = $1 FOR UPDATE")
        .bind(org)
        .execute(&mut *tx)
        .await?;
    let has_default = has_default(&mut tx, state.processor.name(), org).await?;
    let default = make_default || !has_default;
    if default {
        sqlx::query("UPDATE payment_methods SET is_default = false WHERE org_id = $1 AND is_default")
            .bind(org)
            .execute(&mut *tx)
            .await?;
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO payment_methods (id, org_id, brand, last4, exp_month, exp_year, is_default, created_at, processor, processor_ref, fingerprint)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(org)
    .bind(&saved.brand)
    .bind(&saved.last4)
    .bind(saved.exp_month)
    .bind(saved.exp_year)
    .bind(default)
    .bind(now)
    .bind(state.processor.name())
    .bind(&saved.reference)
    .bind(&saved.fingerprint)
    .execute(&mut *tx)
    .await?;
    let details = serde_json::json!({"card": id, "brand": saved.brand, "last4": saved.last4, "default": default});
    crate::audit::record(&mut tx, now, Some(user), Some(org), crate::audit::Action::BillingCardAdded, details).await?;
    tx.commit().await?;
    if default {
        retry_owed(state, org, now, super::payments::WAIT).await
    } else {
        Ok(Vec::new())
    }
}

/// A saved card's new details from its processor (a reissued card's
/// expiry, say).
pub async fn updated(
    tx: &mut sqlx::PgConnection,
    processor: &str,
    card: &super::webhooks::CardEvent,
    now: OffsetDateTime,
) -> Result<super::payments::Applied, super::payments::EventError> {
    let last4: String = card.last4.chars().filter(char::is_ascii_digit).take(4).collect();
    let known: Option<(Uuid, Uuid)> = sqlx::query_as(
        "UPDATE payment_methods SET brand = $3, last4 = $4, exp_month = $5, exp_year = $6
          WHERE processor = $1 AND processor_ref = $2 AND removed_at IS NULL AND length($4) = 4
          RETURNING id, org_id",
    )
    .bind(processor)
    .bind(&card.reference)
    .bind(card.brand.chars().take(20).collect::<String>())
    .bind(&last4)
    .bind(card.exp_month)
    .bind(card.exp_year)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, org)) = known else {
        return Ok(super::payments::Applied::Ignored);
    };
    let details = serde_json::json!({"card": id, "brand": card.brand, "last4": last4, "exp_month": card.exp_month, "exp_year": card.exp_year});
    crate::audit::record(tx, now, None, Some(org), crate::audit::Action::BillingCardUpdated, details).await?;
    Ok(super::payments::Applied::Settled)
}

fn parse(id: &str) -> Result<Uuid, BillingError> {
    Uuid::parse_str(id.trim()).map_err(|_| BillingError::NotFound)
}

/// Makes one of the organization's cards the default, then retries what is
/// owed.
pub async fn make_default(state: &Billing, org: Uuid, user: Uuid, id: &str, now: OffsetDateTime) -> Result<Vec<Collected>, BillingError> {
    let id = parse(id)?;
    let mut tx = state.db.begin().await?;
    sqlx::query("SELECT 1 FROM org_meters WHERE org_id = $1 FOR UPDATE")
        .bind(org)
        .execute(&mut *tx)
        .await?;
    let mine: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM payment_methods WHERE id = $1 AND org_id = $2 AND removed_at IS NULL AND processor = $3)",
    )
    .bind(id)
    .bind(org)
    .bind(state.processor.name())
    .fetch_one(&mut *tx)
    .await?;
    if !mine {
        return Err(BillingError::NotFound);
    }
    sqlx::query("UPDATE payment_methods SET is_default = false WHERE org_id = $1 AND is_default")
        .bind(org)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE payment_methods SET is_default = true WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    crate::audit::record(&mut tx, now, Some(user), Some(org), crate::audit::Action::BillingCardDefault, serde_json::json!({"card": id})).await?;
    tx.commit().await?;
    retry_owed(state, org, now, super::payments::WAIT).await
}

/// Removes a card; the newest other card becomes the default. The only card
/// of a paid plan stays until another is added.
pub async fn remove(state: &Billing, org: Uuid, user: Uuid, id: &str, now: OffsetDateTime) -> Result<(), BillingError> {
    let id = parse(id)?;
    let mut tx = state.db.begin().await?;
    sqlx::query("SELECT 1 FROM org_meters WHERE org_id = $1 FOR UPDATE")
        .bind(org)
        .execute(&mut *tx)
        .await?;
    let removed = sqlx::query(
        "UPDATE payment_methods SET removed_at = $3, is_default = false WHERE id = $1 AND org_id = $2 AND removed_at IS NULL",
    )
    .bind(id)
    .bind(org)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if removed == 0 {
        return Err(BillingError::NotFound);
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM payment_methods WHERE org_id = $1 AND removed_at IS NULL AND processor = $2")
        .bind(org)
        .bind(state.processor.name())
        .fetch_one(&mut *tx)
        .await?;
    let paid: bool = sqlx::query_scalar(
        "SELECT p.price_minor > 0 AND s.status NOT IN ('expired', 'canceled')
           FROM subscriptions s JOIN plans p ON p.id = s.plan_id WHERE s.org_id = $1",
    )
    .bind(org)
    .fetch_one(&mut *tx)
    .await?;
    if left == 0 && paid {
        return Err(BillingError::State("Your paid plan renews on this card: add another card before removing it.".into()));
    }
    sqlx::query(
        "UPDATE payment_methods SET is_default = true
          WHERE id = (SELECT id FROM payment_methods WHERE org_id = $1 AND removed_at IS NULL AND processor = $2
                       ORDER BY created_at DESC LIMIT 1)
            AND NOT EXISTS (SELECT 1 FROM payment_methods WHERE org_id = $1 AND is_default AND removed_at IS NULL AND processor = $2)",
    )
    .bind(org)
    .bind(state.processor.name())
    .execute(&mut *tx)
    .await?;
    crate::audit::record(&mut tx, now, Some(user), Some(org), crate::audit::Action::BillingCardRemoved, serde_json::json!({"card": id})).await?;
    tx.commit().await?;
    Ok(())
}
