#!/usr/bin/env python3
"""Create the tutorial's job configurations: one JSON file per (sort, init) pair.

10 sorts (cross-validation folds) x 10 inits (random initialisations) = 100 jobs, written as
config_sort_<s>_init_<i>.json: one job each when a Task uses the directory as its configs.

    python3 create_configs.py -o storage/alice/files/my_config_files
"""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True, help="directory to write the configs to")
    parser.add_argument("--sorts", type=int, default=10)
    parser.add_argument("--inits", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)
    for sort in range(args.sorts):
        for init in range(args.inits):
            config = {
                "sort": sort,
                "sorts": args.sorts,
                "init": init,
                "epochs": args.epochs,
                "learning_rate": 0.05,
            }
            name = os.path.join(args.output, f"config_sort_{sort}_init_{init}.json")
            with open(name, "w", encoding="utf-8") as stream:
                json.dump(config, stream, indent=2, sort_keys=True)
                stream.write("\n")


if __name__ == "__main__":
    main()
