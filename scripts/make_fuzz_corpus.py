#!/usr/bin/env python3
"""Writes a seed corpus for the GGUF fuzzer (tests/fuzz/gguf_fuzz.cpp).

Seeds: a small synthetic GGUF using every metadata value type and several tensor
types; each shared model shrunk to one block per tensor (real metadata, tiny data);
the shared vocab files as they are; and truncated / corrupted copies of all of these.
Deterministic (fixed seed). Python 3 standard library only.

usage: make_fuzz_corpus.py OUT_DIR [--shared SHARED_DIR]
"""
import argparse
import os
import random
import struct
import sys

MAGIC = b"GGUF"
# ggml type id -> (elements per block, bytes per block)
BLOCKS = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
          8: (32, 34), 9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144),
          13: (256, 176), 14: (256, 210), 15: (256, 292)}
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}
BIG_FILE = 256 * 1024  # files above this get fewer (and shorter) variants


class Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.p)[0]
        self.p += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.d[self.p:self.p + n]
        self.p += n
        return s

    def value(self, t):
        if t in SCALARS:
            return self.take(SCALARS[t])
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("<I"), self.take("<Q")
            return [self.value(et) for _ in range(n)]
        raise ValueError("bad value type %d" % t)


def parse_layout(data):
    """Returns (kv_end, alignment, tensors [(name, dims, type, offset)], header_end)."""
    r = Reader(data)
    if data[:4] != MAGIC:
        raise ValueError("not GGUF")
    r.p = 8
    n_tensors, n_kv = r.take("<Q"), r.take("<Q")
    alignment = 32
    for _ in range(n_kv):
        key = r.string()
        v = r.value(r.take("<I"))
        if key == b"general.alignment":
            alignment = v
    kv_end = r.p
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.take("<Q") for _ in range(r.take("<I"))]
        tensors.append((name, dims, r.take("<I"), r.take("<Q")))
    return kv_end, alignment, tensors, r.p


def pad(buf, alignment):
    buf += b"\0" * ((-len(buf)) % alignment)


def gguf_string(s):
    return struct.pack("<Q", len(s)) + s


def tensor_info(name, dims, ggml_type, offset):
    out = gguf_string(name) + struct.pack("<I", len(dims))
    out += b"".join(struct.pack("<Q", d) for d in dims)
    return out + struct.pack("<IQ", ggml_type, offset)


def write_file(kv_bytes, n_kv, tensors, alignment, rng):
    """tensors: [(name, dims, type)]; data is random, each tensor aligned."""
    infos, data, offset = b"", bytearray(), 0
    for name, dims, t in tensors:
        n = 1
        for d in dims:
            n *= d
        nbytes = n // BLOCKS[t][0] * BLOCKS[t][1]
        infos += tensor_info(name, dims, t, offset)
        data += bytes(rng.getrandbits(8) for _ in range(nbytes))
        pad(data, alignment)
        offset = len(data)
    out = bytearray(MAGIC + struct.pack("<IQQ", 3, len(tensors), n_kv) + kv_bytes + infos)
    pad(out, alignment)
    return bytes(out + data)


def shrink(data, rng):
    """Same metadata, every tensor cut to one block (a 1-D tensor of block size)."""
    kv_end, alignment, tensors, _ = parse_layout(data)
    n_kv = struct.unpack_from("<Q", data, 16)[0]
    small = [(name, [BLOCKS[t][0]], t) for name, _, t, _ in tensors]
    return write_file(data[24:kv_end], n_kv, small, alignment, rng)


