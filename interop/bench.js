'use strict';
// Times @actvalue/mysql-redis-cache 4.1.0 on the scenarios of benchmarks/cache.py.
// stdin: {"mysql": {...}, "redis": {"url": ...}, "repeat": n, "scenarios": [...]}
// stdout: {"<scenario name>": [seconds or counts per repeat], ...}

const { MRCClient } = require('@actvalue/mysql-redis-cache');

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

async function hits(client, s) {
  // params per key, the first growing by `step`; worker w's i-th call uses key (w + i) % keys
  const calls = Array.from({ length: s.keys }, (_, k) => [s.params[0] + k * s.step]);
  for (const params of calls) await client.queryWithCache(s.query, params, s.names); // warm
  const start = now();
  if (s.concurrency === 1) {
    for (let i = 0; i < s.ops; i++) {
      await client.queryWithCache(s.query, calls[i % s.keys], s.names);
    }
  } else {
    const worker = async (_, w) => {
      for (let i = 0; i < s.ops / s.concurrency; i++) {
        await client.queryWithCache(s.query, calls[(w + i) % s.keys], s.names);
      }
    };
    await Promise.all(Array.from({ length: s.concurrency }, worker));
  }
  return s.ops / (now() - start);
}

async function fanout(client, s) {
  // rounds of Promise.all over one queryWithCache per key: Node's way to read many at once
  const calls = Array.from({ length: s.keys }, (_, k) => [s.params[0] + k * s.step]);
  for (const params of calls) await client.queryWithCache(s.query, params, s.names); // warm
  const rounds = Math.floor(s.ops / s.keys);
  const start = now();
  for (let r = 0; r < rounds; r++) {
    await Promise.all(calls.map((params) => client.queryWithCache(s.query, params, s.names)));
  }
  return (rounds * s.keys) / (now() - start);
}

async function miss(client, s) {
  const key = client.getKeyFromQuery(s.query, s.params, s.names);
  await client.redisClient.del(key);
  const start = now();
  await client.queryWithCache(s.query, s.params, s.names);
  return now() - start;
}

async function burst(client, s) {
  // `keys` concurrent distinct misses, as a cold cache meets a deploy or a flush
  const calls = Array.from({ length: s.keys }, (_, k) => [s.params[0] + k]);
  const keys = calls.map((params) => client.getKeyFromQuery(s.query, params, s.names));
  for (let i = 0; i < keys.length; i += 1000) await client.redisClient.del(keys.slice(i, i + 1000));
  const start = now();
  await Promise.all(calls.map((params) => client.queryWithCache(s.query, params, s.names)));
  return now() - start;
}

async function stampede(client, s) {
  let runs = 0;
  const fn = async () => {
    runs += 1;
    await new Promise((resolve) => setTimeout(resolve, 20));
    return [runs];
  };
  const key = client.getKeyFromQuery(s.query, s.params, s.names);
  await client.redisClient.del(key);
  await Promise.all(
    Array.from({ length: s.concurrency }, () => client.withCache(fn, s.query, s.params, s.names))
  );
  return runs;
}

async function main() {
  const request = await readStdin();
  const client = new MRCClient(request.mysql, request.redis);
  await client.readFromCache('SELECT 1'); // connect before timing
  const results = {};
  for (const s of request.scenarios) {
    const kind = { hits, fanout, miss, burst, stampede }[s.kind];
    results[s.name] = [];
    for (let r = 0; r < request.repeat; r++) results[s.name].push(await kind(client, s));
  }
  await client.closeRedisConnection();
  await client.getMySQLPool().end();
  process.stdout.write(JSON.stringify(results));
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
