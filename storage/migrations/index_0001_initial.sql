-- The per-account mail index: a cache of the Maildir++ tree beside it.
-- Everything here can be rebuilt from the message files and the control
-- files (dovecot-uidlist, dovecot-keywords, subscriptions); deleting this
-- database loses nothing (storage/index.py, `mailserver reindex`).

-- One row: exact usage of the whole mailbox (Đ7.3) and account-wide state.
CREATE TABLE account (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    bytes            INTEGER NOT NULL DEFAULT 0,
    messages         INTEGER NOT NULL DEFAULT 0,
    -- Đ7.3.c thresholds (percent) already warned about; NULL after a rebuild
    -- means "whatever usage had already reached was warned about".
    warned           TEXT,
    last_uidvalidity INTEGER NOT NULL DEFAULT 0,
    -- mtime (ns) of the account root at the last folder discovery; -2: look again
    root_mtime       INTEGER NOT NULL DEFAULT -1,
    -- text-index rows of messages that no longer exist (removed by `reindex`)
    fts_garbage      INTEGER NOT NULL DEFAULT 0
);
INSERT INTO account (id, warned) VALUES (1, '[]');

CREATE TABLE folders (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,       -- public name, "/" separated ("INBOX", "Dự án/2026")
    dirname        TEXT NOT NULL UNIQUE,       -- "" for INBOX, ".D&Hu8- &AOE-n.2026"
    uidvalidity    INTEGER NOT NULL,
    uidnext        INTEGER NOT NULL,
    highestmodseq  INTEGER NOT NULL,
    -- expunges with MODSEQ at or below this are not itemised (index rebuilt since)
    vanished_floor INTEGER NOT NULL DEFAULT 0,
    subscribed     INTEGER NOT NULL DEFAULT 0,
    special_use    TEXT,
    keywords       TEXT NOT NULL DEFAULT '[]', -- dovecot-keywords: letter index -> name
    -- directory mtimes (ns) at the last look at new/ and cur/; -1 never, -2 look again
    new_mtime      INTEGER NOT NULL DEFAULT -1,
    cur_mtime      INTEGER NOT NULL DEFAULT -1,
    uidlist_stale  INTEGER NOT NULL DEFAULT 0  -- dovecot-uidlist lines of expunged messages
);

-- Parsed content, shared by copies of one delivery (COPY links the file).
CREATE TABLE contents (
    cid           INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: stale text rows must not match
    refs          INTEGER NOT NULL,
    envelope      TEXT NOT NULL,   -- JSON
    structure     TEXT NOT NULL,   -- JSON, storage.mime.Part.to_obj()
    header_fields TEXT NOT NULL,   -- JSON {lower-case name: raw lines}
    -- folded (case- and diacritic-free) decoded headers for SEARCH substring matching
    s_subject     TEXT NOT NULL DEFAULT '',
    s_from        TEXT NOT NULL DEFAULT '',
    s_to          TEXT NOT NULL DEFAULT '',
    s_cc          TEXT NOT NULL DEFAULT '',
    s_bcc         TEXT NOT NULL DEFAULT ''
);

-- Body text for SEARCH BODY/TEXT; rowid = contents.cid. Contentless: the text
-- itself is not stored twice. Text is folded before it is inserted, so the
-- tokenizer's own diacritic removal is a second line of defence.
CREATE VIRTUAL TABLE texts USING fts5(body, extra, content='', tokenize='unicode61 remove_diacritics 2');

CREATE TABLE messages (
    folder_id     INTEGER NOT NULL,
    uid           INTEGER NOT NULL,
    base          TEXT NOT NULL,     -- file name up to ":2,"; never changes
    subdir        TEXT NOT NULL,     -- 'new' or 'cur'
    name          TEXT NOT NULL,     -- file name in subdir
    flags         INTEGER NOT NULL,  -- storage.maildir bits: Seen 1, Answered 2, Flagged 4, Deleted 8, Draft 16, Passed 32
    keywords      INTEGER NOT NULL,  -- bit i = keyword letter chr(97 + i)
    modseq        INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    internal_date INTEGER NOT NULL,  -- seconds since the epoch (the file's mtime)
    recent        INTEGER NOT NULL DEFAULT 0,
    cid           INTEGER NOT NULL,
    PRIMARY KEY (folder_id, uid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_base ON messages(folder_id, base);
CREATE INDEX messages_modseq ON messages(folder_id, modseq);
CREATE INDEX messages_cid ON messages(cid);

-- QRESYNC: which UIDs went away at which MODSEQ.
CREATE TABLE expunged (
    folder_id INTEGER NOT NULL,
    uid       INTEGER NOT NULL,
    modseq    INTEGER NOT NULL,
    PRIMARY KEY (folder_id, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_modseq ON expunged(folder_id, modseq);

-- Every change, for listeners in other worker processes (storage/events.py):
-- written in the same transaction as the change, read by each process's
-- watcher for rows of other origins, pruned to the most recent ones.
CREATE TABLE changes (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,   -- the writing process's store instance
    event  TEXT NOT NULL    -- JSON: k kind, f folder, u uids, m modseq, o old name
);
