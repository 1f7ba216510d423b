-- webstack seed data. Idempotent (INSERT IGNORE): existing rows are left as they are.
-- Load after schema.sql, with a utf8mb4 client connection (Fortune 12 is Japanese):
--   mariadb --default-character-set=utf8mb4 < sql/seed.sql
SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;

USE webstack;

-- World: ids 1..10000, randomNumber uniform in 1..10000 (Sequence engine table).
INSERT IGNORE INTO World (id, randomNumber)
  SELECT seq, FLOOR(1 + RAND() * 10000) FROM seq_1_to_10000;

-- Fortune: the canonical TechEmpower set (ids 6 and 8 contain U+2014 EM DASH).
INSERT IGNORE INTO Fortune (id, message) VALUES
  (1, 'fortune: No such file or directory'),
  (2, 'A computer scientist is someone who fixes things that aren''t broken.'),
  (3, 'After enough decimal places, nobody gives a damn.'),
  (4, 'A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1'),
  (5, 'A computer program does what you tell it to do, not what you want it to do.'),
  (6, 'Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen'),
  (7, 'Any program that runs right is obsolete.'),
  (8, 'A list is only as strong as its weakest link. — Donald Knuth'),
  (9, 'Feature: A bug with seniority.'),
  (10, 'Computers make very fast, very accurate mistakes.'),
  (11, '<script>alert("This should not be displayed in a browser alert box.");</script>'),
  (12, 'フレームワークのベンチマーク');
