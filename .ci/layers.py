#!/usr/bin/env python3
"""The modules of src/ and which uses which (`crate::NAME` outside tests):
prints every group of modules that use each other in a cycle, and exits 1
if there is one (0: the modules stand in layers, ARCHITECTURE.md "Layers").

    python3 .ci/layers.py
"""
import collections
import glob
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def edges() -> dict:
    """module -> the modules it uses (a file's module is its top folder or file)."""
    uses = collections.defaultdict(set)
    for path in glob.glob(os.path.join(ROOT, "**", "*.rs"), recursive=True):
        module = os.path.relpath(path, ROOT).split(os.sep)[0].removesuffix(".rs")
        text = open(path).read()
        text = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", text, flags=re.S)
        for used in re.findall(r"crate::([a-z_]+)", text):
            if used != module:
                uses[module].add(used)
    return uses


def cycles(uses: dict) -> list:
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(uses.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(uses):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    uses = edges()
    found = cycles(uses)
    for group in found:
        print(f"cycle of {len(group)}: " + ", ".join(group))
        for m in group:
            print(f"  {m} -> " + ", ".join(sorted(u for u in uses[m] if u in group)))
    sys.exit(1 if found else 0)
