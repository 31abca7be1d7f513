"""Summarise a `py-spy record -f raw` file: where the samples are, inclusive per function and by leaf.

    python bench/profile_summary.py bench/results/profile-inbound-sqlite-default.txt [--top 25] [--idle]

Idle samples (threads waiting in a selector or a queue) are left out unless --idle is given.
"""

from __future__ import annotations

import argparse
from collections import Counter

IDLE = ("select (selectors.py", "wait (threading.py", "_connection_worker_thread (aiosqlite/core.py:63")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--idle", action="store_true")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    with open(args.path, encoding="utf-8") as handle:
        for line in handle:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            count = int(count_text)
            frames = stack.split(";")
            if not args.idle and any(marker in frames[-1] for marker in IDLE):
                continue
            total += count
            leaves[frames[-1]] += count
            for name in {frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0] + ")"
                         for frame in frames}:  # fmt: skip
                inclusive[name] += count
    print(f"{total} busy samples")
    print("\ninclusive (a function and everything it calls):")
    for name, count in inclusive.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("\nleaf (where the CPU is):")
    for name, count in leaves.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
