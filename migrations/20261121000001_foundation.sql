-- Foundation: accounts, organizations, sessions, sign-in throttling, password
-- resets, the email outbox, plans and subscriptions, and the audit log.
-- Forward-only: later changes come as new migrations.

CREATE TABLE users (
    id                uuid PRIMARY KEY,
    email             text NOT NULL,
    display_name      text NOT NULL,
    -- argon2id PHC string; never the password itself.
    password_hash     text NOT NULL,
    is_platform_admin boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_shape CHECK (position('@' in email) > 1 AND length(email) <= 254)
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE organizations (
    id         uuid PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    slug       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'billing')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);

CREATE TABLE invitations (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email       text NOT NULL,
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'billing')),
    -- SHA-256 of the token in the emailed link.
    token_hash  bytea NOT NULL UNIQUE,
    invited_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX invitations_org_idx ON invitations (org_id);
-- At most one open invitation per address and organization.
CREATE UNIQUE INDEX invitations_open_key ON invitations (org_id, lower(email))
    WHERE accepted_at IS NULL AND revoked_at IS NULL;

-- Browser sessions (tower-sessions). The cookie carries the session id; the
-- table keeps only its SHA-256, so a read of the table cannot hijack a session.
CREATE TABLE sessions (
    id_hash    bytea PRIMARY KEY,
    user_id    uuid REFERENCES users (id) ON DELETE CASCADE,
    data       jsonb NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
CREATE INDEX sessions_user_idx ON sessions (user_id);

-- Every sign-in attempt, for throttling per account and per client address.
CREATE TABLE login_attempts (
    id         bigserial PRIMARY KEY,
    email      text NOT NULL,
    ip         text NOT NULL,
    succeeded  boolean NOT NULL,
    at         timestamptz NOT NULL
);
CREATE INDEX login_attempts_email_idx ON login_attempts (email, at DESC);
CREATE INDEX login_attempts_ip_idx ON login_attempts (ip, at DESC);

CREATE TABLE password_resets (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX password_resets_user_idx ON password_resets (user_id);

-- Every email Tollgate sends is written here first, in the transaction that
-- caused it; a background sender delivers it by SMTP when SMTP is configured.
-- Platform admins read it at /admin/outbox.
CREATE TABLE email_outbox (
    id         uuid PRIMARY KEY,
    to_address text NOT NULL,
    subject    text NOT NULL,
    body_text  text NOT NULL,
    kind       text NOT NULL,
    created_at timestamptz NOT NULL,
    sent_at    timestamptz,
    attempts   integer NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX email_outbox_pending_idx ON email_outbox (created_at) WHERE sent_at IS NULL;

CREATE TABLE plans (
    id                 uuid PRIMARY KEY,
    code               text NOT NULL UNIQUE CHECK (code ~ '^[a-z][a-z0-9_-]{0,31}$'),
    name               text NOT NULL,
    price_minor        bigint NOT NULL CHECK (price_minor >= 0),
    currency           char(3) NOT NULL,
    included_credits   bigint NOT NULL CHECK (included_credits >= 0),
    rate_limit_per_sec integer NOT NULL CHECK (rate_limit_per_sec > 0),
    requires_approval  boolean NOT NULL DEFAULT false,
    -- Endpoint ids the plan includes (for example 'ping', 'sentiment').
    endpoints          text[] NOT NULL DEFAULT '{}',
    sort_order         integer NOT NULL DEFAULT 0,
    active             boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- One current subscription per organization; its history lives in the audit log.
CREATE TABLE subscriptions (
    id                   uuid PRIMARY KEY,
    org_id               uuid NOT NULL UNIQUE REFERENCES organizations (id) ON DELETE CASCADE,
    plan_id              uuid NOT NULL REFERENCES plans (id),
    status               text NOT NULL CHECK (status IN
                           ('pending_approval', 'trialing', 'active', 'past_due', 'unpaid', 'canceled', 'expired')),
    -- Half-open billing period [current_period_start, current_period_end).
    current_period_start timestamptz NOT NULL,
    current_period_end   timestamptz NOT NULL,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    grace_until          timestamptz,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    CHECK (current_period_end > current_period_start)
);

CREATE TABLE audit_log (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL,
    actor_user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    org_id        uuid REFERENCES organizations (id) ON DELETE SET NULL,
    action        text NOT NULL,
    details       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_org_idx ON audit_log (org_id, at DESC);
