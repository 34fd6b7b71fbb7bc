#!/usr/bin/env python3
"""The tutorial's tuning job: train a logistic regression on one cross-validation split.

Takes the original tool's three mandatory arguments:
  -d/--dataFile    the data file (%DATA)
  -c/--configFile  this job's configuration (%IN): sort (the held-out fold), init (the seed
                   of the initial weights), epochs, learning_rate
  -o/--output      where to write the result (%OUT), a JSON document

Standard library only; one job takes a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys


def train(
    features: list[list[float]], labels: list[int], config: dict[str, float]
) -> tuple[list[float], float]:
    rng = random.Random(int(config["init"]))
    weights = [rng.uniform(-0.5, 0.5) for _ in range(len(features[0]) + 1)]
    rate = float(config["learning_rate"])
    loss = 0.0
    for _epoch in range(int(config["epochs"])):
        loss = 0.0
        for x, y in zip(features, labels, strict=True):
            z = weights[0] + sum(w * v for w, v in zip(weights[1:], x, strict=True))
            p = 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))
            loss -= math.log(p if y else 1.0 - p)
            gradient = p - y
            weights[0] -= rate * gradient
            for k, v in enumerate(x):
                weights[k + 1] -= rate * gradient * v
        loss /= len(features)
    return weights, loss


def accuracy(weights: list[float], features: list[list[float]], labels: list[int]) -> float:
    hits = 0
    for x, y in zip(features, labels, strict=True):
        z = weights[0] + sum(w * v for w, v in zip(weights[1:], x, strict=True))
        hits += int((z > 0) == bool(y))
    return hits / len(labels)


def main() -> int:
    parser = argparse.ArgumentParser(description="tutorial tuning job")
    parser.add_argument("-d", "--dataFile", required=True)
    parser.add_argument("-c", "--configFile", required=True)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    with open(args.dataFile, encoding="utf-8") as stream:
        data = json.load(stream)
    with open(args.configFile, encoding="utf-8") as stream:
        config = json.load(stream)
    sorts, sort = int(config["sorts"]), int(config["sort"])
    train_x, train_y, test_x, test_y = [], [], [], []
    for index, (x, y) in enumerate(zip(data["features"], data["labels"], strict=True)):
        if index % sorts == sort:
            test_x.append(x)
            test_y.append(y)
        else:
            train_x.append(x)
            train_y.append(y)
    weights, loss = train(train_x, train_y, config)
    result = {
        "config": config,
        "weights": weights,
        "train_loss": loss,
        "test_accuracy": accuracy(weights, test_x, test_y),
        "train_samples": len(train_y),
        "test_samples": len(test_y),
    }
    with open(args.output, "w", encoding="utf-8") as stream:
        json.dump(result, stream, indent=2)
        stream.write("\n")
    print(f"sort {sort} init {config['init']}: test accuracy {result['test_accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
