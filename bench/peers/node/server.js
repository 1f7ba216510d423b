// Node.js peer for `webstack bench`: the TechEmpower test types on fastify + mysql2,
// answering like webstack-app (app/src/handlers/app.cpp) byte for byte in status,
// Content-Type and body. One fastify worker per core under node:cluster.
//
// Environment (see README.md): WS_LISTEN, WS_DB_PRIMARY, WS_DB_REPLICA, WS_DB_USER,
// WS_DB_PASSWORD_FILE, WS_DB_NAME.
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import process from 'node:process';

import Fastify from 'fastify';
import mysql from 'mysql2/promise';

const WORKERS = os.availableParallelism();

// ---------------------------------------------------------------------------------------
// Configuration (validated in the primary before any worker starts).

function fail(message) {
  console.error(`node-peer: ${message}`);
  process.exit(2);
}

function parseHostPort(name, value) {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(value ?? '');
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) fail(`${name}: expected ip:port, got "${value ?? ''}"`);
  return { host: m[1], port: Number(m[2]), name: value };
}

function loadConfig() {
  const env = process.env;
  const listen = parseHostPort('WS_LISTEN', env.WS_LISTEN || '127.0.0.1:8082');
  if (!env.WS_DB_PRIMARY) fail('WS_DB_PRIMARY is required (ip:port)');
  if (!env.WS_DB_USER) fail('WS_DB_USER is required');
  const primary = parseHostPort('WS_DB_PRIMARY', env.WS_DB_PRIMARY);
  const replica = env.WS_DB_REPLICA ? parseHostPort('WS_DB_REPLICA', env.WS_DB_REPLICA) : null;
  let password = '';
  if (env.WS_DB_PASSWORD_FILE) {
    try {
      password = readFileSync(env.WS_DB_PASSWORD_FILE, 'utf8').trim();
    } catch (e) {
      fail(`WS_DB_PASSWORD_FILE: cannot read ${env.WS_DB_PASSWORD_FILE}: ${e.code ?? e.message}`);
    }
  }
  return {
    listen,
    primary,
    replica,
    user: env.WS_DB_USER,
    password, // never logged
    database: env.WS_DB_NAME || 'webstack',
  };
}

// ---------------------------------------------------------------------------------------
// Primary: forks the workers, restarts one that dies, forwards SIGTERM/SIGINT.

function runPrimary() {
  const cfg = loadConfig();
  let stopping = false;
  const live = new Map(); // worker id -> start time (cluster.workers keeps a worker until its IPC closes)

  const fork = () => live.set(cluster.fork().id, Date.now());
  const killAll = (sig) => {
    for (const w of Object.values(cluster.workers)) if (live.has(w.id)) w.process.kill(sig);
  };

  cluster.on('exit', (worker, code, signal) => {
    const lived = Date.now() - live.get(worker.id);
    live.delete(worker.id);
    if (stopping) {
      if (live.size === 0) process.exit(process.exitCode ?? 0);
      return;
    }
    console.error(`node-peer: worker ${worker.process.pid} exited (${signal ?? code})`);
    if (lived < 2000) {
      // Dies at once (bad address, port taken): a restart loop would help nobody.
      console.error('node-peer: worker died during start-up, stopping');
      stopping = true;
      process.exitCode = 1;
      if (live.size === 0) process.exit(1);
      killAll('SIGTERM');
      return;
    }
    fork();
  });

  const stop = () => {
    if (stopping) return;
    stopping = true;
    killAll('SIGTERM'); // each worker drains its in-flight requests, then exits
    setTimeout(() => {
      killAll('SIGKILL');
      process.exit(1);
    }, 15000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  for (let i = 0; i < WORKERS; i++) fork();
  console.error(
    `node-peer: ${WORKERS} workers on http://${cfg.listen.name}/ ` +
      `(primary ${cfg.primary.name}${cfg.replica ? `, replica ${cfg.replica.name}` : ''})`,
  );
}

// ---------------------------------------------------------------------------------------
// Worker: the fastify server.

const JSON_TYPE = 'application/json';
const HTML_TYPE = 'text/html; charset=utf-8';
const TEXT_TYPE = 'text/plain; charset=utf-8';
const SELECT_WORLD = 'SELECT id, randomNumber FROM World WHERE id = ?';
const SELECT_FORTUNES = 'SELECT id, message FROM Fortune';
const EXTRA_FORTUNE = 'Additional fortune added at request time.';
const KNOWN_PATHS = new Set(['/plaintext', '/json', '/db', '/queries', '/fortunes', '/updates', '/readyz']);

// Errors that mean "this node cannot answer" (webstack-app's db::Unavailable): 503, and a
// read tries the other node. Anything else is a query error: 500.
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EPIPE',
  'EAI_AGAIN', 'PROTOCOL_CONNECTION_LOST', 'PROTOCOL_SEQUENCE_TIMEOUT', 'ER_CON_COUNT_ERROR',
  'ER_SERVER_SHUTDOWN', 'ER_ACCESS_DENIED_ERROR', 'ER_DBACCESS_DENIED_ERROR', 'ER_OPTION_PREVENTS_STATEMENT',
  'ER_CONNECTION_KILLED', 'ER_QUERY_INTERRUPTED', 'ER_TOO_MANY_USER_CONNECTIONS', 'POOL_CLOSED',
]);
const isUnavailable = (e) => e?.fatal === true || UNAVAILABLE_CODES.has(e?.code);
// Deadlock / lock wait timeout between concurrent update batches: worth one retry.
const isRetryable = (e) => e?.errno === 1213 || e?.errno === 1205;

