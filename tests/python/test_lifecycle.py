"""API key, client disconnect, queue limit (429) and graceful shutdown, each on its own server."""
import json
import signal
import threading
import time

import openai
import pytest
import requests

from conftest import SMOLLM2, STORIES, Server

LONG = {"prompt": "Once upon a time", "max_tokens": 480, "temperature": 0.8, "seed": 1, "stream": True,
        "ignore_eos": True}
# The abort tests need requests that would run far longer than the test waits: SmolLM2 on
# one thread makes tens of tokens a second, so 2000 tokens take tens of seconds by
# themselves. A request freed within a fifth of that was aborted in the engine, not just
# forgotten by the server (which counts the abort itself either way).
SLOW_SERVER = ("--threads", "1", "--max-model-len", "2048")
SLOW = {**LONG, "max_tokens": 2000}


def read_events(resp, n):
    # One iterator per response, kept on it: a dropped iter_lines generator makes urllib3
    # close the connection, which the server rightly treats as a client disconnect.
    if not hasattr(resp, "kv_lines"):
        resp.kv_lines = resp.iter_lines(decode_unicode=True)
    got = []
    for line in resp.kv_lines:
        if line and line.startswith("data: "):
            got.append(line)
            if len(got) >= n:
                break
    return got


def stream_rate(resp, n=20):
    """Tokens per second of a running stream, from its next n events (~1 token each)."""
    read_events(resp, 1)  # the first token's wait includes the prefill
    t = time.time()
    assert len(read_events(resp, n)) == n
    return n / (time.time() - t)


def natural_seconds(rate, generated):
    return (SLOW["max_tokens"] - generated) / rate


def assert_engine_stopped(s, slack=100):
    """The engine samples nothing more, and few tokens beyond what reached the server
    (the steps between the disconnect and the abort): an abandoned request that keeps
    running in the engine adds tokens that no client receives."""
    engine = s.metric("kvserve:engine_generation_tokens_total")
    time.sleep(0.3)
    assert s.metric("kvserve:engine_generation_tokens_total") == engine
    extra = engine - s.metric("kvserve:generation_tokens_total")
    assert 0 <= extra < slack, f"{extra} tokens generated after the abort"


def test_api_key():
    s = Server(STORIES, "--api-key", "sekret", "--threads", "1")
    try:
        assert requests.get(s.url + "/v1/models", timeout=10).status_code == 401
        r = requests.get(s.url + "/v1/models", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert requests.get(s.url + "/health", timeout=10).status_code == 200
        assert requests.get(s.url + "/v1/models", headers={"Authorization": "Bearer sekret"}, timeout=10).ok
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=s.url + "/v1", api_key="wrong", max_retries=0).completions.create(
                model=s.model, prompt="x", max_tokens=1)
        ok = openai.OpenAI(base_url=s.url + "/v1", api_key="sekret", max_retries=0).completions.create(
            model=s.model, prompt="Once", max_tokens=2)
        assert len(ok.choices) == 1
    finally:
        s.stop()


def test_disconnect_aborts_and_frees(wait_idle):
    s = Server(SMOLLM2, *SLOW_SERVER)
    try:
        r = requests.post(s.url + "/v1/completions", json=SLOW, stream=True, timeout=60)
        natural = natural_seconds(stream_rate(r), 21)
        assert s.metric("kvserve:num_requests_running") == 1
        assert s.metric("kvserve:kv_cache_usage_perc") > 0
        t = time.time()
        r.close()
        wait_idle(s, timeout=natural / 5)
        freed_s = time.time() - t
        assert s.metric("kvserve:request_success_total", finished_reason="abort") == 1
        assert freed_s < natural / 5
        assert_engine_stopped(s)
    finally:
        s.stop()


def test_queue_full_gets_429():
    # SmolLM2 generates slowly enough on the CPU that the first request is still running.
    s = Server(SMOLLM2, "--threads", "1", "--max-num-seqs", "1", "--max-waiting", "1", "--max-model-len", "1024")
    try:
        a = requests.post(s.url + "/v1/completions", json=LONG, stream=True, timeout=60)
        read_events(a, 1)
        b = requests.post(s.url + "/v1/completions", json=LONG, stream=True, timeout=60)
        deadline = time.time() + 10
        while s.metric("kvserve:num_requests_waiting") < 1 and time.time() < deadline:
            time.sleep(0.02)
        c = requests.post(s.url + "/v1/completions", json={**LONG, "stream": False}, timeout=60)
        assert c.status_code == 429
        assert c.headers.get("Retry-After") == "1"
        assert c.json()["error"]["code"] == "queue_full"
        a.close()
        b.close()
    finally:
        s.stop()


