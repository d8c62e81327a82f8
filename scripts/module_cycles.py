#!/usr/bin/env python3
"""Lists the dependencies between the library's top-level modules (src/X.rs or src/X/) and
fails (exit 1) when they form a cycle, naming it. A dependency is any `crate::X` path in the
module's code outside its `#[cfg(test)]` tests: `use crate::X…`, `crate::X::f(…)`, and the
members of a grouped `use crate::{X, Y::…}`. The binary (src/main.rs, src/cli/) and the
benchmark programs (src/bin/) sit above the library and are not counted.

Usage: scripts/module_cycles.py [--edges] [--self-test]
  --edges      prints every edge with one place it is used
  --self-test  checks the script itself on a made-up crate (a cycle found, test uses ignored)
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
SKIP = {"main", "bin", "cli", "lib"}


def modules():
    seen = set()
    if not os.path.isdir(ROOT):
        return
    for name in sorted(os.listdir(ROOT)):
        stem = name[:-3] if name.endswith(".rs") else name
        if stem in SKIP:
            continue
        if stem not in seen and (name.endswith(".rs") or os.path.isdir(os.path.join(ROOT, name))):
            seen.add(stem)
            yield stem


def files(module):
    single = os.path.join(ROOT, module + ".rs")
    if os.path.isfile(single):
        yield single
    folder = os.path.join(ROOT, module)
    for base, _dirs, names in os.walk(folder):
        for n in sorted(names):
            if n.endswith(".rs") and n != "tests.rs":
                yield os.path.join(base, n)


def strip_tests(text):
    """The text without `#[cfg(test)]` items (a `mod tests { … }` or a single item)."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        j = m.end()
        # Up to the item's end: a `;` before any `{`, or the matching `}`.
        depth, k = 0, j
        while k < len(text):
            c = text[k]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    k += 1
                    break
            elif c == ";" and depth == 0:
                k += 1
                break
            k += 1
        i = k
    out.append(text[i:])
    return "".join(out)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def uses(text):
    """Top-level module names this text reaches through `crate::`."""
    found = set()
    for m in re.finditer(r"\bcrate::\{([^;]*?)\}\s*;", text, flags=re.S):
        depth, part = 0, ""
        for c in m.group(1) + ",":
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            if c == "," and depth == 0:
                name = re.match(r"\s*([a-z_][a-z0-9_]*)", part)
                if name:
                    found.add(name.group(1))
                part = ""
            else:
                part += c
    for m in re.finditer(r"\bcrate::([a-z_][a-z0-9_]*)", text):
        found.add(m.group(1))
    return found


def graph():
    mods = list(modules())
    edges = {}
    for m in mods:
        for path in files(m):
            with open(path, encoding="utf-8") as f:
                text = strip_tests(strip_comments(f.read()))
            for d in uses(text):
                if d != m and d in mods:
                    edges.setdefault(m, {}).setdefault(d, os.path.relpath(path, os.path.join(ROOT, "..")))
    return mods, edges


def cycles(mods, edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in mods:
        if v not in index:
            visit(v)
    return out


def self_test():
    """A cycle through a grouped `use`, and one use only in tests that must not count."""
    import tempfile

    global ROOT
    saved = ROOT
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "b"))
        files = {
            "a.rs": "use crate::{c, b::Thing};\n",
            "b/mod.rs": "pub struct Thing;\nfn f() { crate::a::g(); }\n",
            "c.rs": "#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n// crate::a in a comment\n",
        }
        for name, text in files.items():
            with open(os.path.join(d, name), "w", encoding="utf-8") as f:
                f.write(text)
        ROOT = d
        try:
            mods, edges = graph()
            found = cycles(mods, edges)
        finally:
            ROOT = saved
    assert sorted(mods) == ["a", "b", "c"], mods
    assert found == [["a", "b"]], found
    assert "a" not in edges.get("c", {}), edges
    print("module_cycles: self-test ok")


def main():
    if "--self-test" in sys.argv[1:]:
        self_test()
        return
    mods, edges = graph()
    if "--edges" in sys.argv[1:]:
        for m in mods:
            for d, where in sorted(edges.get(m, {}).items()):
                print(f"{m} -> {d}    ({where})")
    found = cycles(mods, edges)
    for comp in found:
        inner = [
            f"{a} -> {b} ({edges[a][b]})"
            for a in comp
            for b in sorted(edges.get(a, {}))
            if b in comp
        ]
        print("module cycle: " + ", ".join(comp), file=sys.stderr)
        for e in inner:
            print("    " + e, file=sys.stderr)
    if found:
        sys.exit(1)
    print(f"module_cycles: no cycle among {len(mods)} top-level modules")


if __name__ == "__main__":
    main()
