"""Speed-up and fidelity of every case against its fp32, unpruned, eager twin in a run.

Usage: python -m benchmarks.speedup_table RUN_DIR
"""

from __future__ import annotations

import argparse

import pandas as pd

import bench

IDENTITY = ["model", "depth", "width", "activation", "features", "image_size", "seq_len",
            "classes", "batch_size", "device", "mode"]


def speedups(frame: pd.DataFrame) -> pd.DataFrame:
    ok = frame[frame.status == "ok"].copy()
    keys = [k for k in IDENTITY if k in ok]
    base = ok[(ok.precision == "fp32") & (ok.prune_method == "none") & (ok.compile == "eager")]
    base = base[[*keys, "median_ms"]].rename(columns={"median_ms": "reference_ms"})
    merged = ok.merge(base, on=keys, how="left")
    merged["speedup"] = merged.reference_ms / merged.median_ms
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    args = parser.parse_args()
    table = speedups(bench.load(args.run))
    columns = ["model", "precision", "prune_method", "prune_ratio", "median_ms", "ci_rel",
               "speedup", "prune_params_ratio", "prune_flops_ratio", "prune_sparsity",
               "compute_dtype", "fidelity_rel_l2", "fidelity_top1_agreement"]
    with pd.option_context("display.width", 250, "display.max_columns", 20,
                           "display.float_format", "{:.4g}".format):
        print(table[[c for c in columns if c in table]].to_string(index=False))


if __name__ == "__main__":
    main()