def test_graceful_shutdown():
    s = Server(STORIES, "--threads", "1")
    r = requests.post(s.url + "/v1/completions", json=LONG, stream=True, timeout=60)
    lines = iter(r.iter_lines(decode_unicode=True))
    first = [next(lines) for _ in range(4)]
    assert any(l.startswith("data: ") for l in first)
    t = time.time()
    s.proc.send_signal(signal.SIGTERM)
    rest = [l for l in lines if l.startswith("data: ")]
    assert rest[-1] == "data: [DONE]"
    last = json.loads(rest[-2][6:])
    assert last["choices"][0]["finish_reason"] == "abort"
    assert s.proc.wait(30) == 0
    assert time.time() - t < 15


def test_disconnect_while_queued_aborts(wait_idle):
    # One sequence at a time: b waits behind a; b's client leaves before any token. The
    # server notices through its keep-alive comments and drops b from the queue, long
    # before a would finish and make room for it.
    s = Server(SMOLLM2, *SLOW_SERVER, "--max-num-seqs", "1")
    try:
        a = requests.post(s.url + "/v1/completions", json=SLOW, stream=True, timeout=60)
        natural = natural_seconds(stream_rate(a), 21)
        b = requests.post(s.url + "/v1/completions", json=SLOW, stream=True, timeout=60)
        deadline = time.time() + 10
        while s.metric("kvserve:num_requests_waiting") < 1 and time.time() < deadline:
            time.sleep(0.02)
        assert s.metric("kvserve:num_requests_waiting") == 1
        b.close()
        t = time.time()
        while s.metric("kvserve:num_requests_waiting") > 0 and time.time() - t < natural / 5:
            time.sleep(0.05)
        assert s.metric("kvserve:num_requests_waiting") == 0
        assert s.metric("kvserve:num_requests_running") == 1  # a is untouched
        assert time.time() - t < natural / 5
        assert s.metric("kvserve:request_success_total", finished_reason="abort") == 1
        assert len(read_events(a, 5)) == 5
        t = time.time()
        a.close()
        wait_idle(s, timeout=natural / 5)
        assert time.time() - t < natural / 5
        assert_engine_stopped(s)
    finally:
        s.stop()


def test_preemption_under_small_cache(wait_idle):
    # 24 blocks of 16 tokens cannot hold 8 sequences of ~260 tokens: the engine preempts
    # and recomputes, and every request still completes with its full length.
    import concurrent.futures

    s = Server(STORIES, "--threads", "1", "--num-kv-blocks", "24", "--max-num-seqs", "8")
    try:
        def run(i):
            r = requests.post(s.url + "/v1/completions", timeout=120, json={
                "prompt": "Once upon a time", "max_tokens": 250, "ignore_eos": True, "temperature": 0.7,
                "seed": i})
            return r.status_code, r.json()

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            results = list(ex.map(run, range(8)))
        for status, body in results:
            assert status == 200, body
            assert body["choices"][0]["finish_reason"] == "length"
            assert body["usage"]["completion_tokens"] == 250
        assert s.metric("kvserve:num_preemptions_total") > 0
        wait_idle(s, timeout=10)
    finally:
        s.stop()


def test_non_streaming_disconnect_aborts(wait_idle):
    # A non-streaming request that runs longer than the keep-alive period is answered
    # chunked with leading spaces; a client that leaves is noticed and its request aborted.
    import socket

    s = Server(SMOLLM2, *SLOW_SERVER)
    try:
        t = time.time()
        ok = requests.post(s.url + "/v1/completions", timeout=120,
                           json={"prompt": "Once upon a time", "max_tokens": 60, "ignore_eos": True})
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 60
        natural = natural_seconds(60 / (time.time() - t), 0)
        body = json.dumps({**SLOW, "stream": False}).encode()
        tokens_before = s.metric("kvserve:generation_tokens_total")
        sock = socket.create_connection((s.host, s.port))
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        # Wait for the new request's own tokens: the engine's gauges may briefly still
        # describe the step that finished the previous request.
        deadline = time.time() + 10
        while s.metric("kvserve:generation_tokens_total") <= tokens_before and time.time() < deadline:
            time.sleep(0.02)
        assert s.metric("kvserve:num_requests_running") == 1
        sock.close()
        t = time.time()
        while s.metric("kvserve:request_success_total", finished_reason="abort") < 1 and time.time() - t < 10:
            time.sleep(0.05)
        assert s.metric("kvserve:request_success_total", finished_reason="abort") == 1
        # Noticed at the next keep-alive write (1 s apart), then freed within a step.
        wait_idle(s, timeout=natural / 5)
        assert time.time() - t < natural / 5
        assert_engine_stopped(s)
    finally:
        s.stop()


def test_long_non_streaming_response_is_valid_json():
    s = Server(SMOLLM2, "--threads", "1", "--max-model-len", "1024")
    try:
        r = requests.post(s.url + "/v1/completions", timeout=300,
                          json={"prompt": "Once upon a time", "max_tokens": 300, "ignore_eos": True})
        assert r.status_code == 200
        assert r.json()["usage"]["completion_tokens"] == 300
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0, timeout=300)
        out = c.completions.create(model=s.model, prompt="Once upon a time", max_tokens=300,
                                   extra_body={"ignore_eos": True})
        assert out.usage.completion_tokens == 300
    finally:
        s.stop()
