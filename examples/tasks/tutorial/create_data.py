#!/usr/bin/env python3
"""Create the tutorial's data file: two noisy Gaussian classes in 2-D, as JSON.

The original tutorial pickled a numpy array; this one uses JSON and the standard library only,
so the example runs anywhere Python does. The output is deterministic (fixed seed).

    python3 create_data.py -o storage/alice/files/my_data_file.json
"""

from __future__ import annotations

import argparse
import json
import random


def make_data(samples: int, seed: int) -> dict[str, list[list[float]] | list[int]]:
    rng = random.Random(seed)
    features: list[list[float]] = []
    labels: list[int] = []
    for index in range(samples):
        label = index % 2
        centre = (1.0, 1.0) if label else (-1.0, -1.0)
        features.append([round(rng.gauss(c, 1.1), 4) for c in centre])
        labels.append(label)
    return {"features": features, "labels": labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True, help="data file to write")
    parser.add_argument("-n", "--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=512)
    args = parser.parse_args()
    with open(args.output, "w", encoding="utf-8") as stream:
        json.dump(make_data(args.samples, args.seed), stream, separators=(",", ":"))
        stream.write("\n")


if __name__ == "__main__":
    main()
