"""python -m tests.fuzz [--n 20000] [--seed 0]: the long fuzz run for release checks."""

import argparse
import sys

from .runner import run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="cases (default 20,000)")
    parser.add_argument("--seed", type=int, default=0, help="first case's seed")
    parser.add_argument("--show", type=int, default=20, help="findings to print of each kind")
    args = parser.parse_args()
    report = run(range(args.seed, args.seed + args.n))
    print(report.summary())
    for title, rows in (
        ("crashes", report.crashes),
        ("hangs", report.hangs),
        ("unexpected", report.unexpected),
        ("rejections not naming the argument", report.unnamed),
    ):
        if rows:
            print(f"\n{title}:")
            for row in rows[: args.show]:
                print("  ", *row)
    return 1 if report.crashes or report.hangs or report.unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
