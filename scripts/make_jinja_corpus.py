#!/usr/bin/env python3
"""Seed corpus for the chat-template fuzzer: every raw-string Jinja template (R"JINJA(...)JINJA")
in the given source files, one file each, plus a few hand-picked edge cases."""
import argparse
import os
import re
import sys

EDGE_CASES = [
    "{{ messages[0]['content'] | trim }}",
    "{% for m in messages %}{{ loop.index }}{{ m.role | upper }}{% endfor %}",
    "{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}",
    "{% set ns = namespace(n=0) %}{% for i in range(10) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}",
    "{{ tools | tojson(indent=2) }}{{ raise_exception('x') if not messages }}",
    "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(', ') }}",
    "{% if add_generation_prompt %}{{ bos_token ~ 'x' * 3 }}{% endif %}{{ 7 // 2 }}{{ 'a%sb' % 1 }}",
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("sources", nargs="+")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    for name in os.listdir(args.out_dir):  # stale seeds and units of an earlier run
        path = os.path.join(args.out_dir, name)
        if os.path.isfile(path):
            os.remove(path)
    n = 0
    for src in args.sources:
        with open(src, encoding="utf-8") as f:
            text = f.read()
        for body in re.findall(r'R"JINJA\((.*?)\)JINJA"', text, re.S):
            with open(os.path.join(args.out_dir, "template-%d.jinja" % n), "w", encoding="utf-8") as f:
                f.write(body)
            n += 1
    for i, body in enumerate(EDGE_CASES):
        with open(os.path.join(args.out_dir, "edge-%d.jinja" % i), "w", encoding="utf-8") as f:
            f.write(body)
    if n == 0:
        print("error: no templates found in %s" % " ".join(args.sources), file=sys.stderr)
        return 1
    print("%d templates, %d edge cases -> %s" % (n, len(EDGE_CASES), args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
