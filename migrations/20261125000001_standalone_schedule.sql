-- Standalone mode schedules from the same manifests as the operator but has no cluster to
-- keep its scheduling state in: it lives here, so a restart neither re-runs nor forgets.

-- When each report became schedulable: slots at or before it are never run nor counted as
-- missed (no surprise run when a report is added or resumed).
CREATE TABLE schedule_state (
    namespace    text        NOT NULL,
    report       text        NOT NULL,
    active_since timestamptz NOT NULL,
    suspended    boolean     NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, report)
);

-- One row per handled slot of a report's run or backup schedule. Inserting the row is the
-- claim: of two schedulers that find the same slot due, only the one whose insert went in
-- runs it.
CREATE TABLE schedule_slots (
    namespace   text        NOT NULL,
    report      text        NOT NULL,
    task        text        NOT NULL CHECK (task IN ('run', 'backup')),
    slot        timestamptz NOT NULL,
    state       text        NOT NULL CHECK (state IN ('Started', 'Finished', 'Failed', 'Missed')),
    error       text,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (namespace, report, task, slot)
);

CREATE INDEX schedule_slots_unfinished ON schedule_slots (state) WHERE state = 'Started';
