"""The invalidation index: Node's entries found, faults ridden out, and the same keys
deleted as by the scan, on private Redis servers."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from mysql_redis_cache import (
    CacheAuthError,
    MRCClient,
    MRCIndexer,
    MRCServer,
    NotificationsOffError,
)
from mysql_redis_cache._cli import main
from mysql_redis_cache._index.names import PREFIX, SET_PREFIX, set_for_token
from mysql_redis_cache._redis.fills import marker_of, stamp_of

from ._indexer import cache_key, indexer_process, wait_alive
from ._node import run_node
from ._redis_server import RedisProcess, redis_cluster, redis_server
from ._threads import until
from .conftest import MYSQL_CONFIG


@pytest.fixture
def private() -> Iterator[RedisProcess]:
    with redis_server() as server:
        yield server


@pytest.fixture
def sync(private: RedisProcess) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(private.url)
    yield client
    client.close()


@pytest.fixture
async def indexer(private: RedisProcess) -> AsyncIterator[MRCIndexer]:
    async with MRCIndexer(private.url) as running:
        yield running


def write(client: redis.Redis, keys: list[bytes], ttl: int | None = 600) -> None:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, b"[]", ex=ttl)
    pipe.execute()


def left(client: redis.Redis, keys: list[bytes]) -> int:
    """How many of `keys` still exist."""
    return sum(client.exists(key) for key in keys)


@pytest.mark.interop
@pytest.mark.usefixtures("node")
async def test_node_entries_are_dropped_through_the_index(
    private: RedisProcess, sync: redis.Redis, indexer: MRCIndexer
) -> None:
    """Entries the npm package writes while the indexer runs are found in the index."""
    ops = [
        {"op": "write_to_cache", "query": f"SELECT {n}", "value": [{"n": n}],
         "params": [n % 3, n], "names": ["StoreId", "UserId"], "ttl": 600}
        for n in range(60)
    ]  # fmt: skip
    ops += [{"op": "key", "query": op["query"], "params": op["params"], "names": op["names"]}
            for op in ops]  # fmt: skip
    keys = run_node(ops, redis_url=private.url)[60:]
    doomed = [k.encode() for n, k in enumerate(keys) if n % 3 == 1]
    kept = [k.encode() for n, k in enumerate(keys) if n % 3 != 1]
    async with MRCServer(private.url) as server:
        deleted = await server.drop_outdated_cache(["StoreId"], [1])
        assert server.last_path == "index"
    assert deleted == len(doomed) == 20
    assert left(sync, doomed) == 0
    assert left(sync, kept) == 40
    assert indexer.acks == 1


async def test_entries_written_through_faults_are_never_missed(
    private: RedisProcess, sync: redis.Redis
) -> None:
    """Down, paused, disconnected, notifications off: every entry is dropped, by the
    index once it is proven current again, by the scan until then."""
    missed: dict[str, int] = {}
    paths: dict[str, str] = {}

    async def phase(name: str, expect: str | None = None) -> None:
        keys = [cache_key(f"Phase={name}", f"UserId={n}") for n in range(50)]
        write(sync, keys)
        async with MRCServer(private.url, index_wait=1.0) as server:
            assert await server.drop_outdated_cache(["Phase"], [name]) == 50
            paths[name] = server.last_path
        missed[name] = left(sync, keys)
        if expect is not None:
            assert paths[name] == expect, (name, paths)

    await phase("down", expect="scan")
    earlier = [cache_key("Phase=backfill", f"UserId={n}") for n in range(50)]
    write(sync, earlier)  # before the indexer starts: its backfill must find them
    with indexer_process(private.url) as indexer:
        wait_alive(sync)
        await phase("running", expect="index")
        async with MRCServer(private.url) as server:
            assert await server.drop_outdated_cache(["Phase"], ["backfill"]) == 50
            assert server.last_path == "index"
        missed["backfill"] = left(sync, earlier)

        indexer.pause()
        await phase("paused", expect="scan")
        indexer.resume()
        await phase("resumed", expect="index")

        killed = [cache_key("Phase=killed", f"UserId={n}") for n in range(50)]
        sync.client_kill_filter(_type="pubsub")
        write(sync, killed)  # while it reconnects and rebuilds
        wait_alive(sync)
        assert await index_answers(private.url)
        async with MRCServer(private.url) as server:
            assert await server.drop_outdated_cache(["Phase"], ["killed"]) == 50
            paths["killed"] = server.last_path
        missed["killed"] = left(sync, killed)

        sync.config_set("notify-keyspace-events", "")
        await phase("off", expect="scan")
        silent = [cache_key("Phase=silent", f"UserId={n}") for n in range(50)]
        write(sync, silent)  # no notification: only a rebuild can know of them
        sync.config_set("notify-keyspace-events", "E$g")
        assert await index_answers(private.url)
        async with MRCServer(private.url) as server:
            assert await server.drop_outdated_cache(["Phase"], ["silent"]) == 50
            paths["silent"] = server.last_path
        missed["silent"] = left(sync, silent)
        await phase("on again", expect="index")
    assert missed == dict.fromkeys(missed, 0), missed
    assert paths["killed"] == paths["silent"] == "index", paths


async def index_answers(url: str | dict[str, Any], seconds: float = 30.0) -> bool:
    """Wait until an invalidation takes the index path (with nothing to drop)."""
    async with MRCServer(url, index_wait=0.2) as server:
        for _ in range(int(seconds / 0.2)):
            await server.drop_outdated_cache(["Nothing"], ["here"])
            if server.last_path == "index":
                return True
            await asyncio.sleep(0.2)
    return False


# Names and values that stress the matching: '_' inside names and values, lists keyed as
# `a,b`, unicode, empty values, and names that end or start like others.
NAMES = ["StoreId", "XStoreId", "Store", "Id", "a_b", "a_", "_b", "ü", "N"]
VALUES = ["6", "60", "6_7", "7", "", "_", "a__b", "a,b", "ü_x", "x=y", "_=b", "Ünï", "6 "]


def keyspace(rng: random.Random) -> list[bytes]:
    """A random keyspace of cache keys, fill markers, stamps and lookalikes."""
    keys: set[bytes] = set()
    for n in range(rng.randint(20, 120)):
        segments = [f"{rng.choice(NAMES)}={rng.choice(VALUES)}" for _ in range(rng.randint(1, 4))]
        key = cache_key(*segments, query=f"SELECT {n % 7}")
        form = rng.random()
        if form < 0.6:
            keys.add(key)
        elif form < 0.7:
            keys |= {key, marker_of(key, rng.randbytes(16))}
        elif form < 0.75:
            keys.add(marker_of(key, rng.randbytes(16)))  # a fill that has not stored yet
        elif form < 0.8:
            keys.add(stamp_of(segments[0].encode()))
        elif form < 0.85:
            keys.add(f"cfg:{'_'.join(segments)}:flags".encode())
        elif form < 0.9:
            keys.add(key[:-40] + key[-40:].upper())  # not a sha1 as Node writes it
        elif form < 0.93:
            keys.add(key + b":lock")
        elif form < 0.96:
            keys.add(key.replace(b"=", b"=\xff", 1))  # not UTF-8, as only another tool writes
        else:
            keys.add(("_".join(segments)).encode())  # no hash at all
    return sorted(keys)


def request(rng: random.Random) -> tuple[list[str], list[Any], bool]:
    count = rng.randint(1, 3)
    names = [rng.choice(NAMES) for _ in range(count)]
    values: list[Any] = [rng.choice([*VALUES, 6, ["a", "b"], 6.0]) for _ in range(count)]
    return names, values, rng.random() < 0.3


def user_keys(client: redis.Redis) -> set[bytes]:
    return {k for k in client.scan_iter(count=1000) if not k.startswith((PREFIX, b"mrc:"))}


async def test_index_and_scan_delete_the_same_keys(
    private: RedisProcess, sync: redis.Redis, indexer: MRCIndexer
) -> None:
    """Over generated keyspaces and requests, the index path deletes exactly the keys the
    scan path deletes, and reports the same count: 0 differences. `make fuzz` runs more
    cases with a fresh seed (MRC_FUZZ_SEED, MRC_INDEX_CASES)."""
    rng = random.Random(int(os.environ.get("MRC_FUZZ_SEED", "37")))
    differences = []
    for case in range(int(os.environ.get("MRC_INDEX_CASES", "120"))):
        keys = keyspace(rng)
        names, values, every = request(rng)
        outcome = {}
        for use_index in (True, False):
            sync.delete(*user_keys(sync)) if user_keys(sync) else None
            write(sync, keys, ttl=rng.choice([600, None]))
            async with MRCServer(private.url, use_index=use_index) as server:
                count = await server.drop_outdated_cache(names, values, every)
                assert server.last_path == ("index" if use_index else "scan")
            outcome[use_index] = (count, set(keys) - user_keys(sync))
        if outcome[True] != outcome[False]:
            differences.append((case, names, values, every, outcome))
    assert not differences, differences[:1]
    assert indexer.acks == case + 1


async def test_dry_run_counts_the_same_on_both_paths(
    private: RedisProcess, sync: redis.Redis, indexer: MRCIndexer
) -> None:
    keys = [cache_key(f"StoreId={n % 5}", f"UserId={n}") for n in range(100)]
    write(sync, keys)
    sync.delete(*keys[:10])  # gone, but still listed in the index until pruned
    counts = {}
    for use_index in (True, False):
        async with MRCServer(private.url, use_index=use_index) as server:
            counts[use_index] = await server.drop_outdated_cache(["StoreId"], [1], dry_run=True)
    assert counts[True] == counts[False] == 18
    assert left(sync, keys) == 90


async def test_cluster_index(sync: redis.Redis) -> None:
    """On a real 3-node Cluster: every node followed, every entry dropped by the index."""
    with redis_cluster(3) as ports:
        url = f"redis://127.0.0.1:{ports[0]}"
        config = {"url": url, "cluster": True}
        cluster = redis.RedisCluster.from_url(url)
        keys = [cache_key(f"StoreId={n % 4}", f"UserId={n}") for n in range(400)]
        async with MRCIndexer(config) as indexer:
            for key in keys:
                cluster.set(key, b"[]", ex=600)
            async with MRCServer(config) as server:
                assert await server.drop_outdated_cache(["StoreId"], [2]) == 100
                assert server.last_path == "index"
            assert len(indexer._followers) == 3
        assert sum(cluster.exists(key) for key in keys) == 300
        assert sum(cluster.exists(key) for key in keys[2::4]) == 0
        async with MRCServer(config) as server:  # the indexer stopped: scanned
            assert await server.drop_outdated_cache(["StoreId"], [3]) == 100
            assert server.last_path == "scan"
        cluster.close()


async def test_cluster_failover_rebuilds_and_misses_nothing() -> None:
    """A replica taking over a shard: the indexer starts over on the new primaries, and
    entries written through the failover are all dropped."""
    with redis_cluster(3, replicas=1) as ports:
        url = f"redis://127.0.0.1:{ports[0]}"
        config = {"url": url, "cluster": True}
        async with MRCIndexer(config) as indexer:
            replica = next(
                port
                for port in ports
                if redis.Redis(port=port).info("replication")["role"] == "slave"
            )
            node = redis.Redis(port=replica)
            before = [cache_key("Phase=before", f"UserId={n}") for n in range(200)]
            cluster = redis.RedisCluster.from_url(url)
            for key in before:
                cluster.set(key, b"[]", ex=600)
            assert until(lambda: node.info("replication")["master_link_status"] == "up", 60)
            primary = redis.Redis(port=int(node.info("replication")["master_port"]))
            assert until(
                lambda: (
                    node.info("replication")["master_repl_offset"]
                    == primary.info("replication")["master_repl_offset"]
                ),
                30,
            )
            primary.close()
            node.cluster("FAILOVER", "TAKEOVER")
            assert until(lambda: node.info("replication")["role"] == "master", 30)
            cluster.close()
            cluster = redis.RedisCluster.from_url(url)  # the new topology
            during = [cache_key("Phase=during", f"UserId={n}") for n in range(200)]
            for key in during:
                cluster.set(key, b"[]", ex=600)
            assert await index_answers(config, 60)
            # what the failover kept (a write acknowledged by a primary just before it
            # stepped down can be lost, as Redis documents): every one must be dropped
            kept = sum(cluster.exists(k) for k in before)
            async with MRCServer(config) as server:
                counts = [
                    await server.drop_outdated_cache(["Phase"], [phase])
                    for phase in ("before", "during")
                ]
                assert counts == [kept, 200]
                assert server.paths == {"index": 2}
            assert sum(cluster.exists(k) for k in before + during) == 0
            assert indexer.rebuilds >= 1
            cluster.close()
            node.close()


def test_sigterm_leaves_nothing_running_and_nothing_trusted(
    private: RedisProcess, sync: redis.Redis
) -> None:
    """`mrc index` stopped by SIGTERM exits, closes its connections, withdraws its
    heartbeat; the index it leaves is never used again."""
    with indexer_process(private.url) as indexer:
        wait_alive(sync)
        code, out, err = indexer.terminate()
    assert code == 0, err
    assert "stopped:" in out
    assert "the invalidation index holds every key" in err  # what it did is its output
    assert sync.client_list(_type="pubsub") == []
    assert len(sync.client_list()) == 1  # ours only
    keys = [cache_key("StoreId=1", f"UserId={n}") for n in range(30)]
    write(sync, keys)  # written after the indexer stopped: not in the index

    async def drop() -> tuple[int, str]:
        async with MRCServer(private.url) as server:
            return await server.drop_outdated_cache(["StoreId"], [1]), server.last_path

    assert asyncio.run(drop()) == (30, "scan")
    assert left(sync, keys) == 0


async def test_expired_keys_leave_the_index(
    private: RedisProcess, sync: redis.Redis, indexer: MRCIndexer
) -> None:
    """Members of expired entries and finished fills are pruned; live ones stay."""
    short = [cache_key(f"StoreId={n % 3}", f"UserId={n}") for n in range(300)]
    live = [cache_key("StoreId=9", f"UserId={n}") for n in range(20)]
    write(sync, live)
    pipe = sync.pipeline(transaction=False)
    for key in short:
        pipe.set(key, b"[]", px=200)
    pipe.execute()
    marker = marker_of(live[0], b"\x01" * 16)
    sync.set(marker, b"1", px=3_600_000)
    sync.delete(marker)  # a fill that stored: its marker is gone at once

    def members() -> int:
        return sum(sync.zcard(k) for k in sync.scan_iter(match=SET_PREFIX + b"*"))

    for _ in range(300):  # the pruner looks every second
        if members() == 2 * len(live):
            break
        await asyncio.sleep(0.05)
    assert members() == 2 * len(live)  # StoreId=9 and UserId=n of each live entry


def user_without(server: RedisProcess, *refused: str) -> str:
    """The URL of a new ACL user allowed everything but the `refused` commands."""
    admin = redis.Redis.from_url(server.url)
    admin.acl_setuser(
        "app", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
        commands=["+@all", *refused],
    )  # fmt: skip
    admin.close()
    return f"redis://app:pw@127.0.0.1:{server.port}/0"


def test_notifications_refused_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Notifications off, and a user who may not CONFIG SET: mrc index exits 2 with one
    line naming what to set."""
    with redis_server() as server:
        url = user_without(server, "-config|set")
        assert main(["index", "--redis-url", url]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert "notify-keyspace-events" in err, err
        assert "E$g" in err, err

        async def run() -> None:
            await MRCIndexer(url).run()

        with pytest.raises(NotificationsOffError):
            asyncio.run(run())


def test_options_are_checked() -> None:
    from mysql_redis_cache import ConfigError

    for bad in (
        {"use_index": "yes"},
        {"index_wait": -1},
        {"index_wait": True},
        {"index_wait": 1e9},
    ):
        with pytest.raises(ConfigError):
            MRCServer(None, **bad)


async def test_scanning_is_said_once(
    private: RedisProcess, sync: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mysql_redis_cache")
    async with MRCServer(private.url) as server:
        for _ in range(3):
            await server.drop_outdated_cache(["StoreId"], [1])
    lines = [r.getMessage() for r in caplog.records if "scan the keyspace" in r.getMessage()]
    assert lines == ["invalidations scan the keyspace: no indexer is running"]
    assert server.paths == {"scan": 3}


async def test_a_killed_indexer_is_never_trusted(private: RedisProcess, sync: redis.Redis) -> None:
    """SIGKILL leaves the heartbeat behind for a moment: invalidations wait for an
    acknowledgement that never comes, then scan, and find what was written since."""
    with indexer_process(private.url) as indexer:
        wait_alive(sync)
        indexer.proc.kill()
        indexer.proc.wait(timeout=10)
    keys = [cache_key("StoreId=4", f"UserId={n}") for n in range(40)]
    write(sync, keys)
    async with MRCServer(private.url, index_wait=0.2) as server:
        assert await server.drop_outdated_cache(["StoreId"], [4]) == 40
        assert server.last_path == "scan"
    assert left(sync, keys) == 0


async def test_a_damaged_index_falls_back_to_the_scan(
    private: RedisProcess, sync: redis.Redis, indexer: MRCIndexer
) -> None:
    """A key of the index overwritten by something else (WRONGTYPE): the scan finishes
    the job instead of the invalidation failing."""
    keys = [cache_key("StoreId=5", f"UserId={n}") for n in range(40)]
    write(sync, keys)
    async with MRCServer(private.url) as server:
        await server.drop_outdated_cache(["Nothing"], ["here"])
        assert server.last_path == "index"
        sync.delete(set_for_token(b"StoreId=5"))
        sync.set(set_for_token(b"StoreId=5"), b"not a sorted set")
        assert await server.drop_outdated_cache(["StoreId"], [5]) == 40
        assert server.paths == {"index": 1, "scan": 1}
    assert left(sync, keys) == 0


def test_refused_credentials_stop_the_indexer() -> None:
    with redis_server("--requirepass", "right") as server:
        url = f"redis://:wrong@127.0.0.1:{server.port}/0"
        with pytest.raises(CacheAuthError):
            asyncio.run(MRCIndexer(url).run())
        assert main(["index", "--redis-url", url]) == 2


async def test_a_fill_overtaken_through_the_index_stores_nothing(
    private: RedisProcess, sync: redis.Redis, indexer: MRCIndexer
) -> None:
    """The index path deletes a running fill's marker, as the scan does, and the fill
    then stores nothing."""
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> list[dict[str, str]]:
        started.set()
        await release.wait()
        return [{"v": "read before the change"}]

    async with MRCClient(MYSQL_CONFIG, private.url) as client:
        fill = asyncio.create_task(client.with_cache(slow, "q", [3], ["StoreId"]))
        await started.wait()
        assert list(sync.scan_iter(match=b"*:fill:*")) != []
        async with MRCServer(private.url) as server:
            await server.drop_outdated_cache(["StoreId"], [3])
            assert server.last_path == "index"
        assert list(sync.scan_iter(match=b"*:fill:*")) == []
        release.set()
        assert await fill == [{"v": "read before the change"}]
        key = client.get_key_from_query("q", [3], ["StoreId"])
    assert sync.exists(key) == 0


def test_a_user_without_scripts_is_told_what_is_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An ACL user that may not run scripts: mrc index exits 2 with one line, instead of
    rebuilding for ever."""
    with redis_server("--notify-keyspace-events", "KEA") as server:
        url = user_without(server, "-evalsha", "-eval")
        assert main(["index", "--redis-url", url]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert "EVALSHA" in err, err


async def test_thousands_of_concurrent_invalidations_use_the_index(
    private: RedisProcess, sync: redis.Redis, indexer: MRCIndexer
) -> None:
    """2,000 invalidations at once: each proven through the index, each deleting its
    own entry and nothing else, 0 errors."""
    keys = [cache_key(f"UserId={n}", f"StoreId={n % 7}") for n in range(4000)]
    write(sync, keys)
    async with MRCServer(private.url) as server:
        results = await asyncio.gather(
            *(server.drop_outdated_cache(["UserId"], [n]) for n in range(2000)),
            return_exceptions=True,
        )
        assert results == [1] * 2000
        assert server.paths == {"index": 2000}
    assert left(sync, keys[:2000]) == 0
    assert left(sync, keys[2000:]) == 2000
