-- Operations (issue 8): what the scheduled jobs did, maintenance windows,
-- archives of revoked mailboxes, and the daily counters of the reports.
-- (Number 0003: 0002 is the outbound holds of the SMTP work.)

-- One row per thing a job does once: a notice to one mailbox about one
-- deadline, a revocation, a day's counters, a day's retention run. The key
-- says what it is (e.g. "password-warning:12:2027-01-05T02:00:00+00:00:3 days").
-- A process claims a key before doing the work, so two processes running
-- jobs at once never both do it; a claim whose process died is taken over
-- after a lease (claimed_wall: real time, independent of simulated --now).
CREATE TABLE job_actions (
    key          TEXT PRIMARY KEY,
    job          TEXT NOT NULL,
    rule         TEXT,
    target       TEXT,
    state        TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    claimed_by   TEXT NOT NULL,
    claimed_wall REAL NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 1,
    at           TEXT NOT NULL,   -- the job's clock when claimed / finished
    detail       TEXT             -- JSON: what was done, or the error
);
CREATE INDEX job_actions_job ON job_actions(job, state);
CREATE INDEX job_actions_at ON job_actions(at);

-- Each run of the jobs (scheduler tick or `mailserver jobs run`).
CREATE TABLE job_runs (
    id         INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    now        TEXT NOT NULL,     -- the time the jobs ran at (simulated with --now)
    trigger    TEXT NOT NULL,     -- scheduler, cli
    dry_run    INTEGER NOT NULL DEFAULT 0,
    done       INTEGER NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0,
    finished_at TEXT
);

-- Đ8.1.c planned downtime, announced to every mailbox.
CREATE TABLE maintenance (
    id            INTEGER PRIMARY KEY,
    start_at      TEXT NOT NULL,
    end_at        TEXT NOT NULL,
    reason        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    working_days  INTEGER NOT NULL,  -- full working days between the notice day and the start day
    forced_reason TEXT,              -- --force: why the Đ8.1.c notice period was not kept
    cancelled_at  TEXT,
    cancelled_by  TEXT,
    cancel_reason TEXT
);

-- Đ5.3.b: a revoked mailbox is archived, not deleted.
CREATE TABLE archives (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts(id),
    address       TEXT NOT NULL,
    path          TEXT NOT NULL,
    manifest_path TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    revoked_on    TEXT NOT NULL,
    purge_after   TEXT NOT NULL,     -- first day `account purge-archive` may delete it
    messages      INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,  -- message and control files, uncompressed
    archive_bytes INTEGER NOT NULL,
    sha256        TEXT NOT NULL,     -- of the archive file
    purged_at     TEXT,
    purged_by     TEXT
);
CREATE INDEX archives_address ON archives(address);

-- Đ7.2 / Đ12.9 / Đ14: daily counters aggregated from the mail log before it
-- is purged. metric and reason are free text (sent, received, refused/size,
-- virus, spam/..., storage_bytes ...): a new reason needs no schema change.
-- account_id 0: not attributable to an account (mail to unknown addresses);
-- unit_id 0: no unit. The unit is the account's unit on that day.
CREATE TABLE daily_counters (
    day        TEXT NOT NULL,
    account_id INTEGER NOT NULL,
    unit_id    INTEGER NOT NULL,
    metric     TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    value      INTEGER NOT NULL,
    PRIMARY KEY (day, account_id, metric, reason)
) WITHOUT ROWID;
CREATE INDEX daily_counters_unit ON daily_counters(unit_id, day);
