-- The coordinator's durable documents when a database is configured (issue 11): its term and
-- reserved epoch mark (`coordinator.json`), the API-added subscriptions (`subscriptions.json`).
-- A standby on another host reads the same rows when it takes over. `term` fences a deposed
-- coordinator: a write only replaces a row whose term is not above the writer's.
CREATE TABLE IF NOT EXISTS coordinator_state (
    name       text        PRIMARY KEY,
    term       bigint      NOT NULL CHECK (term >= 0),
    body       text        NOT NULL,
    updated_at timestamptz NOT NULL
);
