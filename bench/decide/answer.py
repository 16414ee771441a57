"""The architect's question, answered: the best configuration under a budget, how sure, and
why the others are out. Pure functions of a `bench.load()` frame; no I/O, no torch.

The ranking holds the cases that meet every constraint with confidence, best objective first;
the top candidates are called tied when the data cannot tell them apart (the gate's rank test
and Hodges–Lehmann interval for medians and throughput, overlapping distribution-free
intervals for tail percentiles; point metrics are never called tied unless equal).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.decide.constraints import (
    Checked,
    Constraint,
    Values,
    check,
    describe_failure,
    extra_samples,
    format_value,
    parse_constraints,
    sorted_samples,
    values,
    worker_medians,
)
from bench.decide.metrics import DecideError, Metric, objective, with_derived
from bench.gate.paired import Speedup, round_test, speedup
from bench.gate.significance import repeat_shift_test, shift_test
from bench.stats import ONE_WORKER
from bench.suite.question import Question

#: Parameters that make a workload (a model family at one input, batch and device); the
#: knobs below are what an architect turns within it.
FAMILY_COLUMNS = ("model", "features", "image_size", "seq_len", "classes", "new_tokens",
                  "batch_size", "device", "mode", "model_args")
KNOB_COLUMNS = ("depth", "width", "heads", "kv_heads", "vocab_size", "activation", "precision",
                "prune_method", "prune_ratio", "compile")
#: Twins of a transformed case: the same workload and architecture, fp32 and unpruned.
REFERENCE = {"precision": "fp32", "prune_method": "none"}
FIDELITY_PREFERENCE = ("fidelity_top1_agreement", "fidelity_next_token_top1", "fidelity_cosine",
                       "fidelity_rel_l2")
MEMORY_PREFERENCE = ("memory_above_runtime_bytes", "peak_memory_bytes")


@dataclass(frozen=True, eq=False)
class Answer:
    """Everything `best` says. Frames share the candidate columns (see `candidates`)."""

    question: Question
    objective: Metric
    constraints: tuple[Constraint, ...]
    #: Cases meeting every constraint with confidence, best first, the top N.
    ranking: pd.DataFrame
    #: Cases whose point values meet every constraint but whose intervals do not.
    uncertain: pd.DataFrame
    #: The best cases that fail a constraint, each with what failed and by how much.
    why_not: pd.DataFrame
    #: Per family, the cases on the objective-vs-fidelity and objective-vs-memory frontiers.
    pareto: pd.DataFrame
    #: Where a depth/width scaling fit crosses a latency budget (interpolated, not measured).
    boundaries: pd.DataFrame
    counts: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def best(self) -> pd.Series | None:
        return None if self.ranking.empty else self.ranking.iloc[0]

    def to_dict(self) -> dict[str, Any]:
        def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return json.loads(frame.to_json(orient="records", default_handler=str))

        return {
            "question": {"objective": self.question.objective,
                         "metric": self.objective.name,
                         "higher_is_better": self.objective.higher_is_better,
                         "constraints": [c.text for c in self.constraints],
                         "top": self.question.top, "confidence": self.question.confidence},
            "counts": dict(self.counts), "notes": list(self.notes),
            "ranking": rows(self.ranking), "uncertain": rows(self.uncertain),
            "why_not": rows(self.why_not), "pareto": rows(self.pareto),
            "boundaries": rows(self.boundaries),
        }


# ---- the answer -----------------------------------------------------------------------------
def decide(frame: pd.DataFrame, question: Question) -> Answer:
    """Answer `question` over a `bench.load()` frame (several runs: the last row per case)."""
    if frame.empty or "status" not in frame.columns:
        raise DecideError("no results to choose from: the run holds no case")
    if "case_id" in frame.columns:
        frame = frame.drop_duplicates("case_id", keep="last")
    frame = with_derived(frame.reset_index(drop=True))
    target = objective(question.objective, frame)
    constraints = parse_constraints(question.constraints, frame)
    ok = frame[frame["status"] == "ok"].reset_index(drop=True)
    samples = sorted_samples(ok)
    goal = values(ok, target, question.confidence, samples)
    checks = [check(ok, c, question.confidence, samples) for c in constraints]
    table = candidates(ok, target, goal, checks)
    ordered = table.loc[_order(table, target)]

    def shown(verdict: str) -> pd.DataFrame:
        rows = ordered[ordered["verdict"] == verdict].head(question.top)
        return explain(rows, ok, checks, samples, question.confidence)

    ranking = _with_ties(shown("meets"), ok, samples, target, question.confidence)
    uncertain, failing = shown("uncertain"), shown("fails")
    shown_rows = np.concatenate([ranking["row"].to_numpy(int), uncertain.index.to_numpy(int),
                                 failing.index.to_numpy(int)])
    fidelity = _first_present(ok, FIDELITY_PREFERENCE)
    twins = _twins(ok, samples, question.confidence)
    ranking, uncertain = (_add_twins(f, twins) for f in (ranking, uncertain))
    counts = {"cases": len(frame), "measured": len(ok),
              "not_measured": int((frame["status"] != "ok").sum()),
              **{v: int((table["verdict"] == v).sum()) for v in ("meets", "uncertain",
                                                                  "fails")}}
    notes = []
    if not target.has_interval:
        notes.append(f"{target.name} is one measured value per case (no confidence interval):"
                     " ranked on that value; only equal values are called tied")
    between = ok["ci_between_workers"].fillna(False).astype(bool) \
        if "ci_between_workers" in ok.columns else pd.Series(False, index=ok.index)
    if between.any():
        notes.append("the median's interval is across each case's workers, so it includes "
                     "what varies between runs; ties and speed-ups compare workers measured "
                     "in the same rounds; other quantiles' intervals come from the pooled "
                     "samples, which do not include run-to-run variation")
    if (~between).any() and "median_ms" in ok.columns:
        notes.append(f"{int((~between).sum())} case(s) measured by {ONE_WORKER}: their "
                     "intervals are narrower than a rerun would show")
    return Answer(
        question=question, objective=target, constraints=constraints, ranking=ranking,
        uncertain=uncertain.reset_index(drop=True), why_not=failing.reset_index(drop=True),
        pareto=pareto(table, target, fidelity),
        boundaries=boundaries(ok, checks, shown_rows),
        counts=counts, notes=tuple(notes))


def best(runs: Any, objective: str = "median_ms", constraints: Sequence[str] = (),
         top: int = 5, confidence: float = 0.95) -> pd.DataFrame:
    """The ranked configurations meeting every constraint with confidence, best first.

    `runs`: a run folder, several, or a `bench.load()` DataFrame. `decide` returns the whole
    answer (uncertain cases, why-not, Pareto set, scaling boundaries).
    """
    return answer(runs, objective, constraints, top, confidence).ranking


def answer(runs: Any, objective: str = "median_ms", constraints: Sequence[str] = (),
           top: int = 5, confidence: float = 0.95) -> Answer:
    if isinstance(constraints, str):
        constraints = (constraints,)
    if isinstance(runs, pd.DataFrame):
        frame = runs
    else:
        from bench.results import load

        frame = load(runs)
    return decide(frame, Question(objective, tuple(constraints), top, confidence))


# ---- candidate table ------------------------------------------------------------------------
def knobs_label(row: Mapping[str, Any]) -> str:
    """The knobs that make this configuration: "d4 w512 bf16 structured 25%"."""
    parts = []
    for column, prefix in (("depth", "d"), ("width", "w"), ("heads", "h"), ("kv_heads", "kv"),
                           ("vocab_size", "v")):
        value = row.get(column)
        if _present(value):
            parts.append(f"{prefix}{_ratio(value):g}")
    if _present(row.get("activation")):
        parts.append(str(row["activation"]))
    parts.append(str(row.get("precision") or "fp32"))
    method = row.get("prune_method")
    if _present(method) and method != "none":
        parts.append(f"{method} {_ratio(row.get('prune_ratio')) * 100:g}%")
    if _present(row.get("compile")) and row.get("compile") != "eager":
        parts.append(f"compile {row['compile']}")
    return " ".join(parts)


def family_label(row: Mapping[str, Any]) -> str:
    parts = [str(row.get("model") or "?")]
    for column, prefix in (("features", "f"), ("image_size", "i"), ("seq_len", "s"),
                           ("new_tokens", "n"), ("batch_size", "b")):
        if _present(row.get(column)):
            parts.append(f"{prefix}{float(row[column]):g}")
    for column in ("device", "mode"):
        if _present(row.get(column)) and row.get(column) != "inference":
            parts.append(str(row[column]))
    return " ".join(parts)


def _ratio(value: Any) -> float:
    return float(value) if _present(value) else 0.0


def _present(value: Any) -> bool:
    return value is not None and value is not pd.NA and not (
        isinstance(value, float) and math.isnan(value))


def candidates(ok: pd.DataFrame, target: Metric, goal: Values,
               checks: Sequence[Checked]) -> pd.DataFrame:
    """One row per measured case (indexed by its position in `ok`): the objective with its
    interval, the overall verdict (the worst of its constraints'), family and knobs."""
    verdict = np.full(len(ok), "meets", dtype=object)
    for checked in checks:
        verdict = np.where(checked.verdict == "fails", "fails",
                           np.where((checked.verdict == "uncertain") & (verdict == "meets"),
                                    "uncertain", verdict))
    out = pd.DataFrame({
        "name": ok["name"].to_numpy(), "case_id": ok.get("case_id", ok["name"]).to_numpy(),
        "family_key": _keys(ok, FAMILY_COLUMNS).to_numpy(),
        "verdict": verdict, target.name: goal.point,
        f"{target.name}_low": goal.low, f"{target.name}_high": goal.high,
    })
    for column in (*FIDELITY_PREFERENCE, *MEMORY_PREFERENCE, "n_samples"):
        if column in ok.columns and column not in out.columns:
            out[column] = pd.to_numeric(ok[column], errors="coerce").to_numpy(dtype=float)
    for column in (*FAMILY_COLUMNS, *KNOB_COLUMNS):
        if column in ok.columns and column not in out.columns:
            out[column] = ok[column].to_numpy()
    return out


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """Rows with their `family` and `knobs` labels (built for the rows shown only)."""
    records = table.to_dict("records")
    out = table.copy()
    out.insert(2, "family", [family_label(r) for r in records])
    out.insert(3, "knobs", [knobs_label(r) for r in records])
    return out


def explain(table: pd.DataFrame, ok: pd.DataFrame, checks: Sequence[Checked],
            samples: list[np.ndarray], confidence: float) -> pd.DataFrame:
    """Rows of the candidate table (indexed by position in `ok`) with each constraint's
    verdict and value (`checks`), what failed or is uncertain and by how much (`failed`), and
    the samples that would settle the uncertain ones (`extra_samples`, the most any of its
    constraints needs). Done only for the rows shown: the estimate costs a binomial search."""
    out = labelled(table)
    batch = pd.to_numeric(ok["batch_size"], errors="coerce").fillna(1.0).to_numpy(float) \
        if "batch_size" in ok.columns else np.ones(len(ok))
    texts, reasons, extras = [], [], []
    for i in out.index:
        parts, why, extra = [], [], math.nan
        for checked in checks:
            constraint, vals, verdict = checked.constraint, checked.values, checked.verdict[i]
            metric = constraint.metric
            shown = format_value(metric, vals.point[i])
            if metric.has_interval:
                shown += (f" [{format_value(metric, vals.low[i])}, "
                          f"{format_value(metric, vals.high[i])}]")
            parts.append(f"{constraint.text}: {verdict} ({shown})")
            if verdict == "fails":
                why.append(describe_failure(constraint, vals.point[i]))
            elif verdict == "uncertain":
                bound = vals.high[i] if constraint.upper else vals.low[i]
                if vals.run_to_run is not None and vals.run_to_run[i]:
                    settle = ("the spread between its workers sets that bound: more workers "
                              "(raise max_repeats or max_time_s), not more samples per "
                              "worker, would settle it")
                else:
                    more = extra_samples(samples[i], constraint, batch[i], confidence)
                    extra = float(np.fmax(extra, more))
                    settle = (f"about {more:.0f} more samples would settle it"
                              if np.isfinite(more)
                              else "more samples would not settle it at this confidence")
                why.append(f"{constraint.text}: the point value meets it, the interval reaches "
                           f"{format_value(metric, bound)}; {settle}")
        texts.append("; ".join(parts))
        reasons.append("; ".join(why))
        extras.append(extra)
    out["checks"] = texts
    out["failed"] = reasons
    out["extra_samples"] = extras
    return out


def _order(table: pd.DataFrame, target: Metric) -> list[int]:
    """Best objective first; missing values last; ties in value by name (a stable answer)."""
    key = table[target.name].astype(float)
    key = -key if target.higher_is_better else key
    return list(pd.DataFrame({"k": key.fillna(np.inf), "n": table["name"]})
                .sort_values(["k", "n"], kind="stable").index)


# ---- ties -----------------------------------------------------------------------------------
def _with_ties(ranking: pd.DataFrame, ok: pd.DataFrame, samples: list[np.ndarray],
               target: Metric, confidence: float) -> pd.DataFrame:
    """`rank` (tied cases share their leader's) and `tied_with`: each candidate is compared
    with the leader of the rank above it; the first it differs from starts a new rank."""
    out = ranking.reset_index().rename(columns={"index": "row"})
    rows = ok.to_dict("records")
    ranks: list[int] = []
    tied_with: list[str | None] = []
    leader: int | None = None
    for position, row in enumerate(out.itertuples(index=False)):
        first = out["row"][leader] if leader is not None else None
        if first is not None and leader is not None and _tied(
                samples[first], samples[row.row], out.loc[leader], out.loc[position], target,
                confidence, (rows[first], rows[row.row])):
            ranks.append(ranks[leader])
            tied_with.append(out["name"][leader])
        else:
            leader = position
            ranks.append(position + 1)
            tied_with.append(None)
    out.insert(0, "rank", ranks)
    out["tied_with"] = tied_with
    out["tied"] = pd.Series(ranks).duplicated(keep=False).to_numpy()
    return out


def _tied(a: np.ndarray, b: np.ndarray, row_a: pd.Series, row_b: pd.Series, target: Metric,
          confidence: float, cases: tuple[Mapping[str, Any], Mapping[str, Any]]) -> bool:
    """Whether two candidates cannot be told apart. For the median: the ratio of workers
    measured in the same rounds (two or more of them, one run); else the gate's tests, on
    the workers' medians when both have MIN_REPEATS, else on the pooled samples."""
    name = target.name
    if not target.has_interval or not a.size or not b.size:
        return bool(row_a[name] == row_b[name])
    if target.quantile == 0.5 or target.per_item_rate:
        test = round_test(cases[0], cases[1], confidence)
        if test is not None:
            return bool(test.ratio_low is None or test.ratio_high is None
                        or test.ratio_low <= 1.0 <= test.ratio_high)
        medians_a, medians_b = (worker_medians(c.get("repeat_medians_ms")) for c in cases)
        if medians_a is not None and medians_b is not None:
            shift = repeat_shift_test(medians_a, medians_b, confidence)
        else:
            shift = shift_test(a, b, confidence)
        if shift.ratio_low is None or shift.ratio_high is None:
            return True  # too few samples to tell them apart
        return shift.ratio_low <= 1.0 <= shift.ratio_high
    return bool(row_b[f"{name}_low"] <= row_a[f"{name}_high"] and
                row_a[f"{name}_low"] <= row_b[f"{name}_high"])


# ---- twins ----------------------------------------------------------------------------------
def _keys(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """One integer per row naming its values in `columns` (missing values are a value), for
    grouping and matching rows of one frame."""
    present = [c for c in columns if c in frame.columns]
    if not present:
        return pd.Series(0, index=frame.index)
    return frame.groupby(present, dropna=False, sort=False).ngroup()


@dataclass(frozen=True, eq=False)
class Twins:
    """For each measured row, the row of its fp32 unpruned twin (same run), if any."""

    ok: pd.DataFrame
    samples: list[np.ndarray]
    twin_row: dict[int, int]
    confidence: float


def _twins(ok: pd.DataFrame, samples: list[np.ndarray], confidence: float) -> Twins:
    if ok.empty:
        return Twins(ok, samples, {}, confidence)
    keys = _keys(ok, (*FAMILY_COLUMNS, "depth", "width", "activation", "compile",
                      "run_id")).to_numpy()
    is_ref = np.ones(len(ok), dtype=bool)
    for column, value in REFERENCE.items():
        if column in ok.columns:
            is_ref &= (ok[column].astype(str) == value).to_numpy()
    refs = dict(zip(keys[is_ref].tolist(), np.flatnonzero(is_ref).tolist(), strict=True))
    twin_row = {i: refs[key] for i, key in enumerate(keys.tolist())
                if not is_ref[i] and key in refs}
    return Twins(ok, samples, twin_row, confidence)


def _add_twins(table: pd.DataFrame, twins: Twins) -> pd.DataFrame:
    """Twin name, speed-up (twin / case, `bench.gate.paired.speedup`: from the workers of
    the two measured in the same rounds, else the two levels' intervals) and a sentence
    saying what the knobs bought."""
    out = table.copy()
    positions = out["row"].tolist() if "row" in out.columns else out.index.tolist()
    rows = twins.ok.to_dict("records")
    names: list[str | None] = []
    sentences: list[str | None] = []
    found: list[Speedup | None] = []
    for i, row in zip(positions, out.to_dict("records"), strict=True):
        j = twins.twin_row.get(i)
        ratio = speedup(rows[j], rows[i], twins.confidence) if j is not None else None
        found.append(ratio)
        names.append(twins.ok["name"].iloc[j] if ratio is not None and j is not None else None)
        sentences.append(twin_sentence(row, ratio) if ratio is not None else None)
    out["twin"] = names
    out["speedup_vs_twin"] = [r.value if r else np.nan for r in found]
    out["speedup_low"] = [r.low if r else np.nan for r in found]
    out["speedup_high"] = [r.high if r else np.nan for r in found]
    out["speedup_basis"] = [r.evidence if r else None for r in found]
    out["vs_twin"] = sentences
    return out


def twin_sentence(row: Mapping[str, Any], ratio: Speedup) -> str:
    """ "bf16 + structured 25% is 2.9× faster (2.7–3.1×, 5 paired rounds) than fp32
    unpruned, at top-1 agreement 0.995" — the interval deciding between faster, slower and
    no difference."""
    speedup, low, high = ratio.value, ratio.low, ratio.high
    basis = ratio.evidence
    knobs = [str(row.get("precision") or "fp32")]
    if row.get("prune_method") not in (None, "none"):
        knobs.append(f"{row['prune_method']} {_ratio(row.get('prune_ratio')) * 100:g}%")
    what = " + ".join(knobs)
    if not math.isfinite(low) or not math.isfinite(high) or low <= 1.0 <= high:
        speed = f"is not measurably faster or slower ({low:.2g}–{high:.2g}×, {basis})"
    elif low > 1:
        speed = f"is {speedup:.2g}× faster ({low:.2g}–{high:.2g}×, {basis})"
    else:
        speed = f"is {1 / speedup:.2g}× slower ({1 / high:.2g}–{1 / low:.2g}×, {basis})"
    at = ""
    for column, words in (("fidelity_top1_agreement", "top-1 agreement"),
                          ("fidelity_cosine", "cosine similarity"),
                          ("fidelity_rel_l2", "relative L2 error")):
        if _present(row.get(column)):
            at = f", at {words} {float(row[column]):.3g}"
            break
    return f"{what} {speed} than fp32 unpruned{at}"


# ---- the whole picture ----------------------------------------------------------------------
def _first_present(frame: pd.DataFrame, columns: Sequence[str]) -> str | None:
    for column in columns:
        if column in frame.columns and pd.to_numeric(frame[column], errors="coerce").notna().any():
            return column
    return None


def pareto(table: pd.DataFrame, target: Metric, fidelity: str | None) -> pd.DataFrame:
    """Per family, the cases no other beats on the objective and fidelity (or memory above
    the runtime), ranked by the objective; `frontier` says which trade-off each is on."""
    from bench.stats import pareto_mask

    memory = _first_present(table, MEMORY_PREFERENCE)
    if memory and target.name in MEMORY_PREFERENCE:
        memory = None
    sign = -1.0 if target.higher_is_better else 1.0
    parts = []
    for _, members in table.groupby("family_key", sort=False):
        x = sign * members[target.name].to_numpy(dtype=float)
        on: dict[str, np.ndarray] = {}
        if fidelity:
            f = members[fidelity].to_numpy(dtype=float)
            on["fidelity"] = pareto_mask(x, -f if fidelity != "fidelity_rel_l2" else f)
        if memory:
            on["memory"] = pareto_mask(x, members[memory].to_numpy(dtype=float))
        if not on:
            continue
        label = np.full(len(members), "", dtype=object)
        for kind, mask in on.items():
            label = np.where(mask, np.where(label == "", kind, label + ", " + kind), label)
        keep = label != ""
        parts.append(members[keep].assign(frontier=label[keep]))
    if not parts:
        return labelled(table.iloc[0:0]).assign(frontier=[])
    out = labelled(pd.concat(parts))
    key = -out[target.name] if target.higher_is_better else out[target.name]
    return out.assign(_k=key).sort_values(["family", "_k"]).drop(columns="_k") \
        .reset_index(drop=True)


def boundaries(ok: pd.DataFrame, checks: Sequence[Checked],
               rows_of_interest: np.ndarray | None = None) -> pd.DataFrame:
    """For families swept over depth or width: where the log–log fit of a timing metric
    against width (at each depth), or depth (at each width), crosses a latency or throughput
    budget. Only crossings inside the measured range are given, as interpolated; with
    `rows_of_interest` (positions in `ok`), only for the sweeps those cases belong to."""
    from bench.stats import fit_loglog

    columns = ["family", "knobs", "constraint", "along", "at", "boundary", "statement", "n",
               "r2", "kind"]
    rows: list[dict[str, Any]] = []
    timing = [c for c in checks if c.constraint.metric.has_interval]
    if not timing or "depth" not in ok.columns or "width" not in ok.columns:
        return pd.DataFrame(rows, columns=columns)
    keys = _keys(ok, (*FAMILY_COLUMNS, "activation", "precision", "prune_method", "prune_ratio",
                      "compile", "run_id")).to_numpy()
    axes = {"depth": pd.to_numeric(ok["depth"], errors="coerce").to_numpy(float),
            "width": pd.to_numeric(ok["width"], errors="coerce").to_numpy(float)}
    for along, fixed in (("width", "depth"), ("depth", "width")):
        x_all, at_all = axes[along], axes[fixed]
        wanted = np.isfinite(x_all) & np.isfinite(at_all)
        if rows_of_interest is not None:
            wanted &= np.isin(keys, keys[rows_of_interest])
        usable = np.flatnonzero(wanted)
        line = pd.DataFrame({"k": keys[usable], "at": at_all[usable]}) \
            .groupby(["k", "at"], sort=False).ngroup().to_numpy()
        order = np.argsort(line, kind="stable")
        cuts = np.flatnonzero(np.diff(line[order])) + 1
        for members in np.split(usable[order], cuts):
            xs = x_all[members]
            if members.size < 2 or xs.min() == xs.max():
                continue
            at = float(at_all[members[0]])
            for checked in timing:
                constraint = checked.constraint
                ys = checked.values.point[members]
                if not np.nanmin(ys) / 10 < constraint.limit < np.nanmax(ys) * 10:
                    continue  # the fit cannot cross the budget inside the measured range
                fit = fit_loglog(xs, ys)
                crossing = fit.solve(constraint.limit) if fit else None
                if fit is None or crossing is None or not xs.min() < crossing < xs.max():
                    continue
                side = "≤" if (fit.slope > 0) == constraint.upper else "≥"
                rows.append({
                    "_row": members[0],
                    "constraint": constraint.text, "along": along, "at": f"{fixed} {at:g}",
                    "boundary": crossing,
                    "statement": f"{along} {side} {crossing:.4g} meets {constraint.text} at "
                                 f"{fixed} {at:g} (interpolated from a fit over {fit.n} "
                                 f"measured {along}s; not measured)",
                    "n": fit.n, "r2": fit.r2, "kind": "interpolated"})
    if not rows:
        return pd.DataFrame(rows, columns=columns)
    found = pd.DataFrame(rows)
    first = ok.iloc[found.pop("_row").to_numpy()]
    records = first[[c for c in (*FAMILY_COLUMNS, *KNOB_COLUMNS) if c in ok.columns]] \
        .to_dict("records")
    found["family"] = [family_label(r) for r in records]
    found["knobs"] = [knobs_label({**r, along: None})
                      for r, along in zip(records, found["along"], strict=True)]
    return found[columns]
