#!/usr/bin/env python3
"""Serving benchmark for kvserve (or any OpenAI-compatible server).

Replays prompts through the streaming HTTP API at a fixed request rate (Poisson arrivals)
and/or a concurrency cap, and reports time to first token (TTFT), time per output token
(TPOT, per request: (e2e - ttft) / (tokens - 1)), inter-token latency (ITL, every gap
between streamed chunks), end-to-end latency (mean / p50 / p90 / p99) and throughput.

  .venv/bin/python bench/serve_bench.py --base-url http://127.0.0.1:8000 \
      --num-prompts 200 --request-rate 8 --input-len 128 --output-len 128 --output result.json

Prompts: --prompts-file (one per line) or synthetic ones of about --input-len tokens
(words drawn from a fixed list, so runs are comparable). Output lengths are exact:
max_tokens = --output-len with ignore_eos.
"""
import argparse
import asyncio
import json
import math
import random
import sys
import time
import urllib.request

import openai

WORDS = ("the a little girl boy dog cat sun park ball tree house happy sad big small red blue green "
         "ran jumped played saw found said loved wanted went came looked day time friend mom dad "
         "bird fish water sky cloud rain flower garden toy box car road hill river").split()


def percentiles(xs):
    if not xs:
        return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None, "n": 0}
    s = sorted(xs)

    def pct(p):
        k = (len(s) - 1) * p / 100.0
        lo, hi = math.floor(k), math.ceil(k)
        return s[lo] + (s[hi] - s[lo]) * (k - lo)

    return {"mean": sum(s) / len(s), "p50": pct(50), "p90": pct(90), "p99": pct(99), "max": s[-1], "n": len(s)}


def make_prompts(args, rng):
    if args.prompts_file:
        with open(args.prompts_file, encoding="utf-8") as f:
            lines = [l.rstrip("\n").replace("\\n", "\n") for l in f if l.strip()]
        return [lines[i % len(lines)] for i in range(args.num_prompts)]
    # Roughly one token per word for these common words.
    return [" ".join(rng.choice(WORDS) for _ in range(args.input_len)) for _ in range(args.num_prompts)]


async def one_request(client, args, model, prompt, rec):
    common = dict(model=model, max_tokens=args.output_len, temperature=args.temperature, stream=True,
                  stream_options={"include_usage": True}, extra_body={"ignore_eos": not args.allow_eos})
    t0 = time.perf_counter()
    chunk_times = []
    try:
        if args.endpoint == "chat":
            stream = await client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **common)
        else:
            stream = await client.completions.create(prompt=prompt, **common)
        async for chunk in stream:
            if chunk.usage:
                rec["prompt_tokens"] = chunk.usage.prompt_tokens
                rec["output_tokens"] = chunk.usage.completion_tokens
            for c in chunk.choices:
                text = c.delta.content if args.endpoint == "chat" else c.text
                if text:
                    chunk_times.append(time.perf_counter())
    except Exception as e:  # noqa: BLE001 - reported per request
        rec["error"] = repr(e)
        return
    t1 = time.perf_counter()
    rec["e2e"] = t1 - t0
    if chunk_times:
        rec["ttft"] = chunk_times[0] - t0
        rec["itl"] = [b - a for a, b in zip(chunk_times, chunk_times[1:])]
        n = rec.get("output_tokens", len(chunk_times))
        if n > 1:
            rec["tpot"] = (chunk_times[-1] - chunk_times[0]) / (n - 1)


