-- Messages that owe their sender a delay notice fall due by this time too,
-- whether or not a recipient is due for another attempt then.
CREATE INDEX messages_delay_notice ON messages (delay_notice_at) WHERE delay_notified_at IS NULL;
