-- The outbound queue (<data>/queue/queue.sqlite3). One row per message
-- (its bytes are messages/<id>.eml) and one row per recipient with that
-- recipient's own state, so a message to several domains is one entry whose
-- recipients succeed, wait and fail independently.

CREATE TABLE messages (
    id                TEXT PRIMARY KEY,      -- the queue id of the 250 reply, Received: and the mail log
    sender            TEXT NOT NULL,         -- envelope sender; '' is the null sender of bounces
    account           TEXT,                  -- the submitting login, when there was one
    message_id        TEXT,
    subject           TEXT,
    size              INTEGER NOT NULL,
    kind              TEXT NOT NULL,         -- mail | dsn (a bounce or delay notice we wrote)
    eightbit          INTEGER NOT NULL,      -- the message has 8-bit bytes (needs 8BITMIME)
    utf8_headers      INTEGER NOT NULL,      -- UTF-8 in header fields (needs SMTPUTF8, RFC 6532)
    arrived_at        TEXT NOT NULL,
    expires_at        TEXT NOT NULL,         -- give up on pending recipients after this
    delay_notice_at   TEXT,                  -- tell the sender about a delay after this (NULL: never)
    delay_notified_at TEXT,
    held_at           TEXT,                  -- not delivered until an operator releases it (Đ6.2.b)
    hold_reason       TEXT,
    hold_actor        TEXT,
    lease_owner       TEXT,                  -- the worker delivering it now ...
    lease_until       TEXT                   -- ... until then at the latest
);

CREATE TABLE recipients (
    queue_id         TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    rcpt             TEXT NOT NULL,
    domain           TEXT NOT NULL,
    local            INTEGER NOT NULL,       -- delivered into our own store (held or retried local mail)
    state            TEXT NOT NULL,          -- pending | delivered | failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    last_attempt_at  TEXT,
    code             TEXT,                   -- "550 5.1.1" of the last answer (or ours, e.g. "451 4.4.1")
    reply            TEXT,                   -- the remote server's words, or why there was no answer
    answered         INTEGER NOT NULL DEFAULT 0,  -- reply is the remote server's (not ours: DNS, no connection)
    remote_host      TEXT,                   -- "mx.example.org [192.0.2.1]:25"
    tls              TEXT,
    reported         INTEGER NOT NULL DEFAULT 0,  -- a failure told to the sender (or nobody to tell)
    PRIMARY KEY (queue_id, rcpt)
);

CREATE INDEX recipients_due ON recipients (state, next_attempt_at);
CREATE INDEX messages_account ON messages (account);
