-- The province's mail directory ("Danh bạ hộp thư điện tử", Đ4.3).
-- Timestamps are UTC ISO-8601 strings; calendar dates are YYYY-MM-DD in the policy's time zone.

CREATE TABLE domains (
    name        TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL
);

-- Units are named by the full local part of their mailbox (pnv.tuyan), since
-- every district has a pnv.
CREATE TABLE units (
    id          INTEGER PRIMARY KEY,
    local_part  TEXT NOT NULL,
    domain      TEXT NOT NULL REFERENCES domains(name),
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('department', 'district', 'commune', 'subunit')),
    parent_id   INTEGER REFERENCES units(id),
    quota_bytes INTEGER,
    created_at  TEXT NOT NULL,
    UNIQUE (local_part, domain)
);

CREATE TABLE accounts (
    id                   INTEGER PRIMARY KEY,
    local_part           TEXT NOT NULL,
    domain               TEXT NOT NULL REFERENCES domains(name),
    kind                 TEXT NOT NULL CHECK (kind IN ('person', 'unit')),
    display_name         TEXT NOT NULL,
    unit_id              INTEGER REFERENCES units(id),
    role                 TEXT NOT NULL DEFAULT 'staff' CHECK (role IN ('staff', 'leader')),
    birth_year           INTEGER,
    birth_month          INTEGER,
    password_hash        TEXT,
    password_changed_at  TEXT,
    must_change_password INTEGER NOT NULL DEFAULT 1,
    quota_bytes          INTEGER,
    suspended_at         TEXT,
    suspended_reason     TEXT,
    retired_on           TEXT,
    revoked_at           TEXT,
    -- set when a revoked address is given to someone new (after the reuse period)
    released_at          TEXT,
    exempt_until         TEXT,
    exempt_reason        TEXT,
    created_at           TEXT NOT NULL,
    last_login_at        TEXT,
    last_send_at         TEXT,
    last_receive_at      TEXT
);
CREATE UNIQUE INDEX accounts_address ON accounts(local_part, domain) WHERE released_at IS NULL;
CREATE UNIQUE INDEX accounts_unit_mailbox ON accounts(unit_id) WHERE kind = 'unit' AND released_at IS NULL;
CREATE INDEX accounts_unit ON accounts(unit_id);

CREATE TABLE aliases (
    id          INTEGER PRIMARY KEY,
    local_part  TEXT NOT NULL,
    domain      TEXT NOT NULL REFERENCES domains(name),
    target      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (local_part, domain, target)
);

-- A personal account allowed to send as a unit mailbox (Đ12.1 clerks).
CREATE TABLE send_grants (
    account_id       INTEGER NOT NULL REFERENCES accounts(id),
    unit_account_id  INTEGER NOT NULL REFERENCES accounts(id),
    created_at       TEXT NOT NULL,
    PRIMARY KEY (account_id, unit_account_id)
);

-- Every operator action and every automatic change (Đ5.1–2: who, what, when).
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT,
    before  TEXT,
    after   TEXT,
    rule    TEXT
);
CREATE INDEX audit_at ON audit(at);
CREATE INDEX audit_target ON audit(target);
