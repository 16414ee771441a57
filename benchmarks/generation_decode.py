"""Generation with a small Llama-style model: archbench's decode figure against a hand-written
loop, and decode tokens/s against key/value heads.

1. `--compare`: one process, one model, one thread. Rounds alternate between archbench's
   decode step timed by its timing loop (`bench.measure.timing.measure`) and a plain loop of
   `model(input_ids[:, -1:], cache=...)` (`past_key_values=` in older transformers) timed
   with torch.utils.benchmark's `blocked_autorange`; both per token. Each round gives a
   ratio; the median ratio and its spread over the rounds are printed (goal: within ±5%).
2. `--sweep`: `archbench run` of the same family at fixed hidden size over kv_heads 1, 2, 4,
   8 (mode generate, 3 repeats a case), printed as prefill and decode latency with their
   intervals, tokens/s and KV-cache bytes.

Usage: python -m benchmarks.generation_decode [--compare] [--sweep] [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
from pathlib import Path

CONFIG = {"depth": 4, "width": 256, "heads": 8, "vocab_size": 8000, "seq_len": 64}
NEW_TOKENS = 32


def compare(rounds: int, kv_heads: int) -> None:
    import torch
    import torch.utils.benchmark as tbench

    from bench.measure import generation
    from bench.measure.clock import PerfCounterClock
    from bench.measure.models.build import build
    from bench.measure.timing import measure
    from bench.suite.spec import Case, Settings

    torch.set_num_threads(1)
    settings = Settings(min_time_s=1.0, max_time_s=2.0, target_ci=0.005)
    case = Case(model="hf:llama", batch_size=1, kv_heads=kv_heads, new_tokens=NEW_TOKENS,
                mode="generate", settings=settings, **CONFIG)
    built, (prompt, _) = build(case)
    model = built.module.model
    ours = generation.prepare(model, prompt, NEW_TOKENS, torch.inference_mode)

    # The hand-written loop: its own prefilled cache, cut back to the prompt each call.
    key = generation.cache_keyword(model)
    with torch.inference_mode():
        first = model(input_ids=prompt, use_cache=True)
    cache = generation.cache_of(first)
    start = torch.cat([prompt, first.logits[:, -1:].argmax(-1)], dim=1)
    length = prompt.shape[1]

    def hand_loop() -> None:
        extra = cache.get_seq_length() - length
        if extra:
            cache.crop(-extra)
        input_ids = start
        for _ in range(NEW_TOKENS):
            logits = model(input_ids[:, -1:], use_cache=True, **{key: cache}).logits
            input_ids = torch.cat([input_ids, logits[:, -1:].argmax(-1)], dim=1)

    timer = tbench.Timer(stmt="hand_loop()", globals={"hand_loop": hand_loop},
                         num_threads=1)
    ratios, archbench_ms, torch_ms = [], [], []
    with torch.inference_mode():
        for index in range(rounds):
            # alternate which goes first, so a drift within a round cancels over rounds
            order = ("ours", "torch") if index % 2 == 0 else ("torch", "ours")
            got = {}
            for who in order:
                if who == "ours":
                    result = generation.per_token(
                        measure(ours.decode, PerfCounterClock(), settings), NEW_TOKENS)
                    got[who] = statistics.median(result.samples_ns) / 1e6
                else:
                    got[who] = timer.blocked_autorange(min_run_time=1.5).median * 1e3 / NEW_TOKENS
            archbench_ms.append(got["ours"])
            torch_ms.append(got["torch"])
            ratios.append(got["ours"] / got["torch"])
            print(f"round {index + 1:2d}: archbench {got['ours']:.4f} ms/token, "
                  f"torch.utils.benchmark {got['torch']:.4f} ms/token, "
                  f"ratio {ratios[-1]:.3f}", flush=True)
    ratios.sort()
    print(f"\nkv_heads={kv_heads}, {NEW_TOKENS} new tokens after a {CONFIG['seq_len']}-token "
          f"prompt, {CONFIG}: median ratio archbench / hand loop = "
          f"{statistics.median(ratios):.3f} (rounds: min {ratios[0]:.3f}, max {ratios[-1]:.3f})"
          f"; medians {statistics.median(archbench_ms):.4f} vs "
          f"{statistics.median(torch_ms):.4f} ms/token")


SUITE = """
    [suite]
    name = "kv-heads"
    [settings]
    min_time_s = 0.5
    max_time_s = 2.0
    threads = 1
    repeats = 3
    [[sweep]]
    model = "hf:llama"
    mode = "generate"
    depth = {depth}
    width = {width}
    heads = {heads}
    kv_heads = [1, 2, 4, 8]
    vocab_size = {vocab_size}
    seq_len = {seq_len}
    new_tokens = {new_tokens}
"""


def sweep() -> None:
    import bench
    from bench.cli import main

    folder = Path(tempfile.mkdtemp(prefix="kv-heads-"))
    path = folder / "suite.toml"
    path.write_text(textwrap.dedent(SUITE.format(new_tokens=NEW_TOKENS, **CONFIG)))
    assert main(["run", str(path), "--out", str(folder / "run")]) == 0
    frame = bench.load(folder / "run").sort_values("kv_heads")
    print(f"\n{CONFIG}, {NEW_TOKENS} new tokens, batch 1, 3 workers a case:")
    print("kv_heads  prefill ms [95% CI]        decode ms/token [95% CI]    tokens/s  KV cache")
    for row in frame.to_dict("records"):
        prefill = (f"{row['prefill_ms']:7.3f} [{row['prefill_ci_low_ms']:.3f}, "
                   f"{row['prefill_ci_high_ms']:.3f}]")
        decode = f"{row['median_ms']:7.4f} [{row['ci_low_ms']:.4f}, {row['ci_high_ms']:.4f}]"
        print(f"{int(row['kv_heads']):8d}  {prefill}   {decode}   "
              f"{row['throughput_items_s']:8.1f}  {int(row['kv_cache_bytes']) / 1024:.0f} KiB")
    print(f"run folder: {folder / 'run'}")


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--kv-heads", type=int, default=8)
    args = parser.parse_args()
    if args.compare or not args.sweep:
        compare(args.rounds, args.kv_heads)
    if args.sweep or not args.compare:
        sweep()


if __name__ == "__main__":
    main_()
