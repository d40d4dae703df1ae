-- Rooms and chat history (MySQL 5.7+ and MariaDB 10.3+).
--
-- utf8mb4 throughout; room names use utf8mb4_bin so that uniqueness is
-- byte for byte, as in the other backends (names never end with a space,
-- so the collation's PAD SPACE makes no difference). Ids are BIGINT
-- UNSIGNED, times BIGINT unix milliseconds, bodies MEDIUMBLOB (16 MiB).

CREATE TABLE IF NOT EXISTS chat_rooms (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    name       VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY chat_rooms_name (name)
) ENGINE = InnoDB DEFAULT CHARACTER SET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS chat_messages (
    room_id      BIGINT UNSIGNED NOT NULL,
    id           BIGINT UNSIGNED NOT NULL,
    sender       VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    content_type VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    body         MEDIUMBLOB NOT NULL,
    sent_at      BIGINT NOT NULL,
    PRIMARY KEY (room_id, id)
) ENGINE = InnoDB DEFAULT CHARACTER SET = utf8mb4 COLLATE = utf8mb4_bin;
