"""/v1/completions against stories260K through the official openai client."""
import json

import openai
import pytest
import requests

PROMPT = "Once upon a time"
# shared/README.md: greedy decoding of stories260K from BOS + "Once upon a time".
GREEDY = ", there was a little girl named Lily. She loved to play outside in the park."


@pytest.fixture(scope="module")
def client(stories):
    return openai.OpenAI(base_url=stories.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_health_and_models(stories):
    r = requests.get(stories.url + "/health", timeout=5)
    assert r.status_code == 200
    models = requests.get(stories.url + "/v1/models", timeout=5).json()
    assert models["data"][0]["kvserve_config"]["mode"] == "balanced"  # the resolved settings
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == [stories.model]
    assert models["data"][0]["max_model_len"] == 512


def test_greedy_matches_reference(client, stories):
    r = client.completions.create(model=stories.model, prompt=PROMPT, max_tokens=20, temperature=0)
    assert r.object == "text_completion"
    assert r.id.startswith("cmpl-")
    assert r.model == stories.model
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.index == 0
    assert c.text.startswith(", there was a little girl named Lily.")
    assert c.finish_reason == "length"
    assert r.usage.completion_tokens == 20
    assert r.usage.prompt_tokens == 5  # BOS + 4 tokens
    assert r.usage.total_tokens == 25


def test_stream_equals_non_stream(client, stories):
    full = client.completions.create(model=stories.model, prompt=PROMPT, max_tokens=30, temperature=0)
    chunks = list(client.completions.create(model=stories.model, prompt=PROMPT, max_tokens=30, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert text == full.choices[0].text
    finals = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 30
    assert all(ch.id == chunks[0].id for ch in chunks)


def test_raw_sse_framing(stories):
    r = requests.post(stories.url + "/v1/completions", stream=True, timeout=60,
                      json={"prompt": PROMPT, "max_tokens": 5, "temperature": 0, "stream": True})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = [line for line in r.iter_lines(decode_unicode=True) if line]
    assert events[-1] == "data: [DONE]"
    for e in events[:-1]:
        assert e.startswith("data: ") or e.startswith(":")
        if e.startswith("data: "):
            assert json.loads(e[6:])["object"] == "text_completion"


def test_n_and_seed(client, stories):
    kw = dict(model=stories.model, prompt=PROMPT, max_tokens=16, temperature=1.0, n=3, seed=1234)
    a = client.completions.create(**kw)
    b = client.completions.create(**kw)
    assert sorted(c.index for c in a.choices) == [0, 1, 2]
    assert [c.text for c in a.choices] == [c.text for c in b.choices]  # same seed, same texts
    assert 3 <= a.usage.completion_tokens <= 48
    other = client.completions.create(**{**kw, "seed": 99})
    assert [c.text for c in other.choices] != [c.text for c in a.choices]


def test_stream_n(client, stories):
    chunks = list(client.completions.create(model=stories.model, prompt=PROMPT, max_tokens=8, temperature=0.8,
                                            n=2, stream=True, seed=5))
    texts = {0: "", 1: ""}
    finished = set()
    for ch in chunks:
        for c in ch.choices:
            texts[c.index] += c.text
            if c.finish_reason:
                finished.add(c.index)
    assert finished == {0, 1}
    assert all(texts.values())


def test_stop(client, stories):
    r = client.completions.create(model=stories.model, prompt=PROMPT, max_tokens=40, temperature=0, stop=["Lily"])
    assert r.choices[0].text == ", there was a little girl named "
    assert r.choices[0].finish_reason == "stop"
    s = list(client.completions.create(model=stories.model, prompt=PROMPT, max_tokens=40, temperature=0,
                                       stop="girl", stream=True))
    assert "".join(c.choices[0].text for c in s if c.choices) == ", there was a little "


def test_logprobs(client, stories):
    r = client.completions.create(model=stories.model, prompt=PROMPT, max_tokens=10, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 10
    assert "".join(lp.tokens) == r.choices[0].text
    assert all(v <= 0 for v in lp.token_logprobs)
    for tok, lpv, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert 1 <= len(top) <= 4
        # Greedy: the chosen token is the most likely one.
        assert max(top.values()) == pytest.approx(lpv, abs=1e-4)
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0


def test_echo(client, stories):
    r = client.completions.create(model=stories.model, prompt=PROMPT, max_tokens=5, temperature=0, echo=True,
                                  logprobs=1)
    assert r.choices[0].text.startswith(PROMPT)
    lp = r.choices[0].logprobs
    # BOS + 4 prompt tokens + 5 generated; the first has no logprob.
    assert len(lp.tokens) == 10
    assert lp.token_logprobs[0] is None
    assert all(v is not None and v <= 0 for v in lp.token_logprobs[1:])


def test_token_prompts_and_lists(client, stories):
    a = client.completions.create(model=stories.model, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=0,
                                  echo=True)
    n_prompt = a.usage.prompt_tokens
    assert n_prompt == 5
    r = client.completions.create(model=stories.model, prompt=[PROMPT, "The cat"], max_tokens=8, temperature=0)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].text == a.choices[0].text[len(PROMPT):]
    assert r.usage.completion_tokens == 16


def test_token_id_prompt(stories):
    tok = requests.post(stories.url + "/tokenize", json={"prompt": PROMPT}, timeout=10).json()
    assert tok["count"] == 5 and len(tok["tokens"]) == 5
    text = requests.post(stories.url + "/detokenize", json={"tokens": tok["tokens"][1:]}, timeout=10).json()
    assert text["prompt"] == PROMPT
    body = {"max_tokens": 8, "temperature": 0}
    by_ids = requests.post(stories.url + "/v1/completions", timeout=60, json={**body, "prompt": tok["tokens"]}).json()
    by_text = requests.post(stories.url + "/v1/completions", timeout=60, json={**body, "prompt": PROMPT}).json()
    assert by_ids["usage"]["prompt_tokens"] == 5
    assert by_ids["choices"][0]["text"] == by_text["choices"][0]["text"]
    two = requests.post(stories.url + "/v1/completions", timeout=60,
                        json={**body, "prompt": [tok["tokens"], tok["tokens"][:3]]}).json()
    assert [c["index"] for c in two["choices"]] == [0, 1]
    assert two["choices"][0]["text"] == by_text["choices"][0]["text"]


def test_best_of(client, stories):
    kw = dict(model=stories.model, prompt=PROMPT, max_tokens=8, temperature=1.0, seed=7)
    r = client.completions.create(n=2, best_of=4, **kw)
    assert len(r.choices) == 2
    assert r.choices[0].logprobs is None  # ranking logprobs are not returned unless asked
    assert r.usage.completion_tokens <= 32
    # A seeded request's sequence i samples from the seed's stream i, so n=4 draws the very
    # candidates best_of=4 drew; best_of returns the 2 with the highest cumulative logprob,
    # best first.
    cands = client.completions.create(n=4, logprobs=0, **kw).choices
    ranked = sorted(cands, key=lambda c: -sum(c.logprobs.token_logprobs))
    assert [c.text for c in r.choices] == [c.text for c in ranked[:2]]
    # With this seed the best two are not simply the first two drawn, so ignoring best_of
    # (returning sequences 0 and 1) cannot pass.
    assert [c.text for c in ranked[:2]] != [c.text for c in cands[:2]]


def test_penalties_and_bias(client, stories):
    # A large positive bias on one token makes greedy decoding repeat it: that very id.
    r = client.completions.create(model=stories.model, prompt=PROMPT, max_tokens=4, temperature=0,
                                  logit_bias={"300": 100})
    toks = requests.post(stories.url + "/v1/completions", timeout=60,
                         json={"prompt": PROMPT, "max_tokens": 4, "temperature": 0, "logit_bias": {"300": 100},
                               "logprobs": 0}).json()
    assert r.choices[0].text == toks["choices"][0]["text"]
    # Ids 299..301 spelled as the server spells tokens in logprobs: echo them as a prompt.
    echo = requests.post(stories.url + "/v1/completions", timeout=60,
                         json={"prompt": [299, 300, 301], "max_tokens": 1, "temperature": 0, "echo": True,
                               "logprobs": 0}).json()
    pieces = echo["choices"][0]["logprobs"]["tokens"][:3]
    assert len(set(pieces)) == 3, pieces  # neighbours are told apart
    assert toks["choices"][0]["logprobs"]["tokens"] == [pieces[1]] * 4
    # The id itself: with 300 as a stop token, the biased request stops at its first token.
    stop = requests.post(stories.url + "/v1/completions", timeout=60,
                         json={"prompt": PROMPT, "max_tokens": 4, "temperature": 0, "logit_bias": {"300": 100},
                               "stop_token_ids": [300]}).json()
    assert stop["choices"][0]["finish_reason"] == "stop", stop
    assert stop["usage"]["completion_tokens"] == 1
    p = client.completions.create(model=stories.model, prompt=PROMPT, max_tokens=30, temperature=0,
                                  frequency_penalty=2.0, presence_penalty=2.0)
    plain = client.completions.create(model=stories.model, prompt=PROMPT, max_tokens=30, temperature=0)
    assert p.choices[0].text != plain.choices[0].text


def test_metrics_exposition(client, stories):
    client.completions.create(model=stories.model, prompt=PROMPT, max_tokens=3, temperature=0)
    m = stories.metrics()
    names = {k.split("{")[0] for k in m}
    for n in ["kvserve:time_to_first_token_seconds_bucket", "kvserve:inter_token_latency_seconds_count",
              "kvserve:e2e_request_latency_seconds_sum", "kvserve:request_queue_time_seconds_count",
              "kvserve:request_prompt_tokens_count", "kvserve:request_generation_tokens_sum",
              "kvserve:num_requests_running", "kvserve:num_requests_waiting", "kvserve:kv_cache_usage_perc",
              "kvserve:prefix_cache_queries_total", "kvserve:prefix_cache_hits_total",
              "kvserve:prompt_tokens_total", "kvserve:generation_tokens_total", "kvserve:num_preemptions_total",
              "kvserve:request_success_total"]:
        assert n in names, n
    assert stories.metric("kvserve:request_success_total", finished_reason="length") >= 1
    assert stories.metric("kvserve:generation_tokens_total") >= 3
    assert stories.metric("kvserve:time_to_first_token_seconds_count") >= 1
    assert stories.metric("kvserve:prefix_cache_queries_total") >= 5


def test_prefix_cache_metrics(client, stories):
    prompt = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. " * 2
    q0 = stories.metric("kvserve:prefix_cache_queries_total")
    h0 = stories.metric("kvserve:prefix_cache_hits_total")
    first = client.completions.create(model=stories.model, prompt=prompt, max_tokens=4, temperature=0)
    second = client.completions.create(model=stories.model, prompt=prompt, max_tokens=4, temperature=0)
    n = first.usage.prompt_tokens
    assert n > 32
    assert first.choices[0].text == second.choices[0].text
    assert stories.metric("kvserve:prefix_cache_queries_total") - q0 == 2 * n
    # The second request finds at least one full 16-token block of the first.
    hits = stories.metric("kvserve:prefix_cache_hits_total") - h0
    assert 16 <= hits <= n
