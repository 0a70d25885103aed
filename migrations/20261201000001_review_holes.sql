-- Review holes (issue 16).
-- A request for approval keeps the downgrade that was scheduled before it,
-- so withdrawing (or a rejection) puts it back.
ALTER TABLE subscriptions ADD COLUMN held_next_plan_id uuid REFERENCES plans (id);

-- Test keys never reach a route's live upstream: they go to its test
-- upstream, or get its example answer.
ALTER TABLE routes ADD COLUMN test_upstream_url text, ADD COLUMN test_example text;
