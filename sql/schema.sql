-- webstack schema. Idempotent: safe to run again on an existing database.
-- Load as root (or a user with CREATE) on the PRIMARY; replicas get it through the binlog.
--   mariadb --default-character-set=utf8mb4 < sql/schema.sql
CREATE DATABASE IF NOT EXISTS webstack CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

USE webstack;

CREATE TABLE IF NOT EXISTS World (
  id INT NOT NULL PRIMARY KEY,
  randomNumber INT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS Fortune (
  id INT NOT NULL PRIMARY KEY,
  message VARCHAR(2048) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS messages (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  author VARCHAR(64) NOT NULL,
  body VARCHAR(2000) NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  KEY idx_messages_created_at (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Idempotency keys (docs/high-availability.md, "Exactly-once writes"): a keyed write stores
-- its key, the request's SHA-256 and its answer in the same transaction as the write; a
-- repeat is answered from here. Rows past expires_at are deleted by the app.
CREATE TABLE IF NOT EXISTS idempotency_keys (
  idem_key VARBINARY(255) NOT NULL PRIMARY KEY,
  request_hash BINARY(32) NOT NULL,
  status SMALLINT UNSIGNED NOT NULL,
  response MEDIUMBLOB NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  expires_at TIMESTAMP(3) NOT NULL,
  KEY idx_idempotency_keys_expires_at (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
