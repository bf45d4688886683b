"""A server that speculates (n-gram lookup) answers exactly as one that does not.

The same server answers each request twice, once with the kvserve extension
`"speculative": false`: greedy and seeded sampled texts must be identical, streamed or
not, while the spec-decode counters show drafts were really run and accepted.
"""
import json

import pytest
import requests

from conftest import STORIES, Server

PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside. Once upon a time"


@pytest.fixture(scope="module")
def spec_server():
    s = Server(STORIES, "--max-num-seqs", "8", "--threads", "1", "--speculative-method", "ngram",
               "--num-speculative-tokens", "5", "--no-speculative-adaptive")
    yield s
    s.stop()


def complete(server, **body):
    r = requests.post(server.url + "/v1/completions", timeout=60, json={"prompt": PROMPT, **body})
    assert r.status_code == 200, r.text
    return r.json()["choices"]


def stream(server, **body):
    r = requests.post(server.url + "/v1/completions", timeout=60, stream=True,
                      json={"prompt": PROMPT, "stream": True, **body})
    assert r.status_code == 200, r.text
    text = ""
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("data: ") and line != "data: [DONE]":
            ev = json.loads(line[6:])
            text += "".join(c["text"] for c in ev["choices"])
    return text


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 0.8, "seed": 7},
                                      {"temperature": 1.0, "top_p": 0.9, "seed": 3, "n": 2}])
def test_same_text_with_and_without_speculation(spec_server, sampling):
    before = spec_server.metric("kvserve:spec_decode_num_accepted_tokens_total")
    body = {"max_tokens": 80, "ignore_eos": True, **sampling}
    spec = complete(spec_server, **body)
    plain = complete(spec_server, speculative=False, **body)
    assert [c["text"] for c in spec] == [c["text"] for c in plain]
    if sampling.get("n", 1) == 1:
        assert stream(spec_server, **body) == plain[0]["text"]
    assert spec_server.metric("kvserve:spec_decode_num_accepted_tokens_total") > before


def test_spec_metrics(spec_server):
    complete(spec_server, max_tokens=60, temperature=0)
    m = spec_server.metrics()
    drafts = spec_server.metric("kvserve:spec_decode_num_drafts_total", m)
    draft_tokens = spec_server.metric("kvserve:spec_decode_num_draft_tokens_total", m)
    accepted = spec_server.metric("kvserve:spec_decode_num_accepted_tokens_total", m)
    per_pos = [spec_server.metric("kvserve:spec_decode_num_accepted_tokens_per_pos_total", m, position=str(i))
               for i in range(5)]
    assert drafts > 0 and 0 < accepted <= draft_tokens <= 5 * drafts
    assert sum(per_pos) == accepted
    # A token is accepted at position i only if every earlier one was.
    assert all(a >= b for a, b in zip(per_pos, per_pos[1:]))


def test_plain_server_has_no_spec_metrics(stories):
    assert not any(k.startswith("kvserve:spec_decode") for k in stories.metrics())


@pytest.fixture(scope="module")
def draft_server():
    s = Server(STORIES, "--max-num-seqs", "8", "--threads", "1", "--speculative-method", "draft",
               "--speculative-model", str(STORIES), "--num-speculative-tokens", "3", "--no-speculative-adaptive")
    yield s
    s.stop()


def test_draft_model_greedy_same_text(draft_server):
    body = {"max_tokens": 60, "temperature": 0}
    spec = complete(draft_server, **body)
    plain = complete(draft_server, speculative=False, **body)
    assert spec[0]["text"] == plain[0]["text"]
    assert stream(draft_server, **body) == plain[0]["text"]
    # The model drafting for itself: every draft token is the target's own choice.
    m = draft_server.metrics()
    accepted = draft_server.metric("kvserve:spec_decode_num_accepted_tokens_total", m)
    assert accepted > 0 and accepted == draft_server.metric("kvserve:spec_decode_num_draft_tokens_total", m)


def test_draft_model_with_another_vocabulary_fails_at_start():
    from conftest import SHARED
    other = SHARED / "models" / "llama-2-tiny-random.gguf"
    with pytest.raises(RuntimeError, match="vocabulary"):
        Server(STORIES, "--speculative-method", "draft", "--speculative-model", str(other), startup_timeout=60)


@pytest.fixture(scope="module")
def tree_server():
    s = Server(STORIES, "--max-num-seqs", "8", "--threads", "1", "--speculative-method", "ngram",
               "--num-speculative-tokens", "4", "--speculative-tree", "3,2", "--no-speculative-adaptive")
    yield s
    s.stop()


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "seed": 11}])
def test_token_tree_same_text(tree_server, sampling):
    body = {"max_tokens": 80, "ignore_eos": True, **sampling}
    # Earlier answers feed the shared n-gram cache, whose runners-up make the branches.
    for seed in range(4):
        complete(tree_server, max_tokens=40, temperature=1.0, seed=100 + seed)
    before = tree_server.metric("kvserve:spec_decode_num_accepted_tokens_total")
    spec = complete(tree_server, **body)
    plain = complete(tree_server, speculative=False, **body)
    assert spec[0]["text"] == plain[0]["text"]
    assert stream(tree_server, **body) == plain[0]["text"]
    assert tree_server.metric("kvserve:spec_decode_num_accepted_tokens_total") > before


@pytest.mark.parametrize("tree, message", [("0,2", "branches 1 to 8"), ("3,x", "branching per depth"),
                                           ("2,2,2,2,2", "deeper than --num-speculative-tokens")])
def test_bad_token_tree_fails_at_start(tree, message):
    with pytest.raises(RuntimeError, match=message):
        Server(STORIES, "--speculative-method", "ngram", "--speculative-tree", tree, startup_timeout=60)
