-- Every catalog the gateway applies, at startup and on reload.
CREATE TABLE deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    catalog_sha256 TEXT NOT NULL,
    functions INTEGER NOT NULL,
    routes INTEGER NOT NULL,
    reason TEXT NOT NULL,
    gateway_id TEXT NOT NULL,
    applied_at_ms INTEGER NOT NULL
);
