-- Every catalog the gateway applies, at startup and on reload.
CREATE TABLE deployments (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    catalog_sha256 TEXT NOT NULL,
    functions BIGINT NOT NULL,
    routes BIGINT NOT NULL,
    reason TEXT NOT NULL,
    gateway_id TEXT NOT NULL,
    applied_at_ms BIGINT NOT NULL
);