def synthetic(rng, alignment=32):
    def kv(key, t, payload):
        return gguf_string(key) + struct.pack("<I", t) + payload

    def arr(et, items):
        return struct.pack("<IQ", et, len(items)) + b"".join(items)

    kvs = [
        kv(b"general.architecture", 8, gguf_string(b"llama")),
        kv(b"general.alignment", 4, struct.pack("<I", alignment)),
        kv(b"llama.context_length", 4, struct.pack("<I", 128)),
        kv(b"t.u8", 0, struct.pack("<B", 200)), kv(b"t.i8", 1, struct.pack("<b", -5)),
        kv(b"t.u16", 2, struct.pack("<H", 60000)), kv(b"t.i16", 3, struct.pack("<h", -300)),
        kv(b"t.i32", 5, struct.pack("<i", -70000)), kv(b"t.f32", 6, struct.pack("<f", 1.5)),
        kv(b"t.bool", 7, struct.pack("<?", True)), kv(b"t.u64", 10, struct.pack("<Q", 2**63 + 5)),
        kv(b"t.i64", 11, struct.pack("<q", -2**40)), kv(b"t.f64", 12, struct.pack("<d", -2.25)),
        kv(b"tokenizer.ggml.model", 8, gguf_string(b"gpt2")),
        kv(b"tokenizer.ggml.tokens", 9, arr(8, [gguf_string(s) for s in (b"a", b"b", b"ab", b"\xff")])),
        kv(b"tokenizer.ggml.scores", 9, arr(6, [struct.pack("<f", -i) for i in range(4)])),
        kv(b"tokenizer.ggml.token_type", 9, arr(5, [struct.pack("<i", 1)] * 4)),
        kv(b"tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 0)),
        kv(b"tokenizer.chat_template", 8, gguf_string(b"{{ messages }}")),
        kv(b"t.nested", 9, arr(9, [arr(4, [struct.pack("<I", 7)] * 2), arr(8, [gguf_string(b"x")])])),
    ]
    tensors = [(b"a.f32", [8, 2], 0), (b"b.f16", [16], 1), (b"c.bf16", [4, 4, 2], 30),
               (b"d.q8_0", [32, 2], 8), (b"e.q4_k", [256], 12), (b"f.q6_k", [256], 14),
               (b"g.q4_1", [32], 3)]
    return write_file(b"".join(kvs), len(kvs), tensors, alignment, rng)


def variants(stem, data, rng):
    """Truncated and corrupted copies: {file name: bytes}."""
    out = {stem: data}
    big = len(data) > BIG_FILE
    try:
        header_end = parse_layout(data)[3]
    except Exception:
        header_end = len(data)
    # Truncations: every length of the fixed header, then spread over the file.
    limit = min(len(data), BIG_FILE)
    lengths = set(range(0, 40, 3)) | {rng.randrange(limit) for _ in range(8 if big else 40)}
    for n in sorted(lengths):
        out["%s-trunc-%d" % (stem, n)] = data[:n]
    # Corruptions inside the header (metadata and tensor infos).
    interesting = [0, 1, 0x7F, 0x80, 0xFF]
    for _ in range(3 if big else 40):
        pos = rng.randrange(min(header_end, len(data)))
        buf = bytearray(data)
        if rng.random() < 0.5:
            buf[pos] = rng.choice(interesting) if rng.random() < 0.5 else buf[pos] ^ (1 << rng.randrange(8))
            out["%s-flip-%d" % (stem, pos)] = bytes(buf)
        else:  # a whole count / length / offset overwritten
            val = rng.choice([0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1, len(data)])
            pos = min(pos, len(buf) - 8)
            buf[pos:pos + 8] = struct.pack("<Q", val)
            out["%s-word-%d" % (stem, pos)] = bytes(buf)
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared"))
    args = ap.parse_args()
    rng = random.Random(20240601)

    os.makedirs(args.out_dir, exist_ok=True)
    for name in os.listdir(args.out_dir):  # stale seeds from an earlier run
        path = os.path.join(args.out_dir, name)
        if os.path.isfile(path):
            os.remove(path)

    # alignment 1 packs tensors back to back, so some start at addresses their types
    # cannot be read from in place.
    seeds = {"synthetic": synthetic(rng), "synthetic-align1": synthetic(rng, 1)}
    for sub in ("models", "vocab"):
        folder = os.path.join(args.shared, sub)
        if not os.path.isdir(folder):
            print("warning: %s not found" % folder, file=sys.stderr)
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".gguf"):
                continue
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
            stem = name[:-len(".gguf")]
            seeds[stem] = shrink(data, rng) if sub == "models" else data

    total = count = 0
    for stem, data in seeds.items():
        for name, blob in variants(stem, data, rng).items():
            with open(os.path.join(args.out_dir, name + ".gguf"), "wb") as f:
                f.write(blob)
            total += len(blob)
            count += 1
    print("wrote %d corpus files (%.1f MiB) to %s" % (count, total / 2**20, args.out_dir))


if __name__ == "__main__":
    main()
