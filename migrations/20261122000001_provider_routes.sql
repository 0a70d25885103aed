-- Provider routes go live on every instance as soon as they change: each
-- instance LISTENs on `tollgate_routes` and reloads its route table.
ALTER TABLE routes ADD COLUMN description text NOT NULL DEFAULT '';
ALTER TABLE routes ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

CREATE FUNCTION routes_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tollgate_routes', '');
    RETURN NULL;
END $$;

CREATE TRIGGER routes_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON routes
    FOR EACH STATEMENT EXECUTE FUNCTION routes_changed();
