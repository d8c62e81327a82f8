#!/usr/bin/env python3
"""Lists the library's functions longer than a limit (default 100 lines, from the `fn` line to
its closing brace), longest first, and fails (exit 1) when one of them has no reason written
above it: a `// Long because …` comment among the lines just above the function (its doc and
attributes). The benchmark programs (src/bin/) and tests (`#[cfg(test)]` modules, tests.rs
files) are exempt.

Usage: scripts/long_functions.py [LIMIT] [--all]   (--all lists the excused ones too)
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+([A-Za-z_][A-Za-z0-9_]*)")


def code_only(line, state):
    """The line with string, char and comment contents blanked; `state` carries an open
    block comment or string across lines."""
    out, i = [], 0
    while i < len(line):
        c = line[i]
        if state["block"]:
            if line.startswith("*/", i):
                state["block"] = False
                i += 2
            else:
                i += 1
            continue
        if state["raw"] is not None:
            end = '"' + "#" * state["raw"]
            if line.startswith(end, i):
                state["raw"] = None
                i += len(end)
            else:
                i += 1
            continue
        if state["str"]:
            if c == "\\":
                i += 2
            elif c == '"':
                state["str"] = False
                i += 1
            else:
                i += 1
            continue
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"] = True
            i += 2
            continue
        m = re.match(r'r(#*)"', line[i:])
        if m and (i == 0 or not (line[i - 1].isalnum() or line[i - 1] == "_")):
            state["raw"] = len(m.group(1))
            i += len(m.group(0))
            continue
        if c == '"':
            state["str"] = True
            i += 1
            continue
        m = re.match(r"'(\\.|[^\\'])'", line[i:])
        if m:
            i += len(m.group(0))
            continue
        out.append(c)
        i += 1
    return "".join(out)


def functions(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    state = {"block": False, "raw": None, "str": False}
    code = [code_only(l, state) for l in lines]
    test_until = -1
    found = []
    i = 0
    while i < len(lines):
        if "#[cfg(test)]" in lines[i]:
            # Skip the test item: up to its matching brace.
            depth, j, opened = 0, i, False
            while j < len(lines):
                depth += code[j].count("{") - code[j].count("}")
                opened = opened or "{" in code[j]
                if (opened and depth <= 0) or (not opened and code[j].rstrip().endswith(";")):
                    break
                j += 1
            test_until = j
        m = FN.match(code[i])
        if m and i > test_until:
            depth, j, opened = 0, i, False
            while j < len(lines):
                depth += code[j].count("{") - code[j].count("}")
                if "{" in code[j]:
                    opened = True
                if opened and depth <= 0:
                    break
                if not opened and code[j].rstrip().endswith(";"):
                    break  # a declaration without a body (a trait method)
                j += 1
            if opened:
                found.append((m.group(6), i, j - i + 1, excuse(lines, i)))
        i += 1
    return found


def excuse(lines, start):
    """True when a `// Long because` comment sits in the doc/attribute block above `start`."""
    k = start - 1
    while k >= 0:
        s = lines[k].strip()
        if s.startswith("// Long because"):
            return True
        if s.startswith("//") or s.startswith("#[") or s.startswith("#!["):
            k -= 1
            continue
        break
    return False


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    limit = int(args[0]) if args else 100
    show_all = "--all" in sys.argv
    rows = []
    for base, _dirs, names in os.walk(os.path.join(ROOT, "src")):
        if os.path.relpath(base, ROOT).startswith(os.path.join("src", "bin")):
            continue
        for n in names:
            if not n.endswith(".rs") or n == "tests.rs":
                continue
            path = os.path.join(base, n)
            for name, line, length, excused in functions(path):
                if length > limit:
                    rows.append((length, os.path.relpath(path, ROOT), line + 1, name, excused))
    rows.sort(reverse=True)
    bad = 0
    for length, path, line, name, excused in rows:
        if excused and not show_all:
            continue
        bad += not excused
        note = "  (long because …)" if excused else ""
        print(f"{length:5} {path}:{line} {name}{note}")
    if bad:
        print(f"long_functions: {bad} function(s) over {limit} lines without a reason", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
