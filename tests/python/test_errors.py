"""Bad requests get OpenAI-style error objects with the right HTTP status (raw HTTP)."""
import pytest
import requests


def post(server, path, body=None, data=None, headers=None):
    kw = {"json": body} if data is None else {"data": data}
    return requests.post(server.url + path, timeout=30, headers=headers, **kw)


def assert_error(r, status, param=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if status in (400, 404):
        assert err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] == param, err
    return err


@pytest.mark.parametrize("body,param", [
    ({"prompt": "x", "temperature": -1}, "temperature"),
    ({"prompt": "x", "temperature": "hot"}, "temperature"),
    ({"prompt": "x", "top_p": 0}, "top_p"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 100000}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 510}, "max_tokens"),  # fits alone, not with the prompt
    ({"prompt": "x", "n": 1000}, "n"),
    ({"prompt": "x", "n": "2"}, "n"),
    ({"prompt": "x", "logprobs": 50}, "logprobs"),
    ({"prompt": "x", "stop": [1]}, "stop"),
    ({"prompt": "x", "logit_bias": {"x": 1}}, "logit_bias"),
    ({"prompt": "x", "logit_bias": {"99999": 1}}, "logit_bias"),
    ({"prompt": [99999]}, "prompt"),
    ({"prompt": 7}, "prompt"),
    ({"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
    ({"prompt": "x" * 3000}, "prompt"),  # longer than the 512-token context
])
def test_completion_errors(stories, body, param):
    assert_error(post(stories, "/v1/completions", body), 400, param)


@pytest.mark.parametrize("body,param", [
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages"),
    ({"messages": [{"role": "user", "content": 3}]}, "messages"),
    ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}, "top_logprobs"),
    ({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 100000}, "max_completion_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 64}, "n"),
])
def test_chat_errors(stories, body, param):
    assert_error(post(stories, "/v1/chat/completions", body), 400, param)


def test_malformed_json(stories):
    for data in [b"{", b"[]", b"not json", b'{"prompt": "x",}', b""]:
        assert_error(post(stories, "/v1/completions", data=data), 400)


def test_invalid_utf8(stories):
    assert_error(post(stories, "/v1/completions", data=b'{"prompt": "\xff\xfe"}'), 400)
    assert_error(post(stories, "/v1/chat/completions",
                      data=b'{"messages": [{"role": "user", "content": "\xc0\xaf"}]}'), 400)
    assert_error(post(stories, "/v1/completions", data=b'{"prompt": "\\ud800"}'), 400)


def test_unknown_model_is_404(stories):
    err = assert_error(post(stories, "/v1/completions", {"model": "gpt-17", "prompt": "x"}), 404, "model")
    assert err["code"] == "model_not_found"
    assert_error(post(stories, "/v1/chat/completions",
                      {"model": "gpt-17", "messages": [{"role": "user", "content": "x"}]}), 404)


def test_unknown_route_and_method(stories):
    assert_error(requests.get(stories.url + "/v1/nothing", timeout=10), 404)


def test_body_too_large(stories):
    r = post(stories, "/v1/completions", data=b'{"prompt": "' + b"a" * (9 << 20) + b'"}')
    assert r.status_code == 413


def test_server_still_fine_after_errors(stories):
    r = post(stories, "/v1/completions", {"prompt": "Once", "max_tokens": 2})
    assert r.status_code == 200 and len(r.json()["choices"]) == 1