// fastify appends "; charset=utf-8" to a JSON Content-Type unless the reply has its own
// serializer; webstack-app sends plain "application/json". So every JSON reply names its
// serializer: the route's compiled response schema (fast-json-stringify), or JSON.stringify.
const asJson = (reply, serialize = reply.getSerializationFunction(200)) =>
  reply.type(JSON_TYPE).serializer(serialize);

class Unavailable extends Error {}

const randomId = () => 1 + Math.floor(Math.random() * 10000);

// text::query_param + text::queries_count of webstack-app, on the raw (undecoded) query
// string: first "queries=" wins, digits only, 1..500, anything else 1.
function queriesCount(url) {
  const q = url.indexOf('?');
  if (q < 0) return 1;
  for (const pair of url.slice(q + 1).split('&')) {
    const eq = pair.indexOf('=');
    const key = eq < 0 ? pair : pair.slice(0, eq);
    if (key !== 'queries') continue;
    const m = eq < 0 ? null : /^(-?)(\d+)$/.exec(pair.slice(eq + 1));
    if (!m || m[1] === '-') return 1;
    const n = Number(m[2]);
    return n < 1 ? 1 : n > 500 ? 500 : n;
  }
  return 1;
}

// text::html_escape: & < > " ' (as &#x27;).
const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#x27;' };
const escapeHtml = (s) => (/[&<>"']/.test(s) ? s.replace(/[&<>"']/g, (c) => ESCAPES[c]) : s);

// webstack-app sorts messages by their UTF-8 bytes, which is code point order. JS compares
// UTF-16 code units, which differs only between surrogates and U+E000..U+FFFF: fix those up.
function compareCodePoints(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

function renderFortunes(rows) {
  let out =
    '<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>' +
    '<tr><th>id</th><th>message</th></tr>';
  for (const r of rows) out += `<tr><td>${r.id}</td><td>${escapeHtml(r.message)}</td></tr>`;
  return out + '</table></body></html>';
}

// UPDATE World SET randomNumber = CASE id WHEN ? THEN ? ... END WHERE id IN (?, ...): one
// statement text per batch size, built once.
const updateSql = [];
function updateStatement(k) {
  return (updateSql[k] ??=
    'UPDATE World SET randomNumber = CASE id' +
    ' WHEN ? THEN ?'.repeat(k) +
    ` END WHERE id IN (${new Array(k).fill('?').join(',')})`);
}

async function runWorker() {
  const cfg = loadConfig();

  // Pool size: webstack-app keeps 8 connections per database node per I/O thread, one
  // thread per core; we keep 8 per node per worker, one worker per core, so both put the
  // same concurrency on MariaDB (16 per node on this 2-core machine). That is plenty for
  // MariaDB sharing 2 cores with the web tier (more connections only add context switches),
  // and it leaves max_connections (151) headroom for webstack-app and the other peers on
  // the same servers. Requests beyond it queue in the pool (waitForConnections).
  // maxPreparedStatements bounds each connection's statement cache (mysql2 closes the
  // least recently used): /updates has one statement per batch size, and MariaDB's
  // max_prepared_stmt_count (16382) is global.
  const makePool = (node) =>
    mysql.createPool({
      host: node.host,
      port: node.port,
      user: cfg.user,
      password: cfg.password,
      database: cfg.database,
      charset: 'utf8mb4_unicode_ci',
      connectionLimit: 8,
      maxIdle: 8,
      waitForConnections: true,
      queueLimit: 0,
      connectTimeout: 2000,
      enableKeepAlive: true,
      maxPreparedStatements: 64,
    });
  const primary = { name: cfg.primary.name, pool: makePool(cfg.primary) };
  const replica = cfg.replica ? { name: cfg.replica.name, pool: makePool(cfg.replica), up: true } : null;

  // A replica that failed is left alone until a probe (once a second) reaches it again.
  const markReplicaDown = (e) => {
    if (!replica.up) return;
    replica.up = false;
    console.error(`node-peer[${process.pid}]: replica ${replica.name} unavailable (${e.code ?? e.message}), reading from the primary`);
  };
  if (replica) {
    let probing = false;
    setInterval(async () => {
      if (replica.up || probing) return;
      probing = true;
      try {
        await replica.pool.query('SELECT 1');
        replica.up = true;
        console.error(`node-peer[${process.pid}]: replica ${replica.name} reachable again`);
      } catch {
        // still down
      } finally {
        probing = false;
      }
    }, 1000).unref();
  }

  // Runs fn(pool) on the replica when configured and up, else (or when it turns out to be
  // unavailable) on the primary. Returns [result, node name].
  async function read(fn) {
    if (replica?.up) {
      try {
        return [await fn(replica.pool), replica.name];
      } catch (e) {
        if (!isUnavailable(e)) throw e;
        markReplicaDown(e);
      }
    }
    try {
      return [await fn(primary.pool), primary.name];
    } catch (e) {
      if (isUnavailable(e)) throw new Unavailable(e.message || e.code);
      throw e;
    }
  }

  async function write(fn) {
    try {
      return await fn(primary.pool);
    } catch (e) {
      if (isUnavailable(e)) throw new Unavailable(e.message || e.code);
      throw e;
    }
  }

  const selectWorld = async (pool, id) => {
    const [rows] = await pool.execute(SELECT_WORLD, [id]);
    if (rows.length === 0) throw new Error(`World row ${id} missing`);
    return rows[0];
  };
  const selectWorlds = (ids) => (pool) => Promise.all(ids.map((id) => selectWorld(pool, id)));

  const app = Fastify({ logger: false, return503OnClosing: true });

  const worldSchema = {
    type: 'object',
    properties: { id: { type: 'integer' }, randomNumber: { type: 'integer' } },
    required: ['id', 'randomNumber'],
  };
  const worldsSchema = { type: 'array', items: worldSchema };

  app.addHook('onRequest', (request, reply, done) => {
    reply.header('Server', 'fastify');
    done();
  });

  app.get('/plaintext', (request, reply) => {
    reply.type(TEXT_TYPE).send('Hello, World!');
  });

  app.get(
    '/json',
    {
      schema: {
        response: { 200: { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] } },
      },
    },
    (request, reply) => {
      asJson(reply).send({ message: 'Hello, World!' });
    },
  );

  app.get('/db', { schema: { response: { 200: worldSchema } } }, async (request, reply) => {
    const id = randomId();
    const [world, node] = await read((pool) => selectWorld(pool, id));
    asJson(reply).header('X-DB-Node', node);
    return world;
  });

  app.get('/queries', { schema: { response: { 200: worldsSchema } } }, async (request, reply) => {
    const ids = Array.from({ length: queriesCount(request.url) }, randomId);
    const [worlds, node] = await read(selectWorlds(ids));
    asJson(reply).header('X-DB-Node', node);
    return worlds;
  });

  app.get('/fortunes', async (request, reply) => {
    const [rows, node] = await read(async (pool) => (await pool.execute(SELECT_FORTUNES))[0]);
    const fortunes = rows.map((r) => ({ id: r.id, message: r.message }));
    fortunes.push({ id: 0, message: EXTRA_FORTUNE });
    fortunes.sort((a, b) => compareCodePoints(a.message, b.message));
    reply.type(HTML_TYPE).header('X-DB-Node', node);
    return renderFortunes(fortunes);
  });

  app.get('/updates', { schema: { response: { 200: worldsSchema } } }, async (request, reply) => {
    const ids = Array.from({ length: queriesCount(request.url) }, randomId);
    const worlds = await write(selectWorlds(ids));
    // One value per distinct id (a row drawn twice keeps its first draw, in the answer too),
    // written in id order: fewer lock waits between concurrent batches.
    const values = new Map();
    for (const w of worlds) {
      if (!values.has(w.id)) values.set(w.id, randomId());
      w.randomNumber = values.get(w.id);
    }
    const batch = [...values.keys()].sort((a, b) => a - b);
    const params = [];
    for (const id of batch) params.push(id, values.get(id));
    params.push(...batch);
    const sql = updateStatement(batch.length);
    await write(async (pool) => {
      try {
        await pool.execute(sql, params);
      } catch (e) {
        if (!isRetryable(e)) throw e;
        await pool.execute(sql, params); // a deadlock rolled it back: once more
      }
    });
    asJson(reply).header('X-DB-Node', primary.name);
    return worlds;
  });

  app.get('/readyz', async (request, reply) => {
    const ping = (node) => node.pool.query({ sql: 'SELECT 1', timeout: 2000 });
    for (const node of replica?.up ? [replica, primary] : replica ? [primary, replica] : [primary]) {
      try {
        await ping(node);
        reply.type(TEXT_TYPE);
        return 'ready\n';
      } catch {
        // try the next node
      }
    }
    reply.code(503).type(TEXT_TYPE);
    return 'no database node reachable\n';
  });

  app.setNotFoundHandler((request, reply) => {
    const q = request.url.indexOf('?');
    const path = q < 0 ? request.url : request.url.slice(0, q);
    if (KNOWN_PATHS.has(path)) {
      asJson(reply.code(405).header('Allow', 'GET, HEAD'), JSON.stringify).send({ error: 'method not allowed' });
    } else {
      asJson(reply.code(404), JSON.stringify).send({ error: 'not found' });
    }
  });

  app.setErrorHandler((error, request, reply) => {
    let status;
    let message;
    if (error instanceof Unavailable) {
      status = 503;
      message = `database unavailable: ${error.message}`;
    } else if (error.statusCode >= 400 && error.statusCode < 500) {
      status = error.statusCode; // fastify's own: bad request, body too large, ...
      message = error.message;
    } else {
      status = 500;
      message = error.code?.startsWith('ER_') ? 'database error' : 'internal error';
      console.error(`node-peer[${process.pid}]: ${request.url}: ${error.code ?? ''} ${error.message}`);
    }
    asJson(reply.code(status), JSON.stringify).send({ error: message });
  });

  let closing = false;
  const shutdown = async () => {
    if (closing) return;
    closing = true;
    setTimeout(() => process.exit(1), 12000).unref();
    try {
      await app.close(); // stops accepting, waits for in-flight requests
    } catch (e) {
      console.error(`node-peer[${process.pid}]: close: ${e.message}`);
    }
    await Promise.allSettled([primary.pool.end(), replica?.pool.end()]);
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  await app.listen({ host: cfg.listen.host, port: cfg.listen.port });
}

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker().catch((e) => {
    console.error(`node-peer[${process.pid}]: ${e.message}`);
    process.exit(1);
  });
}
