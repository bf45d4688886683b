#!/usr/bin/env python3
"""Write a random-weight Qwen3-MoE-architecture GGUF (F16 matrices, F32 norms) whose
tokenizer metadata is copied from an existing GGUF: the mixture-of-experts counterpart of
../shared/tools/synth_gguf.py (whose GGUF reading and writing it repeats), for measuring
engines on a realistic MoE shape when no trained model of that size is at hand.

usage: synth_moe_gguf.py VOCAB.gguf OUT.gguf [--dim 768 --layers 16 --heads 12 --kv-heads 4
       --head-dim 64 --experts 8 --experts-used 2 --expert-ffn 1536 --ctx 8192 --seed 0]
"""
import argparse, struct, sys
import numpy as np

T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
SCALAR = {T_U8: 'B', T_I8: 'b', T_U16: 'H', T_I16: 'h', T_U32: 'I', T_I32: 'i', T_F32: 'f',
          T_BOOL: '?', T_U64: 'Q', T_I64: 'q', T_F64: 'd'}


class R:
    def __init__(s, b): s.b, s.o = b, 0

    def u(s, f):
        v = struct.unpack_from('<' + f, s.b, s.o); s.o += struct.calcsize('<' + f); return v[0]

    def str(s):
        n = s.u('Q'); v = s.b[s.o:s.o + n]; s.o += n; return v

    def val(s, t):
        if t == T_STR: return s.str()
        if t == T_ARR:
            et = s.u('I'); n = s.u('Q'); return (et, [s.val(et) for _ in range(n)])
        return s.u(SCALAR[t])


def read_kv(path):
    r = R(open(path, 'rb').read())
    assert r.b[:4] == b'GGUF'; r.o = 4
    r.u('I'); r.u('Q'); nkv = r.u('Q')
    kv = []
    for _ in range(nkv):
        k = r.str(); t = r.u('I'); kv.append((k, t, r.val(t)))
    return kv


def w_str(f, s):
    if isinstance(s, str): s = s.encode()
    f.write(struct.pack('<Q', len(s))); f.write(s)


def w_val(f, t, v):
    if t == T_STR: w_str(f, v)
    elif t == T_ARR:
        et, items = v; f.write(struct.pack('<IQ', et, len(items)))
        for it in items: w_val(f, et, it)
    else: f.write(struct.pack('<' + SCALAR[t], v))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('vocab'); ap.add_argument('out')
    ap.add_argument('--dim', type=int, default=768); ap.add_argument('--layers', type=int, default=16)
    ap.add_argument('--heads', type=int, default=12); ap.add_argument('--kv-heads', type=int, default=4)
    ap.add_argument('--head-dim', type=int, default=64)
    ap.add_argument('--experts', type=int, default=8); ap.add_argument('--experts-used', type=int, default=2)
    ap.add_argument('--expert-ffn', type=int, default=1536); ap.add_argument('--ctx', type=int, default=8192)
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    A = b'qwen3moe.'
    kv_src = [x for x in read_kv(a.vocab) if x[0].startswith(b'tokenizer.')]
    nvocab = len([x for x in kv_src if x[0] == b'tokenizer.ggml.tokens'][0][2][1])
    hd, qd, kvd = a.head_dim, a.heads * a.head_dim, a.kv_heads * a.head_dim
    meta = [(b'general.architecture', T_STR, b'qwen3moe'), (b'general.name', T_STR, b'synthetic-qwen3moe'),
            (b'general.file_type', T_U32, 1),
            (A + b'context_length', T_U32, a.ctx), (A + b'embedding_length', T_U32, a.dim),
            (A + b'block_count', T_U32, a.layers), (A + b'feed_forward_length', T_U32, a.expert_ffn),
            (A + b'attention.head_count', T_U32, a.heads), (A + b'attention.head_count_kv', T_U32, a.kv_heads),
            (A + b'attention.key_length', T_U32, hd), (A + b'attention.value_length', T_U32, hd),
            (A + b'attention.layer_norm_rms_epsilon', T_F32, 1e-6), (A + b'rope.freq_base', T_F32, 1000000.0),
            (A + b'expert_count', T_U32, a.experts), (A + b'expert_used_count', T_U32, a.experts_used),
            (A + b'expert_feed_forward_length', T_U32, a.expert_ffn),
            (A + b'vocab_size', T_U32, nvocab)] + kv_src
    rng = np.random.default_rng(a.seed)
    E, F = a.experts, a.expert_ffn
    tensors = [('token_embd.weight', (nvocab, a.dim))]  # numpy shapes; ggml dims are reversed
    for l in range(a.layers):
        p = f'blk.{l}.'
        tensors += [(p + 'attn_norm.weight', (a.dim,)), (p + 'attn_q.weight', (qd, a.dim)),
                    (p + 'attn_k.weight', (kvd, a.dim)), (p + 'attn_v.weight', (kvd, a.dim)),
                    (p + 'attn_output.weight', (a.dim, qd)), (p + 'attn_q_norm.weight', (hd,)),
                    (p + 'attn_k_norm.weight', (hd,)), (p + 'ffn_norm.weight', (a.dim,)),
                    (p + 'ffn_gate_inp.weight', (E, a.dim)), (p + 'ffn_gate_exps.weight', (E, F, a.dim)),
                    (p + 'ffn_up_exps.weight', (E, F, a.dim)), (p + 'ffn_down_exps.weight', (E, a.dim, F))]
    tensors += [('output_norm.weight', (a.dim,)), ('output.weight', (nvocab, a.dim))]
    align = 32
    with open(a.out, 'wb') as f:
        f.write(b'GGUF'); f.write(struct.pack('<IQQ', 3, len(tensors), len(meta)))
        for k, t, v in meta:
            w_str(f, k); f.write(struct.pack('<I', t)); w_val(f, t, v)
        off, sizes = 0, []
        for name, shape in tensors:  # the tensor infos; data written below, one tensor at a time
            norm = len(shape) == 1
            w_str(f, name); f.write(struct.pack('<I', len(shape)))
            for d in reversed(shape): f.write(struct.pack('<Q', d))
            f.write(struct.pack('<IQ', 0 if norm else 1, off))
            n = int(np.prod(shape)) * (4 if norm else 2)
            sizes.append(n); off += n; off = (off + align - 1) // align * align
        f.write(b'\0' * ((-f.tell()) % align))
        for (name, shape), n in zip(tensors, sizes):
            if len(shape) == 1:
                arr = np.ones(shape, np.float32)
            else:
                arr = (rng.standard_normal(shape, dtype=np.float32) * (1.0 / np.sqrt(shape[-1]))).astype(np.float16)
            d = arr.tobytes(); assert len(d) == n
            f.write(d); f.write(b'\0' * ((-n) % align))
    total = sum(int(np.prod(s)) for _, s in tensors)
    print(f'wrote {a.out}: qwen3moe, vocab {nvocab}, {a.layers} layers, dim {a.dim}, '
          f'{E} experts ({a.experts_used} used) of ffn {F}: {total / 1e6:.0f} M parameters', file=sys.stderr)


if __name__ == '__main__':
    main()
