-- Đ6.2.b: an account whose outbound mail is held after a burst that looks like
-- a compromise. It can still log in and read; its outbound mail waits for an
-- operator (release or delete). Suspension stays an operator's decision.
CREATE TABLE outbound_holds (
    account_id  INTEGER PRIMARY KEY REFERENCES accounts(id),
    held_at     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    actor       TEXT NOT NULL
);

-- Sending limits granted to one account above the policy's (a unit's clerk
-- who legitimately writes to many, Đ6.2.b). NULL keeps the policy value.
CREATE TABLE send_limits (
    account_id             INTEGER PRIMARY KEY REFERENCES accounts(id),
    messages_per_window    INTEGER,
    recipients_per_window  INTEGER,
    set_at                 TEXT NOT NULL
);
