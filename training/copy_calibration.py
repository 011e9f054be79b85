"""The copy pipeline's thresholds, chosen on one half of the queries and measured on the other.

`decide` turns evidence into a verdict with four numbers (copy_detection.verdict.Thresholds). The
service stores them with each collection; their defaults come from here, with this report as the
provenance. They are chosen on the CALIBRATION half (the copies of a seeded half of the originals,
and a seeded half of the non-copy pictures) and reported on the other half, so the figures are not
the figures the thresholds were fitted to.

What "good" means, per query and its first answer (training/copy_pipeline.answer):
- a copy verdict (exact or edited copy) on the query's original is a true positive;
- a copy verdict on any other picture, or on anything for a non-copy query, is a false positive;
- recall is true positives over copy queries, precision true positives over copy verdicts;
- the false-copy rate is the share of non-copy queries that get a copy verdict at all.
The choice: the highest recall with precision >= PRECISION_BAR and false-copy rate <= FALSE_COPY_BAR,
one threshold at a time over a grid (coordinate ascent, twice round), starting from the defaults.

    study = evaluate(row, study_data, PipelineOptions())
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Iterable

import numpy as np

from copy_detection.verdict import ThresholdError, Thresholds
from training.copy_pipeline import COPY_VERDICTS, UNEDITED, PipelineOptions, Query, answer, gather
from training.study import COPY_EDITS, Row, StudyData

log = logging.getLogger(__name__)

PRECISION_BAR, RECALL_BAR, FALSE_COPY_BAR = 0.99, 0.95, 0.01
# Values tried for the thresholds that make a copy verdict; strictness grows along each. Two are left
# at their defaults: exact_hash_distance only tells exact from edited copies, and every copy of the
# edit suite is edited, so there is nothing to fit it to; embedding_similar only tells similar from
# unrelated, which this stage does not measure.
GRIDS: dict[str, list[float]] = {
    "edited_inliers": [*range(4, 31), *range(32, 61, 2), 70, 80, 100, 150],
    "embedding_copy": [round(v, 3) for v in np.arange(0.80, 1.0001, 0.005)],
}
ROUNDS = 2  # of coordinate ascent
SHOWN_FALSE_COPIES = 10  # the strongest false copies the report names
CURVES = ("edited_inliers", "embedding_copy")  # the thresholds swept for the precision-recall plot


@dataclasses.dataclass
class PipelineStudy:
    """What the report shows of the whole pipeline, for one embedding model."""

    model: str
    options: PipelineOptions
    defaults: Thresholds  # copy_detection's, before calibration
    thresholds: Thresholds  # chosen on the calibration half
    calibration: dict[str, float]  # measures on the calibration half, with `thresholds`
    measures: dict[str, float]  # on the other half, with `thresholds`: the reported figures
    at_defaults: dict[str, float]  # on the other half, with `defaults`
    by_edit: dict[str, dict[str, float]]  # edit -> measures of that edit's queries, reported half
    by_edit_at_defaults: dict[str, dict[str, float]]  # the same with `defaults`: what verification finds at all
    curves: dict[str, list[tuple[float, float, float]]]  # threshold -> (value, precision, recall), reported half
    false_copies: list[dict]  # the strongest copy verdicts on non-copies, reported half: what fools the verdict


def evaluate(row: Row, study: StudyData, options: PipelineOptions) -> PipelineStudy:
    queries = gather(row, study, options)
    fitting = [q for q in queries if q.calibration]
    reported = [q for q in queries if not q.calibration]
    defaults = Thresholds()
    thresholds = calibrate(fitting, defaults)
    log.info("calibrated thresholds: %s", thresholds)
    curves = {name: sweep(reported, thresholds, name) for name in CURVES if _has(name)}
    edits = [edit for edit in (*COPY_EDITS, UNEDITED) if any(q.edit == edit for q in reported)]
    by_edit = {edit: measure([q for q in reported if q.edit == edit], thresholds) for edit in edits}
    by_edit_at_defaults = {edit: measure([q for q in reported if q.edit == edit], defaults) for edit in edits}
    return PipelineStudy(
        model=row.entry.name,
        options=options,
        defaults=defaults,
        thresholds=thresholds,
        calibration=measure(fitting, thresholds),
        measures=measure(reported, thresholds),
        at_defaults=measure(reported, defaults),
        by_edit=by_edit,
        by_edit_at_defaults=by_edit_at_defaults,
        curves=curves,
        false_copies=false_copies(reported, thresholds, study),
    )


def measure(queries: list[Query], thresholds: Thresholds) -> dict[str, float]:
    """Every figure of the report for these queries; NaN where there is nothing to count."""
    copy = np.array([q.is_copy for q in queries], dtype=bool)
    answers = [answer(q, thresholds) for q in queries]
    correct = np.array([position == q.source for (position, _), q in zip(answers, queries)], dtype=bool)
    flagged = np.array([decision.verdict in COPY_VERDICTS for _, decision in answers], dtype=bool)
    found = copy & correct & flagged
    copies, others = int(copy.sum()), int((~copy).sum())
    return {
        "copy_queries": copies,
        "non_copy_queries": others,
        "candidate_recall": _mean(q.source in q.candidates for q in queries if q.is_copy),
        "recall_at_1": _share(correct & copy, copies),
        "copy_recall": _share(found, copies),  # a copy verdict on the original: the verdict's recall
        "copy_precision": _share(found, int(flagged.sum())),
        "wrong_copy_rate": _share(flagged & copy & ~correct, copies),  # copies said to copy another picture
        "false_copy_rate": _share(flagged & ~copy, others),
        "embedding_recall_at_1": _mean(q.embedding_won for q in queries if q.is_copy),
        "phash_recall_at_1": _mean(q.hash_won for q in queries if q.is_copy),
        "exact_share": _share(found & np.array([d.verdict == COPY_VERDICTS[0] for _, d in answers]), copies),
        "candidates_p50": _median(len(q.candidates) for q in queries),
        "verify_ms_p50": _median(q.verify_ms for q in queries),
        "verify_ms_p95": _percentile((q.verify_ms for q in queries), 95),
        "fingerprint_ms_p50": _median(q.fingerprint_ms for q in queries),
    }


def false_copies(queries: list[Query], thresholds: Thresholds, study: StudyData) -> list[dict]:
    """The non-copies given a copy verdict, one entry per (picture, picture taken for its original) with the
    edits under which it happened, most inliers first: which pictures the verdict takes for copies."""
    pairs: dict[tuple[str, str], dict] = {}
    for query in (q for q in queries if not q.is_copy):
        position, decision = answer(query, thresholds)
        if decision.verdict not in COPY_VERDICTS:
            continue
        match = query.matches[int(np.flatnonzero(query.candidates == position)[0])]
        pair = (_name(study, query.picture), _name(study, int(study.split.train_val[position])))
        seen = pairs.setdefault(pair, {"query": pair[0], "taken_for_a_copy_of": pair[1], "edits": [], "inliers": 0})
        seen["edits"].append(query.edit)
        seen["inliers"] = max(seen["inliers"], 0 if match is None else match.inliers)
    return sorted(pairs.values(), key=lambda f: -f["inliers"])[:SHOWN_FALSE_COPIES]


def calibrate(queries: list[Query], start: Thresholds) -> Thresholds:
    """The thresholds with the most copies found within the bars, one threshold at a time (GRIDS)."""
    best, best_key = start, _key(measure(queries, start))
    for _ in range(ROUNDS):
        for name in (n for n in GRIDS if _has(n)):
            for tried in _moved(best, name):
                key = _key(measure(queries, tried))
                if key > best_key:
                    best, best_key = tried, key
    return best


def sweep(queries: list[Query], thresholds: Thresholds, name: str) -> list[tuple[float, float, float]]:
    """(value, precision, recall) of copy verdicts for each value of one threshold, the others fixed."""
    points = []
    for tried in _moved(thresholds, name):
        m = measure(queries, tried)
        points.append((float(getattr(tried, name)), m["copy_precision"], m["copy_recall"]))
    return points


def meets_bars(measures: dict[str, float]) -> bool:
    return (
        measures["copy_precision"] >= PRECISION_BAR
        and measures["copy_recall"] >= RECALL_BAR
        and measures["false_copy_rate"] <= FALSE_COPY_BAR
    )


def _key(m: dict[str, float]) -> tuple:
    """Orders tries: within the precision and false-copy bars first, then by recall; outside them, by precision."""
    within = _at_least(m["copy_precision"], PRECISION_BAR) and not m["false_copy_rate"] > FALSE_COPY_BAR
    return (within, m["copy_recall"] if within else _nan_low(m["copy_precision"]), _nan_low(m["copy_precision"]))


def _name(study: StudyData, index: int) -> str:
    """label/file of a picture of a folder, or the index and label of a digit."""
    data = study.dataset
    if data.paths is None:
        return f"#{index} ({data.labels[index]})"
    path = Path(data.paths[index])
    return f"{path.parent.name}/{path.name}"


def _has(name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(Thresholds)}


def _moved(thresholds: Thresholds, name: str) -> Iterable[Thresholds]:
    """`thresholds` with `name` set to each value of its grid that Thresholds accepts (an int field
    stays an int; a copy cosine below the similar one is refused)."""
    kind = type(getattr(thresholds, name))
    for value in GRIDS[name]:
        try:
            yield dataclasses.replace(thresholds, **{name: kind(value)})
        except ThresholdError:
            continue


def _at_least(value: float, bar: float) -> bool:
    return not np.isnan(value) and value >= bar


def _nan_low(value: float) -> float:
    return -1.0 if np.isnan(value) else value


def _share(hits: np.ndarray, count: int) -> float:
    return float(hits.sum()) / count if count else float("nan")


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def _median(values: Iterable[float]) -> float:
    return _percentile(values, 50)


def _percentile(values: Iterable[float], q: float) -> float:
    values = list(values)
    return float(np.percentile(values, q)) if values else float("nan")
