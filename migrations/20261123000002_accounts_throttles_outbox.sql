-- Account holes found in review, closed:
--
-- 1. Sign-ups and password resets are throttled per client address (each
--    attempt costs a password hash or sends an email), like sign-ins.
-- 2. An email that carries a one-time token (a reset or invitation link)
--    keeps the token only until it is sent: `body_text` is the body with the
--    token removed, `body_secret` the body as sent, cleared on sending.

CREATE TABLE address_attempts (
    action text NOT NULL,
    ip     text NOT NULL,
    at     timestamptz NOT NULL
);
CREATE INDEX address_attempts_idx ON address_attempts (action, ip, at DESC);

ALTER TABLE email_outbox ADD COLUMN body_secret text;
COMMENT ON COLUMN email_outbox.body_text IS 'the body with any one-time token removed';
COMMENT ON COLUMN email_outbox.body_secret IS 'the body as it will be sent, while it holds a token and is unsent';

-- Emails already in the outbox: tokens of sent ones are removed, unsent ones
-- keep theirs until they are sent.
UPDATE email_outbox
   SET body_secret = CASE WHEN sent_at IS NULL THEN body_text END,
       body_text = regexp_replace(regexp_replace(body_text, '(token=)[A-Za-z0-9_-]+', '\1[removed]', 'g'),
                                  '(/invitations/)[A-Za-z0-9_-]+', '\1[removed]', 'g')
 WHERE kind IN ('password_reset', 'invitation');
