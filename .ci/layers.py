#!/usr/bin/env python3
"""The modules of src/ and which uses which (`crate::NAME`, or a macro a
module defines, outside tests): prints every group of modules that use each
other in a cycle and exits 1 if there is one; else checks that the table in
ARCHITECTURE.md "Layers" puts each module at its layer (one above the
highest it uses), and exits 1, saying where, if it does not.

    python3 .ci/layers.py
"""
import collections
import glob
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def edges() -> dict:
    """module -> the modules it uses (a file's module is its top folder or
    file; `main` is left out: it declares them all)."""
    texts = collections.defaultdict(str)
    for path in glob.glob(os.path.join(ROOT, "**", "*.rs"), recursive=True):
        module = os.path.relpath(path, ROOT).split(os.sep)[0].removesuffix(".rs")
        text = open(path).read()
        texts[module] += re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", text, flags=re.S)
    del texts["main"]
    macros = {m: set(re.findall(r"macro_rules!\s*([a-z_]+)", t)) for m, t in texts.items()}
    uses = {m: set() for m in texts}
    for module, text in texts.items():
        used = set(re.findall(r"crate::([a-z_]+)", text))
        used |= {m for m, names in macros.items() for n in names if re.search(rf"\b{n}!", text)}
        uses[module] = used & set(texts) - {module}
    return uses


def layers(uses: dict) -> dict:
    """module -> its layer: 0 if it uses none, else one above the highest it uses."""
    layer = {}

    def of(m):
        if m not in layer:
            layer[m] = 1 + max((of(u) for u in uses[m]), default=-1)
        return layer[m]

    for m in uses:
        of(m)
    return layer


def documented() -> dict:
    """module -> its layer in ARCHITECTURE.md's table."""
    text = open(os.path.join(ROOT, "..", "ARCHITECTURE.md")).read()
    table = text.split("## Layers", 1)[-1].split("\n## ", 1)[0]
    return {
        m: int(n)
        for n, cell in re.findall(r"^\| (\d+) \| ([^|]+) \|", table, flags=re.M)
        for m in re.findall(r"`([a-z_]+)`", cell)
    }


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
    if found:
        sys.exit(1)
    real, said = layers(uses), documented()
    wrong = sorted(set(real) | set(said), key=lambda m: (real.get(m, -1), m))
    wrong = [m for m in wrong if real.get(m) != said.get(m)]
    for m in wrong:
        print(f"ARCHITECTURE.md Layers: `{m}` is at layer {said.get(m, 'none')}, "
              f"its layer is {real.get(m, 'none (no such module)')} "
              f"(it uses: {', '.join(sorted(uses.get(m, ()))) or 'none'})")
    sys.exit(1 if wrong else 0)
