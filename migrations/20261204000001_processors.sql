-- A second payment processor (Stripe) beside the sandbox: strong customer
-- authentication on charges, refunds through the processor, disputes, and
-- the Stripe processor's own records (like the sandbox's `sandbox_*`:
-- billing never reads them).

-- A charge the card's bank wants the customer to confirm (3-D Secure): it
-- stays pending until the customer completes it in the browser, the
-- processor reports it, or it is abandoned (then it fails).
ALTER TABLE charges ADD COLUMN action_required_at timestamptz;
CREATE INDEX charges_action_idx ON charges (action_required_at) WHERE action_required_at IS NOT NULL AND status = 'pending';
CREATE INDEX charges_processor_ref_idx ON charges (processor, processor_ref) WHERE processor_ref IS NOT NULL;

-- Money sent back to the customer, through the processor that took it.
-- The refunds of a charge never exceed it (checked under the charge's lock).
CREATE TABLE refunds (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    invoice_id      uuid NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    charge_id       uuid NOT NULL REFERENCES charges (id) ON DELETE CASCADE,
    processor       text NOT NULL,
    idempotency_key text NOT NULL UNIQUE,
    -- The processor's payment sent back (the charge's, or a second
    -- payment the processor took for it).
    charge_ref      text NOT NULL,
    processor_ref   text,
    amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
    currency        char(3) NOT NULL,
    reason          text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    status          text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    failure         text,
    requested_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL,
    settled_at      timestamptz
);
CREATE INDEX refunds_charge_idx ON refunds (charge_id);
CREATE INDEX refunds_invoice_idx ON refunds (invoice_id);
CREATE INDEX refunds_pending_idx ON refunds (created_at) WHERE status = 'pending';

-- The sandbox's refunds (its own records).
CREATE TABLE sandbox_refunds (
    id              text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    charge_id       text NOT NULL REFERENCES sandbox_charges (id),
    amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
    created_at      timestamptz NOT NULL
);

-- The Stripe processor's records: the customer it keeps for each
-- organization, the SetupIntent the card form is confirming, and every
-- SetupIntent already turned into a saved card (a token attaches once).
CREATE TABLE stripe_customers (
    org_id       uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    customer_id  text NOT NULL UNIQUE,
    setup_intent text,
    created_at   timestamptz NOT NULL
);
CREATE TABLE stripe_setups (
    setup_intent text PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    attached_at  timestamptz NOT NULL
);

-- Disputes of payments, as their processor reports them (each event also
-- goes to the audit log): a lost one took the money back, which
-- reconciliation lists.
CREATE TABLE disputes (
    id           text NOT NULL,
    processor    text NOT NULL,
    org_id       uuid REFERENCES organizations (id) ON DELETE CASCADE,
    charge_id    uuid REFERENCES charges (id) ON DELETE CASCADE,
    payment      text NOT NULL,
    amount_minor bigint NOT NULL,
    currency     char(3) NOT NULL,
    reason       text NOT NULL,
    status       text NOT NULL,
    opened_at    timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (processor, id)
);
CREATE INDEX disputes_org_idx ON disputes (org_id);
