-- Rooms and chat history (SQLite).
--
-- Ids and times are INTEGER (64-bit); times are unix milliseconds. Room
-- names compare byte for byte (the default BINARY collation).

CREATE TABLE IF NOT EXISTS chat_rooms (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    CONSTRAINT chat_rooms_name UNIQUE (name)
);

-- Keyed by (room, id): pages and resumes are range scans of the key, and
-- an append of a stored (room, id) does nothing. WITHOUT ROWID keeps the
-- rows in the key's b-tree, so there is no second index to update.
CREATE TABLE IF NOT EXISTS chat_messages (
    room_id      INTEGER NOT NULL,
    id           INTEGER NOT NULL,
    sender       TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    sent_at      INTEGER NOT NULL,
    PRIMARY KEY (room_id, id)
) WITHOUT ROWID;
