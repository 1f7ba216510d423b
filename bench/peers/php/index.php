<?php
// webstack PHP-FPM peer: the TechEmpower endpoints of webstack-app (app/src/handlers/app.cpp),
// same status, Content-Type and body, for `webstack bench`. One front controller: Nginx sends
// every dynamic request here (SCRIPT_FILENAME = this file). Configuration: see README.md.
declare(strict_types=1);

const SELECT_WORLD = 'SELECT id, randomNumber FROM World WHERE id = ?';
const JSON_TYPE = 'application/json';
const HTML_TYPE = 'text/html; charset=utf-8';
const TEXT_TYPE = 'text/plain; charset=utf-8';
// The fortunes page escapes exactly like webstack-app (text::html_escape), byte by byte.
const HTML_ESCAPES = ['&' => '&amp;', '<' => '&lt;', '>' => '&gt;', '"' => '&quot;', "'" => '&#x27;'];

// No node answers (or one refused us as read-only): 503, like webstack-app's db::Unavailable.
final class DbUnavailable extends RuntimeException {}

function send(int $status, string $type, string $body, ?string $node = null): void
{
    http_response_code($status);
    header('Content-Type: ' . $type);
    header('Content-Length: ' . strlen($body));
    if ($node !== null) {
        header('X-DB-Node: ' . $node);  // which node answered, as webstack-app names it
    }
    echo $body;
}

function send_error(int $status, string $message): void
{
    send($status, JSON_TYPE, json_encode(['error' => $message],
        JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE));
}

// The `queries` parameter as webstack-app reads it (text::queries_count): the first
// `queries=` of the raw query string, not URL-decoded; missing, empty or not an integer
// (optional '-', digits only) -> 1; clamped to 1..500.
function queries_count(string $query): int
{
    foreach (explode('&', $query) as $pair) {
        $eq = strpos($pair, '=');
        if (($eq === false ? $pair : substr($pair, 0, $eq)) !== 'queries') {
            continue;
        }
        $raw = $eq === false ? '' : substr($pair, $eq + 1);
        if (!preg_match('/^-?[0-9]+$/D', $raw) || $raw[0] === '-') {
            return 1;
        }
        $digits = ltrim($raw, '0');
        if (strlen($digits) > 3) {
            return 500;
        }
        return max(1, min(500, (int) $digits));
    }
    return 1;
}

function is_connection_error(PDOException $e): bool
{
    $code = (int) ($e->errorInfo[1] ?? $e->getCode());
    return in_array($code, [2002, 2003, 2005, 2006, 2013, 2014, 2055, 1053, 1152, 1927], true);
}

// A persistent connection to "ip:port" (pdo_mysql pings a reused one before handing it out).
function connect(string $address): PDO
{
    $colon = strrpos($address, ':');
    if ($colon === false) {
        throw new DbUnavailable("bad database address {$address} (want ip:port)");
    }
    $host = trim(substr($address, 0, $colon), '[]');
    $port = (int) substr($address, $colon + 1);
    $name = getenv('WS_DB_NAME') ?: 'webstack';
    $password = '';
    $file = getenv('WS_DB_PASSWORD_FILE');
    if ($file !== false && $file !== '') {
        $read = @file_get_contents($file);
        if ($read === false) {
            throw new DbUnavailable('database password file unreadable');
        }
        $password = trim($read);
    }
    try {
        return new PDO("mysql:host={$host};port={$port};dbname={$name};charset=utf8mb4",
            (string) getenv('WS_DB_USER'), $password, [
                PDO::ATTR_PERSISTENT => true,
                PDO::ATTR_EMULATE_PREPARES => false,  // real server-side prepared statements
                PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
                PDO::ATTR_DEFAULT_FETCH_MODE => PDO::FETCH_NUM,
                PDO::ATTR_TIMEOUT => 2,               // connect timeout, seconds
            ]);
    } catch (PDOException $e) {
        // The message names the user at most ("Access denied for user ..."), never the password.
        throw new DbUnavailable("connect to {$address} failed: " . $e->getMessage());
    }
}

// [PDO, node] on the primary (writes, and the reads of /updates as webstack-app does them).
function writer(): array
{
    $primary = getenv('WS_DB_PRIMARY');
    if ($primary === false || $primary === '') {
        throw new DbUnavailable('WS_DB_PRIMARY is not set');
    }
    return [connect($primary), $primary];
}

// Runs $body(PDO) for a read: on the replica when one is configured and answers, else on the
// primary. A replica that loses the connection mid-read gets the read run again on the primary.
// Returns [result of $body, node].
function read(callable $body): array
{
    $replica = getenv('WS_DB_REPLICA');
    if ($replica !== false && $replica !== '') {
        try {
            return [$body(connect($replica)), $replica];
        } catch (DbUnavailable) {
            // replica down: fall through to the primary
        } catch (PDOException $e) {
            if (!is_connection_error($e)) {
                throw $e;
            }
        }
    }
    [$db, $primary] = writer();
    return [$body($db), $primary];
}

function world_query(PDO $db, int $n): array
{
    $stmt = $db->prepare(SELECT_WORLD);
    $stmt->bindParam(1, $id, PDO::PARAM_INT);
    $worlds = [];
    for ($i = 0; $i < $n; ++$i) {
        $id = mt_rand(1, 10000);
        $stmt->execute();
        $row = $stmt->fetch();
        if ($row === false) {
            throw new RuntimeException("World row {$id} missing");
        }
        $worlds[] = ['id' => (int) $row[0], 'randomNumber' => (int) $row[1]];
    }
    return $worlds;
}

