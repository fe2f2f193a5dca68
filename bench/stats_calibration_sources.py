"""Table 8 of docs/calibration.md: the variance decomposition by source of randomness.

``negres.statistics.variance_by_source`` splits a metric's spread across seeds into the share
each source of randomness (initialisation, data order, ...) accounts for, with 95%
intervals. This script simulates studies with known components (normal effects, the
balanced designs a study lays out with ``negres.seeds.crossed_design``) through
``negres.statistics.sources.simulate_coverage`` and prints how often the intervals of each
component's variance and share cover the truth, and how wide the share's interval is.

    python bench/stats_calibration_sources.py [--quick] [--studies 2000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from negres.statistics.sources import simulate_coverage

# (label, levels, replicates, true components)
DESIGNS = (
    ("4x4", {"init": 4, "data": 4}, 1, {"init": 1.0, "data": 1.0, "remainder": 1.0}),
    ("4x4", {"init": 4, "data": 4}, 1, {"init": 1.0, "data": 0.0, "remainder": 1.0}),
    ("8x8", {"init": 8, "data": 8}, 1, {"init": 1.0, "data": 1.0, "remainder": 1.0}),
    ("8x8", {"init": 8, "data": 8}, 1, {"init": 2.0, "data": 0.5, "remainder": 1.0}),
    ("8x8", {"init": 8, "data": 8}, 1, {"init": 1.0, "data": 0.0, "remainder": 1.0}),
    ("4x4, 2 seeds per cell", {"init": 4, "data": 4}, 2,
     {"init": 1.0, "data": 0.5, "init x data": 0.5, "residual": 1.0}),
    ("8 levels of one source, 2 seeds each", {"init": 8}, 2, {"init": 1.0, "residual": 1.0}),
)


def table(num_studies: int, num_draws: int, seed: int) -> str:
    rows = []
    for label, levels, replicates, components in DESIGNS:
        out = simulate_coverage(levels, components, replicates=replicates,
                                num_studies=num_studies, num_draws=num_draws, seed=seed)
        terms = list(out["variance"])

        def cells(key: str, digits: int, terms: list[str] = terms, out: dict = out) -> str:
            return ", ".join(f"{t} {out[key][t]:.{digits}f}" for t in terms)

        truth = ", ".join(f"{t} {v:g}" for t, v in components.items())
        rows.append(f"| {label} | {truth} | {cells('share', 3)} | {cells('variance', 3)} | "
                    f"{cells('share_width', 2)} |")
    header = ("| design | true components | coverage of the share's interval | coverage of "
              "the variance's interval | mean width of the share's interval |\n"
              "| --- | --- | --- | --- | --- |\n")
    return header + "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks it runs")
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args(argv)
    studies, draws = (40, 200) if args.quick else (args.studies, args.draws)
    start = time.perf_counter()
    text = table(studies, draws, args.seed)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC}; {studies} simulated studies per row, "
          f"{draws} pivot draws per interval; {time.perf_counter() - start:.0f} s\n")
    print(text)


if __name__ == "__main__":
    main()
