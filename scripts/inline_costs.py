#!/usr/bin/env python3
"""Instructions per source function, inlined code included.

callgrind and cachegrind charge inlined code to the function it was inlined
into, so nearly all of the engine shows up as `run_events`. This maps every
instruction's address back through its inline chain (addr2line -i) and
charges it to the innermost function of this crate's own source (code from
std, or from a dependency, inlined into one of ours counts as ours).

    valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file=cg.out \\
        target/release/examples/one_run mmc 200000
    scripts/inline_costs.py cg.out target/release/examples/one_run --per 200000

(from the repository's root, whose src/ the binary's debug lines name).

`--per N` divides by N (customers, workflows) as well; `--depth 2` names
each function's caller too (`pop < run_events`); `--lines` charges each
source line instead (`start_local runtime/mod.rs:1382`).

`--event` counts another of the file's events instead of instructions:
with `--cache-sim=yes`, `D1mr`/`D1mw` (first-level data misses), `DLmr`/
`DLmw` (last-level misses; `--LL=524288,8,64` makes that the host's L2)
and `I1mr`; with `--branch-sim=yes`, `Bcm` (mispredicted conditional
branches). Needs valgrind and binutils' addr2line; not run by CI.
"""

import argparse
import collections
import os
import re
import subprocess
import sys


def self_costs(path, binary, event="Ir"):
    """Self cost of `event` per instruction address of `binary` in a
    callgrind file (`--dump-instr=yes`)."""
    costs = collections.Counter()
    names = {}
    in_binary = False
    addr = 0
    skip_call_line = False
    column = None
    for line in open(path, encoding="utf-8", errors="replace"):
        if line.startswith("events:"):
            events = line.split()[1:]
            if event not in events:
                sys.exit(f"{path} has no event {event} (it has {' '.join(events)})")
            column = events.index(event)
            continue
        m = re.match(r"^(c?ob)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if m:
            if m.group(3):
                names[m.group(2)] = m.group(3)
            if m.group(1) == "ob":
                in_binary = names.get(m.group(2), "").endswith(binary)
            continue
        if line.startswith("calls="):
            # The next cost line is the call's inclusive cost, not self cost.
            skip_call_line = True
            continue
        # Positions (instruction, line), then the events' costs in the
        # header's order; trailing zeros are left out.
        m = re.match(r"^(0x[0-9a-f]+|[+-]\d+|\*)\s+\S+((?:\s+\d+)*)\s*$", line)
        if not m:
            continue
        pos = m.group(1)
        if pos.startswith("0x"):
            addr = int(pos, 16)
        elif pos != "*":
            addr += int(pos)
        if skip_call_line:
            skip_call_line = False
        elif in_binary:
            values = m.group(2).split()
            if column < len(values):
                costs[addr] += int(values[column])
    return costs


def inline_chains(binary, addrs):
    """Per address, its (function, file:line) frames, innermost first."""
    chains = {}
    for start in range(0, len(addrs), 5000):
        batch = addrs[start : start + 5000]
        out = subprocess.run(
            ["addr2line", "-a", "-i", "-f", "-C", "-e", binary] + [hex(a) for a in batch],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        cur, frames = None, []
        for line in out:
            if re.match(r"^0x[0-9a-f]+$", line):
                if cur is not None:
                    chains[cur] = frames
                cur, frames = int(line, 16), []
            else:
                frames.append(line)
        if cur is not None:
            chains[cur] = frames
    return {
        a: [(ch[k], ch[k + 1]) for k in range(0, len(ch) - 1, 2)] for a, ch in chains.items()
    }


def short_name(function):
    """`agentsched::runtime::Runtime<O,D>::start_attempt` -> `start_attempt`."""
    while True:
        stripped = re.sub(r"<[^<>]*>", "", function)
        if stripped == function:
            return function.split("::")[-1]
        function = stripped


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("callgrind_out")
    ap.add_argument("binary")
    ap.add_argument(
        "--source",
        default=os.path.join(os.getcwd(), "src") + "/",
        help="path prefix of our source (default: ./src/ of the current directory)",
    )
    ap.add_argument("--per", type=float, default=None, help="also divide by this count")
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--lines", action="store_true", help="charge source lines, not functions")
    ap.add_argument("--event", default="Ir", help="the callgrind event to count (default Ir)")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()

    binary_name = args.binary.rsplit("/", 1)[-1]
    costs = self_costs(args.callgrind_out, binary_name, args.event)
    if not costs:
        sys.exit(f"no {args.event} of {binary_name} in {args.callgrind_out} (--dump-instr=yes?)")
    chains = inline_chains(args.binary, sorted(costs))
    total = sum(costs.values())
    by_function = collections.Counter()
    for addr, ir in costs.items():
        ours = [
            f"{short_name(f)} {loc[len(args.source):].split(' ')[0]}" if args.lines else short_name(f)
            for f, loc in chains.get(addr, [])
            if loc.startswith(args.source)
        ]
        key = " < ".join(ours[: args.depth]) if ours else "(outside our source)"
        by_function[key] += ir
    what = "instructions" if args.event == "Ir" else args.event
    print(f"{total:,} {what} in {binary_name}")
    for key, ir in by_function.most_common(args.top):
        per = f"{ir / args.per:10.1f} " if args.per else ""
        print(f"{per}{100 * ir / total:6.2f}%  {key}")


if __name__ == "__main__":
    main()
