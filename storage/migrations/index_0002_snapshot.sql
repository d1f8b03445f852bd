-- SELECT and STATUS of a large folder read only these columns: a covering index keeps those scans
-- to a narrow B-tree instead of the wide message rows (file names), several times fewer pages.
CREATE INDEX messages_state ON messages(folder_id, uid, flags, keywords, modseq, size, recent);
