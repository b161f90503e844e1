'use strict';
// Runs a batch of operations against the real @actvalue/mysql-redis-cache and
// prints one JSON result per operation. Read by tests/_node.py.
//
// stdin:  {"mysql": {...pool options} | null, "redis": {...client options} | null,
//          "ops": [{"op": "...", ...}]}
// stdout: [{"ok": value} | {"error": message}, ...]
//
// Values that JSON cannot carry travel tagged: {"$": "date", "v": epochMs},
// {"$": "buf", "v": hex}, {"$": "num", "v": "NaN" | "Infinity" | "-Infinity" | "-0"},
// {"$": "undef"}, {"$": "bigint", "v": "123"}.

const { MRCClient, MRCServer } = require('@actvalue/mysql-redis-cache');

function revive(value) {
  if (Array.isArray(value)) return value.map(revive);
  if (value === null || typeof value !== 'object') return value;
  if (typeof value.$ === 'string') {
    switch (value.$) {
      case 'date': return new Date(value.v);
      case 'buf': return Buffer.from(value.v, 'hex');
      case 'num': return Number(value.v === '-0' ? '-0' : value.v);
      case 'undef': return undefined;
      case 'bigint': return BigInt(value.v);
      default: throw new Error('unknown tag ' + value.$);
    }
  }
  const out = {};
  for (const k of Object.keys(value)) out[k] = revive(value[k]);
  return out;
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function run(op, client, server) {
  const params = op.params === undefined ? undefined : revive(op.params);
  switch (op.op) {
    case 'key':
      return client.getKeyFromQuery(op.query, params, op.names);
    case 'format':
      return client.getMySQLPool().format(op.query, params);
    case 'stringify':
      return JSON.stringify(revive(op.value));
    case 'string':
      return String(revive(op.value));
    case 'query_with_cache':
      // what the caller gets back, as JSON, so Dates and Buffers survive the trip
      return JSON.stringify(await client.queryWithCache(op.query, params, op.names, op.ttl));
    case 'query_to_promise':
      return JSON.stringify(await client.queryToPromise(op.query, params));
    case 'read_from_cache':
      return JSON.stringify(await client.readFromCache(op.query, params, op.names));
    case 'write_to_cache':
      return await client.writeToCache(op.query, revive(op.value), params, op.names, op.ttl);
    case 'drop_outdated_cache':
      return await server.dropOutdatedCache(op.names, revive(op.values), op.all);
    case 'timed': {
      // wall time of one inner op, measured inside Node (no process start-up)
      const start = process.hrtime.bigint();
      const result = await run(op.inner, client, server);
      return { ms: Number(process.hrtime.bigint() - start) / 1e6, result };
    }
    case 'sleep':
      await new Promise((resolve) => setTimeout(resolve, op.ms));
      return null;
    default:
      throw new Error('unknown op ' + op.op);
  }
}

async function main() {
  const request = await readStdin();
  const client = new MRCClient(request.mysql || {}, request.redis || undefined);
  const server = new MRCServer(request.redis || undefined);
  const results = [];
  for (const op of request.ops) {
    try {
      results.push({ ok: await run(op, client, server) });
    } catch (err) {
      results.push({ error: String(err && err.message ? err.message : err) });
    }
  }
  await client.closeRedisConnection().catch(() => {});
  await server.closeRedisConnection().catch(() => {});
  if (client.mysqlPool) await client.mysqlPool.end();
  process.stdout.write(JSON.stringify(results));
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