function fortunes(): void
{
    [$fortunes, $node] = read(fn (PDO $db) =>
        $db->query('SELECT id, message FROM Fortune')->fetchAll(PDO::FETCH_KEY_PAIR));
    $fortunes[0] = 'Additional fortune added at request time.';
    asort($fortunes, SORT_STRING);  // by message, byte order
    $html = '<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>'
        . '<tr><th>id</th><th>message</th></tr>';
    foreach ($fortunes as $id => $message) {
        $html .= '<tr><td>' . $id . '</td><td>' . strtr($message, HTML_ESCAPES) . '</td></tr>';
    }
    send(200, HTML_TYPE, $html . '</table></body></html>', $node);
}

// n random rows read and given new random numbers on the primary, written back in one
// statement, rows in id order (fewer lock waits between concurrent batches); a row drawn
// twice keeps the value of its first draw, in the answer too (as webstack-app).
function updates(int $n): void
{
    [$db, $node] = writer();
    $select = $db->prepare(SELECT_WORLD);
    $select->bindParam(1, $id, PDO::PARAM_INT);
    $ids = [];
    $batch = [];  // id => new randomNumber
    for ($i = 0; $i < $n; ++$i) {
        $id = mt_rand(1, 10000);
        $select->execute();
        $row = $select->fetch();
        if ($row === false) {
            throw new RuntimeException("World row {$id} missing");
        }
        $ids[] = $rowId = (int) $row[0];
        $batch[$rowId] ??= mt_rand(1, 10000);
    }
    ksort($batch);
    $count = count($batch);
    $update = $db->prepare('UPDATE World SET randomNumber = CASE id'
        . str_repeat(' WHEN ? THEN ?', $count)
        . ' END WHERE id IN (?' . str_repeat(',?', $count - 1) . ')');
    $p = 0;
    foreach ($batch as $rowId => $number) {
        $update->bindValue(++$p, $rowId, PDO::PARAM_INT);
        $update->bindValue(++$p, $number, PDO::PARAM_INT);
    }
    foreach ($batch as $rowId => $number) {
        $update->bindValue(++$p, $rowId, PDO::PARAM_INT);
    }
    try {
        $update->execute();
    } catch (PDOException $e) {
        // A deadlock (1213) or lock wait timeout (1205) rolled the statement back: once more.
        if (!in_array((int) ($e->errorInfo[1] ?? 0), [1213, 1205], true)) {
            throw $e;
        }
        $update->execute();
    }
    $worlds = [];
    foreach ($ids as $rowId) {
        $worlds[] = ['id' => $rowId, 'randomNumber' => $batch[$rowId]];
    }
    send(200, JSON_TYPE, json_encode($worlds), $node);
}

function readyz(): void
{
    foreach (['WS_DB_PRIMARY', 'WS_DB_REPLICA'] as $var) {
        $address = getenv($var);
        if ($address === false || $address === '') {
            continue;
        }
        try {
            connect($address)->query('SELECT 1')->fetchAll();
            send(200, TEXT_TYPE, "ready\n");
            return;
        } catch (Throwable) {
            // try the next node
        }
    }
    send(503, TEXT_TYPE, "no database node reachable\n");
}

$uri = $_SERVER['REQUEST_URI'] ?? '/';
$qpos = strpos($uri, '?');
$path = $qpos === false ? $uri : substr($uri, 0, $qpos);   // raw, not decoded (as webstack-app)
$query = $qpos === false ? '' : substr($uri, $qpos + 1);
$routes = ['/plaintext' => 1, '/json' => 1, '/db' => 1, '/queries' => 1, '/fortunes' => 1,
    '/updates' => 1, '/readyz' => 1];
$method = $_SERVER['REQUEST_METHOD'] ?? 'GET';

try {
    if (!isset($routes[$path])) {
        send_error(404, 'not found');
    } elseif ($method !== 'GET' && $method !== 'HEAD') {
        header('Allow: GET, HEAD');
        send_error(405, 'method not allowed');
    } else {
        switch ($path) {
            case '/plaintext':
                send(200, TEXT_TYPE, 'Hello, World!');
                break;
            case '/json':
                send(200, JSON_TYPE, json_encode(['message' => 'Hello, World!']));
                break;
            case '/db':
                [$worlds, $node] = read(fn (PDO $db) => world_query($db, 1));
                send(200, JSON_TYPE, json_encode($worlds[0]), $node);
                break;
            case '/queries':
                $n = queries_count($query);
                [$worlds, $node] = read(fn (PDO $db) => world_query($db, $n));
                send(200, JSON_TYPE, json_encode($worlds), $node);
                break;
            case '/fortunes':
                fortunes();
                break;
            case '/updates':
                updates(queries_count($query));
                break;
            case '/readyz':
                readyz();
                break;
        }
    }
} catch (DbUnavailable $e) {
    send_error(503, 'database unavailable: ' . $e->getMessage());
} catch (PDOException $e) {
    if (is_connection_error($e) || (int) ($e->errorInfo[1] ?? 0) === 1290 /* read-only */) {
        send_error(503, 'database unavailable: ' . $e->getMessage());
    } else {
        error_log("webstack-php: {$path}: query failed: " . $e->getMessage());
        send_error(500, 'database error');
    }
} catch (Throwable $e) {
    error_log("webstack-php: {$path}: " . get_class($e) . ': ' . $e->getMessage());
    send_error(500, 'internal error');
}
