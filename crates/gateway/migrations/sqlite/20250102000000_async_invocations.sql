-- Asynchronous invocations (X-Amz-Invocation-Type: Event): stored before
-- the 202, claimed by a gateway's dispatcher with a lease, retried like
-- Lambda, kept with their outcome for inspection.
CREATE TABLE async_invocations (
    request_id TEXT PRIMARY KEY,
    function_name TEXT NOT NULL,
    invoked_function_arn TEXT NOT NULL,
    payload BLOB NOT NULL,
    trace_id TEXT NOT NULL,
    client_context TEXT,
    -- queued | running | succeeded | failed
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    enqueued_at_ms INTEGER NOT NULL,
    due_at_ms INTEGER NOT NULL,
    claimed_by TEXT,
    lease_until_ms INTEGER,
    finished_at_ms INTEGER
);
CREATE INDEX async_invocations_due ON async_invocations (status, due_at_ms);