def wait_ready(base_url, timeout):
    """Polls /health until the server answers (it may still be loading the model)."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(base_url.rstrip("/") + "/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.time() > deadline:
            raise SystemExit(f"{base_url} not ready after {timeout} s")
        time.sleep(0.2)


async def run(args):
    rng = random.Random(args.seed)
    wait_ready(args.base_url, args.wait_ready)
    async with openai.AsyncOpenAI(base_url=args.base_url.rstrip("/") + "/v1", api_key=args.api_key or "none",
                                  max_retries=0, timeout=args.timeout) as client:
        model = args.model
        if not model:
            model = (await client.models.list()).data[0].id
        prompts = make_prompts(args, rng)
        sem = asyncio.Semaphore(args.max_concurrency) if args.max_concurrency > 0 else None
        recs = [dict() for _ in prompts]
        done = 0

        async def task(i):
            nonlocal done
            if sem:
                async with sem:
                    await one_request(client, args, model, prompts[i], recs[i])
            else:
                await one_request(client, args, model, prompts[i], recs[i])
            done += 1
            if not args.quiet:
                print(f"\r  {done}/{len(prompts)} requests done", end="", file=sys.stderr, flush=True)

        t0 = time.perf_counter()
        tasks = []
        for i in range(len(prompts)):
            tasks.append(asyncio.create_task(task(i)))
            if args.request_rate != float("inf"):
                await asyncio.sleep(rng.expovariate(args.request_rate))
        await asyncio.gather(*tasks)
        duration = time.perf_counter() - t0
        if not args.quiet:
            print(file=sys.stderr)

    ok = [r for r in recs if "e2e" in r and "error" not in r]
    errors = [r["error"] for r in recs if "error" in r]
    out_tokens = sum(r.get("output_tokens", 0) for r in ok)
    in_tokens = sum(r.get("prompt_tokens", 0) for r in ok)
    ms = lambda xs: {k: (v * 1000 if isinstance(v, float) else v) for k, v in percentiles(xs).items()}
    return {
        "config": {k: (str(v) if isinstance(v, float) and math.isinf(v) else v) for k, v in vars(args).items()},
        "model": model,
        "duration_s": duration,
        "completed": len(ok),
        "failed": len(errors),
        "errors": errors[:10],
        "prompt_tokens": in_tokens,
        "output_tokens": out_tokens,
        "request_throughput": len(ok) / duration,
        "output_throughput": out_tokens / duration,
        "total_token_throughput": (in_tokens + out_tokens) / duration,
        "ttft_ms": ms([r["ttft"] for r in ok if "ttft" in r]),
        "tpot_ms": ms([r["tpot"] for r in ok if "tpot" in r]),
        "itl_ms": ms([x for r in ok for x in r.get("itl", [])]),
        "e2e_ms": ms([r["e2e"] for r in ok]),
    }


def report(res):
    print(f"model {res['model']}: {res['completed']} ok, {res['failed']} failed in {res['duration_s']:.2f} s")
    print(f"  throughput: {res['request_throughput']:.2f} req/s, {res['output_throughput']:.1f} output tok/s, "
          f"{res['total_token_throughput']:.1f} total tok/s")
    print(f"  {'metric':<8} {'mean':>9} {'p50':>9} {'p90':>9} {'p99':>9}   (ms)")
    for key, name in [("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("itl_ms", "ITL"), ("e2e_ms", "E2E")]:
        p = res[key]
        if p["n"]:
            print(f"  {name:<8} {p['mean']:9.2f} {p['p50']:9.2f} {p['p90']:9.2f} {p['p99']:9.2f}")
    for e in res["errors"][:3]:
        print(f"  error: {e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--model", default="", help="default: the server's first model")
    ap.add_argument("--endpoint", choices=["completions", "chat"], default="completions")
    ap.add_argument("--num-prompts", type=int, default=100)
    ap.add_argument("--request-rate", type=float, default=float("inf"),
                    help="requests per second, Poisson arrivals (default inf: all at once)")
    ap.add_argument("--max-concurrency", type=int, default=0, help="requests in flight at most (0 = no cap)")
    ap.add_argument("--input-len", type=int, default=128, help="synthetic prompt length in words (~tokens)")
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--prompts-file", default="")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--allow-eos", action="store_true", help="let EOS end outputs early")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--output", default="", help="write the results as JSON here")
    ap.add_argument("--wait-ready", type=float, default=120.0, help="seconds to wait for /health first")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    res = asyncio.run(run(args))
    report(res)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=2)
    return 0 if res["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
