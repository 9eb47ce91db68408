-- Schedules (SAM Schedule/ScheduleV2 events): one row per schedule of the
-- running catalog. `definition` is what decides its runs (expression, time
-- zone, enabled); `since_ms` when that definition was first seen (runs
-- before it do not count); `last_fired_ms` the scheduled time of the last
-- run claimed, written (compare-and-set) before the run is invoked.
CREATE TABLE schedules (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    last_fired_ms INTEGER
);
