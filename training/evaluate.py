"""Does the model retrieve better than raw pixels? Precision@k of a checkpoint against that baseline.

    python -m training.evaluate checkpoints/digits.pt

The test images query the train+val images (the split stored in the checkpoint), by cosine, exact
kNN; a neighbour is relevant when it has the query's label.
"""

from __future__ import annotations

import argparse
import json


from training.checkpoint import load_checkpoint
from training.data import Split, data_hash
from training.pipeline import load_data
from training.retrieval_metrics import precision_at_k
from training.train import embed


def retrieval_report(checkpoint_path: str, ks: tuple[int, ...] = (1, 10), metric: str = "cosine") -> dict[str, float]:
    checkpoint = load_checkpoint(checkpoint_path)
    data = load_data(checkpoint.extra["data"], checkpoint.preprocessing)
    if data_hash(data.images) != checkpoint.data_hash:
        raise ValueError("the data differs from what this checkpoint was trained on (data_hash mismatch)")
    if data.labels is None:
        raise ValueError("precision needs labels: digits, or a folder with one subfolder per class")
    split = Split.from_dict(checkpoint.extra["split"])
    db, queries = split.train_val, split.test
    representations = {
        "raw_pixels": data.images.reshape(len(data), -1),  # (N, C*H*W), the baseline to beat
        "model": embed(checkpoint.model, data.images),  # (N, D)
    }
    report = {}
    for name, vecs in representations.items():
        for k in ks:
            report[f"{name}_precision_at_{k}"] = precision_at_k(
                vecs[queries], data.labels[queries], vecs[db], data.labels[db], k, metric
            )
    report["test_mse"] = checkpoint.metrics.get("test_mse", float("nan"))
    report["train_seconds"] = checkpoint.metrics.get("train_seconds", float("nan"))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="checkpoint written by `lookalike train`")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 10], help="cut-offs (default: 1 10)")
    args = parser.parse_args(argv)
    report = retrieval_report(args.checkpoint, tuple(args.k))
    print(json.dumps({key: round(value, 4) for key, value in report.items()}, indent=2))


if __name__ == "__main__":
    main()
