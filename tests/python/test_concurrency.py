"""128 simultaneous streaming requests, some of whose clients vanish mid-stream or while
queued: every request completes or is aborted, the KV pool returns to empty, and /health
answers throughout without waiting on the engine."""
import random
import threading
import time

import pytest
import requests

from conftest import STORIES, Server

N_REQUESTS = 128


@pytest.fixture(scope="module")
def server():
    s = Server(STORIES, "--max-num-seqs", "48", "--threads", "1")
    yield s
    s.stop()


def stream_one(url, rng, result):
    # ~1/3 of the clients disconnect: some before reading anything (often still queued),
    # some after a few events.
    disconnect_after = rng.choice([None, None, None, None, 0, 3, 10])
    body = {"prompt": rng.choice(["Once upon a time", "The little dog", "Lily and Ben went", "One day"]),
            "max_tokens": rng.randint(32, 400), "temperature": 0.8, "seed": rng.randint(0, 1 << 30),
            "stream": True}
    if disconnect_after is not None:
        # Those that leave would run to the end of the context: if the engine kept them,
        # it would generate hundreds of tokens each that nobody receives.
        body.update(max_tokens=480, ignore_eos=True)
    t0 = time.time()
    try:
        with requests.post(url + "/v1/completions", json=body, stream=True, timeout=300) as r:
            assert r.status_code == 200, r.text
            events = 0
            for line in r.iter_lines(decode_unicode=True):
                if not line or line.startswith(":"):
                    continue
                if disconnect_after is not None and events >= disconnect_after:
                    result["outcome"] = "disconnected"
                    r.close()
                    return
                if line == "data: [DONE]":
                    result["outcome"] = "done"
                    result["events"] = events
                    return
                events += 1
            result["outcome"] = "truncated"
    except Exception as e:  # noqa: BLE001 - recorded and asserted on below
        result["outcome"] = f"error: {e!r}"
    finally:
        result["elapsed"] = time.time() - t0


def test_many_streams_with_disconnects(server, wait_idle):
    rng = random.Random(1234)
    results = [dict() for _ in range(N_REQUESTS)]
    before = server.metric("kvserve:request_success_total")
    delivered_before = server.metric("kvserve:generation_tokens_total")
    engine_before = server.metric("kvserve:engine_generation_tokens_total")

    health_ms = []
    health_errors = []  # raised in the poller thread, where pytest would never see them
    stop = threading.Event()

    def poll_health():
        try:
            with requests.Session() as s:
                while not stop.is_set():
                    t = time.perf_counter()
                    r = s.get(server.url + "/health", timeout=5)
                    health_ms.append((time.perf_counter() - t) * 1000)
                    if r.status_code != 200:
                        health_errors.append(f"/health answered {r.status_code}: {r.text[:200]}")
                    time.sleep(0.02)
        except Exception as e:  # noqa: BLE001 - reported by the test's own thread below
            health_errors.append(f"/health poller died: {e!r}")

    poller = threading.Thread(target=poll_health, daemon=True)
    poller.start()
    threads = [threading.Thread(target=stream_one, args=(server.url, random.Random(rng.random()), results[i]),
                                daemon=True) for i in range(N_REQUESTS)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, 600 - (time.time() - t0)))
    stop.set()
    poller.join(10)
    elapsed = time.time() - t0
    assert not poller.is_alive(), "/health poller hung"
    assert not health_errors, health_errors[:5]

    outcomes = [r.get("outcome", "hung") for r in results]
    bad = [o for o in outcomes if o not in ("done", "disconnected")]
    assert not bad, bad[:5]
    assert outcomes.count("disconnected") > 10 and outcomes.count("done") > 60

    idle = wait_idle(server, timeout=30)
    assert sum(v for k, v in idle.items() if k.startswith("kvserve:kv_cache_usage_perc")) == 0
    # Every request ended exactly once in the counters (aborted ones as "abort").
    deadline = time.time() + 10
    while server.metric("kvserve:request_success_total") - before < N_REQUESTS and time.time() < deadline:
        time.sleep(0.1)
    assert server.metric("kvserve:request_success_total") - before == N_REQUESTS
    assert server.metric("kvserve:request_success_total", finished_reason="abort") >= outcomes.count("disconnected") - 5
    # The aborts reached the engine: it generated only a few tokens per abandoned request
    # that no client received, not the hundreds each would take to finish.
    delivered = server.metric("kvserve:generation_tokens_total") - delivered_before
    undelivered = server.metric("kvserve:engine_generation_tokens_total") - engine_before - delivered
    assert 0 <= undelivered < 8 * outcomes.count("disconnected"), (undelivered, outcomes.count("disconnected"))

    health_ms.sort()
    print(f"\n{N_REQUESTS} streams in {elapsed:.1f} s, {outcomes.count('disconnected')} disconnected, "
          f"{undelivered:.0f} tokens undelivered; /health n={len(health_ms)} "
          f"p50={health_ms[len(health_ms) // 2]:.1f} ms max={health_ms[-1]:.1f} ms")
    assert len(health_ms) >= 5
    # A hang detector, not a latency goal (those live in benchmarks): a /health that queued
    # behind the engine would wait for the requests ahead of it, seconds here. 100 ms failed
    # once in CI on 2 cores, where 128 client threads share one GIL with the poller.
    assert health_ms[-1] < 1000, f"/health took {health_ms[-1]:.1f} ms"
