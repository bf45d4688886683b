"""The `kvserve` CLI end to end: generate (single and --batch-file), info, tokenize, eval kv-cache,
bench serve --sweep."""
import json
import subprocess
import sys

import pytest

from conftest import GEMMA3, REPO, SHARED, STORIES, kvserve_bin, missing

GOLDEN = SHARED / "golden" / "stories260K.shared.jsonl"


def run(*args, check=True):
    binary = kvserve_bin()
    if not binary.exists():
        pytest.fail(f"{binary} not built")
    p = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        pytest.fail(f"kvserve {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def golden():
    return [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]


def test_generate_single_json_matches_llamacpp_greedy():
    g = golden()[0]
    n = len(g["greedy_tokens"])
    out = json.loads(run("generate", "-m", str(STORIES), "-p", g["prompt"], "-n", str(n), "--json",
                         "-t", "1", "--logprobs", "3", "--prompt-logprobs", "2").stdout)
    assert out["prompt_tokens"] == g["prompt_tokens"]
    assert out["tokens"] == g["greedy_tokens"][:n]
    assert len(out["logprobs"]) == len(out["tokens"])
    assert all(len(e["top"]) == 3 and e["top"][0][0] == t for e, t in zip(out["logprobs"], out["tokens"]))
    assert out["prompt_logprobs"][0] is None and len(out["prompt_logprobs"]) == len(out["prompt_tokens"])
    assert out["generated_tokens_per_second"] > 0


def test_generate_batch_file_in_input_order(tmp_path):
    cases = golden()
    n = min(len(c["greedy_tokens"]) for c in cases)
    batch = tmp_path / "prompts.txt"
    batch.write_text("".join(c["prompt"].replace("\\", "\\\\").replace("\n", "\\n") + "\n" for c in cases))
    lines = run("generate", "-m", str(STORIES), "--batch-file", str(batch), "-n", str(n), "--json",
                "-t", "1", "--max-num-seqs", "3").stdout.splitlines()
    assert len(lines) == len(cases) + 1
    for i, (line, c) in enumerate(zip(lines, cases)):
        r = json.loads(line)
        assert r["index"] == i and r["prompt"] == c["prompt"]
        assert r["tokens"] == c["greedy_tokens"][:n], c["prompt"]
        assert r["finish_reason"] in ("length", "stop")
    summary = json.loads(lines[-1])
    assert summary["summary"] and summary["num_requests"] == len(cases) and summary["errors"] == 0
    assert summary["output_tokens"] == n * len(cases)
    assert summary["total_tokens_per_s"] > 0


def test_generate_batch_preempts_and_still_matches(tmp_path):
    cases = golden()
    batch = tmp_path / "prompts.txt"
    batch.write_text("".join(c["prompt"].replace("\n", "\\n") + "\n" for c in cases))
    # 6 blocks of 16 tokens cannot hold 5 sequences of ~60 tokens at once: preemption.
    lines = run("generate", "-m", str(STORIES), "--batch-file", str(batch), "-n", "40", "--json", "-t", "1",
                "--kv-cache-memory", str(6 * 16 * 5 * 2 * 64 * 4 // 2)).stdout.splitlines()
    summary = json.loads(lines[-1])
    assert summary["preemptions"] > 0
    for line, c in zip(lines, cases):
        assert json.loads(line)["tokens"] == c["greedy_tokens"][:40]


def test_generate_errors_are_clear(tmp_path):
    p = run("generate", "-m", str(tmp_path / "missing.gguf"), "-p", "hi", check=False)
    assert p.returncode == 1 and "missing.gguf" in p.stderr
    p = run("generate", "-m", str(STORIES), "-p", "hi", "--temperature", "-1", check=False)
    assert p.returncode == 1 and "temperature" in p.stderr
    p = run("generate", "-m", str(STORIES), "--prompt-tokens", "1 99999", check=False)
    assert p.returncode == 1 and "99999" in p.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    p = run("generate", "-m", str(STORIES), "--batch-file", str(empty), check=False)
    assert p.returncode == 1 and "no prompts" in p.stderr


@pytest.mark.parametrize("model", sorted((SHARED / "models").glob("*.gguf")), ids=lambda p: p.name)
def test_info_and_tokenize_work_on_every_shared_model(model):
    info = json.loads(run("info", "-m", str(model), "--json").stdout)
    assert info
    ids = run("tokenize", "-m", str(model), "--prompt", "Once upon a time").stdout.split()
    assert ids and all(i.isdigit() for i in ids)


def test_info_says_how_kvserve_runs_the_model():
    info = json.loads(run("info", "-m", str(STORIES), "--json").stdout)["kvserve"]
    assert info["architecture"] == "llama" and [l["window"] for l in info["layers"]] == [0] * 5
    # An architecture kvserve does not run names itself and the supported ones.
    vocab = SHARED / "vocab" / "ggml-vocab-gpt-2.gguf"
    err = json.loads(run("info", "-m", str(vocab), "--json").stdout)["kvserve"]["error"]
    assert "unsupported architecture 'gpt2'" in err and "llama" in err and "gemma3" in err
    assert "cannot run this file: unsupported architecture 'gpt2'" in run("info", "-m", str(vocab)).stdout


def test_info_shows_gemma3_sliding_window_layout():
    if not GEMMA3.exists():
        missing(f"{GEMMA3} missing (scripts/fetch_model.sh gemma3)")
    info = json.loads(run("info", "-m", str(GEMMA3), "--json").stdout)["kvserve"]
    # Every 6th layer global, the others local with their own rotary table.
    assert [l["window"] for l in info["layers"]] == [0 if l % 6 == 5 else 512 for l in range(18)]
    assert [l["rope_table"] for l in info["layers"]] == [0 if l % 6 == 5 else 1 for l in range(18)]
    assert info["rope_freq_base_local"] == 10000 and info["attention_scale"] == pytest.approx(1 / 16)
    text = run("info", "-m", str(GEMMA3)).stdout
    assert "sliding window of 512 keys on 15 of 18 layers" in text


@pytest.mark.parametrize("mode, seqs, budget, chunk, spec", [("latency", 16, 256, 128, "ngram"),
                                                             ("balanced", 64, 512, 0, "none"),
                                                             ("throughput", 256, 512, 0, "none")])
def test_serve_mode_presets(mode, seqs, budget, chunk, spec):
    cfg = json.loads(run("serve", "-m", str(STORIES), "--mode", mode, "--print-config").stdout)
    assert (cfg["mode"], cfg["max_num_seqs"], cfg["max_num_batched_tokens"], cfg["max_chunk_tokens"],
            cfg["speculative"]["method"]) == (mode, seqs, budget, chunk, spec)
    assert cfg["num_kv_blocks"] > 0 and cfg["max_model_len"] > 0  # sizes chosen at creation


def test_serve_explicit_flags_override_the_mode():
    cfg = json.loads(run("serve", "-m", str(STORIES), "--mode", "latency", "--max-num-seqs", "5",
                         "--max-chunk-tokens", "0", "--speculative-method", "none", "--print-config").stdout)
    assert (cfg["max_num_seqs"], cfg["max_num_batched_tokens"], cfg["max_chunk_tokens"],
            cfg["speculative"]["method"]) == (5, 256, 0, "none")
    bad = run("serve", "-m", str(STORIES), "--mode", "fastest", check=False)
    assert bad.returncode != 0 and "--mode" in bad.stderr


def test_info_lists_kv_cache_bytes_per_token():
    # stories260K: 5 layers, 4 KV heads of 8 dims; int8 / fp8 add a 4-byte scale per 8 codes.
    info = json.loads(run("info", "-m", str(STORIES), "--json").stdout)["kvserve"]
    assert info["kv_cache_bytes_per_token"] == {"f32": 1280, "f16": 640, "bf16": 640, "int8": 480, "fp8": 480}
    assert "KV cache per token: bf16 640 B, f16 640 B, f32 1280 B, fp8 480 B, int8 480 B" in \
        run("info", "-m", str(STORIES)).stdout


def test_eval_kv_cache_compares_each_dtype_with_f32(tmp_path):
    text = tmp_path / "story.txt"
    text.write_text("Once upon a time, there was a little girl named Lily. She liked to play in the park "
                    "with her dog and her friends. One day, the sun was hot and the sky was blue. " * 8)
    out = tmp_path / "eval.json"
    p = run("eval", "kv-cache", "-m", str(STORIES), "--text", str(text), "--positions", "64,256",
            "--dtypes", "f32,f16,int8,fp8", "-t", "1", "--chunk", "100", "--json", str(out))
    assert "top-1" in p.stdout
    res = {(r["dtype"], r["last_position"]): r for r in json.loads(out.read_text())["results"]}
    assert set(res) == {(d, n) for d in ("f32", "f16", "int8", "fp8") for n in (64, 256)}
    for n in (64, 256):
        # f32 against itself: the same bits, so nothing differs.
        same = res[("f32", n)]
        assert same["top1_agreement"] == 1.0 and same["max_abs_dlogprob"] == 0.0 and same["mean_kl"] == 0.0
        assert same["perplexity"] == same["f32_perplexity"]
        assert res[("f16", n)]["top1_agreement"] >= 0.95 and res[("f16", n)]["mean_abs_dlogprob"] < 0.01
        # Coarser types move further, but stay close on this tiny model (head_dim 8).
        assert res[("int8", n)]["top1_agreement"] >= 0.8
        assert 0 < res[("int8", n)]["mean_kl"] < res[("fp8", n)]["mean_kl"] < 0.5
    assert res[("f16", 64)]["first_position"] == 1 and res[("f16", 256)]["first_position"] == 65
    # Asking for more positions than the text has is an error that says so.
    bad = run("eval", "kv-cache", "-m", str(STORIES), "--text", str(text), "--positions", "100000", check=False)
    assert bad.returncode != 0 and "needs 100001" in bad.stderr


def test_bench_serve_sweep_runs_each_mode_at_each_rate_and_plots(tmp_path):
    out = tmp_path / "sweep.json"
    p = run("bench", "serve", "-m", str(STORIES), "--modes", "latency,throughput", "--sweep", "50,inf",
            "--num-prompts", "4", "--input-len", "8", "--output-len", "4", "-t", "1", "--json", str(out))
    sweep = json.loads(out.read_text())
    assert sweep["kind"] == "serve_sweep"
    assert [(q["mode"], q["request_rate"]) for q in sweep["points"]] == [
        ("latency", 50), ("latency", None), ("throughput", 50), ("throughput", None)]
    for q in sweep["points"]:
        r = q["result"]
        assert r["completed"] == 4 and r["output_throughput"] > 0 and r["ttft_ms"]["p50"] > 0
    assert "req/s" in p.stdout and p.stdout.count("latency") == 2
    # The plot script draws the trade-off.
    plot = subprocess.run([sys.executable, str(REPO / "scripts" / "plot_bench.py"), str(out), "--out-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "serve_sweep.png").stat().st_size > 1000
    # A rate that is not one is refused by name.
    bad = run("bench", "serve", "-m", str(STORIES), "--sweep", "fast", check=False)
    assert bad.returncode != 0 and "'fast' is not a request rate" in bad.stderr
