"""Fixtures that start the real `kvserve serve` on a free loopback port.

KVSERVE_BIN names the binary (default: build/kvserve beside this repository);
KVSERVE_SHARED_DIR the shared assets (default: ../shared beside the repository).
A missing binary or model skips the tests that need it, saying why; with
KVSERVE_NO_SKIP=1 (scripts/test.sh sets it) it fails them instead, so that a run that
tested nothing cannot pass for one that tested everything.
"""
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("KVSERVE_SHARED_DIR", REPO.parent / "shared"))
STORIES = SHARED / "models" / "stories260K.gguf"
SMOLLM2 = Path(os.environ.get("KVSERVE_SMOLLM2", REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
GEMMA3 = Path(os.environ.get("KVSERVE_GEMMA3", REPO / "models" / "gemma-3-270m-q4_k_m.gguf"))


def kvserve_bin() -> Path:
    return Path(os.environ.get("KVSERVE_BIN", REPO / "build" / "kvserve"))


def missing(reason: str):
    """Skips the test for a missing input, or fails it when KVSERVE_NO_SKIP=1."""
    if os.environ.get("KVSERVE_NO_SKIP") == "1":
        pytest.fail(f"{reason} (KVSERVE_NO_SKIP=1: missing inputs fail the test)", pytrace=False)
    pytest.skip(reason)


class Server:
    """A running `kvserve serve`; `url` is its base address."""

    def __init__(self, model: Path, *extra: str, startup_timeout: float = 120.0):
        binary = kvserve_bin()
        if not binary.exists():
            missing(f"{binary} not built (set KVSERVE_BIN)")
        if not model.exists():
            how = ("scripts/fetch_model.sh fetches it, KVSERVE_SMOLLM2 overrides the path" if model == SMOLLM2
                   else "set KVSERVE_SHARED_DIR")
            missing(f"{model} missing ({how})")
        self.log = tempfile.NamedTemporaryFile(prefix="kvserve-serve-", suffix=".log", delete=False)
        cmd = [str(binary), "serve", "--model", str(model), "--port", "0", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self._first_line(startup_timeout)
        m = re.search(r"on http://([\d.]+):(\d+)", line or "")
        if not m:
            self.stop()
            raise RuntimeError(f"server did not start: {line!r}; log: {self.log_text()}")
        self.host, self.port = m.group(1), int(m.group(2))
        self.url = f"http://{self.host}:{self.port}"
        self.model = re.search(r"serving (\S+)", line).group(1)
        # Drain stdout so the server never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def _first_line(self, timeout: float) -> str:
        out = []
        t = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        return out[0] if out else ""

    def log_text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def metrics(self) -> dict:
        """Samples of /metrics as {"name{labels}": value}."""
        text = requests.get(self.url + "/metrics", timeout=10).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def metric(self, name: str, samples: dict = None, **labels) -> float:
        """Sum of the samples of `name` with `labels`, from `samples` (one metrics() call)
        if given: values compared with each other must come from one scrape, as the
        engine publishes its counters once per step while the client may already have
        its answer."""
        total = 0.0
        for key, v in (samples if samples is not None else self.metrics()).items():
            base = key.split("{", 1)[0]
            if base == name and all(f'{k}="{val}"' in key for k, val in labels.items()):
                total += v
        return total

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="session")
def stories():
    s = Server(STORIES, "--max-num-seqs", "32", "--threads", "1")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def smollm2():
    s = Server(SMOLLM2, "--max-num-seqs", "16", "--threads", "1", "--max-model-len", "2048")
    yield s
    s.stop()


@pytest.fixture
def wait_idle():
    """Waits until the server has nothing running or waiting and the KV pool is empty."""

    def wait(server: Server, timeout: float = 30.0) -> dict:
        deadline = time.time() + timeout
        while True:
            m = server.metrics()
            get = lambda n: sum(v for k, v in m.items() if k.split("{")[0] == n)
            if (get("kvserve:num_requests_running") == 0 and get("kvserve:num_requests_waiting") == 0
                    and get("kvserve:kv_cache_usage_perc") == 0):
                return m
            if time.time() > deadline:
                raise AssertionError(f"server not idle: { {k: v for k, v in m.items() if 'num_req' in k or 'kv_cache' in k} }")
            time.sleep(0.05)

    return wait
