"""Using a model: ``predict`` and ``evaluate`` (flags in, the prediction and evaluation API called, nothing else)."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from labelwise.cli.options import DatasetFiles, Decision, ModelSource, RunOptions
from labelwise.data.tables import TableColumns
from labelwise.errors import LabelwiseError
from labelwise.settings import add_flags, from_args, setting


@dataclass
class EvaluateOutput:
    split: str = setting("dev", choices=("dev", "test", "train"), help="the split to score")
    bad_case_file: str = setting("bad_case.txt", help="examples with any wrong label")
    report: str | None = setting(None, help="also write a self-contained HTML report here")


@dataclass
class PredictFiles:
    data_file: str = setting("data.txt", help="one text a line, or a .csv / .tsv / .jsonl / .parquet table")
    hf_split: str = setting("test", help="with a saved Hugging Face dataset as --dataset_dir: the split whose texts "
                                         "to label")
    output_file: str = setting("output.txt", help="text<TAB>labels lines; .jsonl or .csv: that format")
    with_scores: bool = setting(False, help="write label:probability")
    perf: bool = setting(False, help="instead: micro/macro F1 and ms/sample over dev (or test)")
    perf_split: str = setting("dev", choices=("dev", "test"), help="--perf: the split to score")


@dataclass
class RayOptions:
    ray: bool = setting(False, help="score with Ray Data over --num_actors model copies; --output_file must end in "
                                    ".parquet or .jsonl and becomes a folder (needs labelwise[ray]; see "
                                    "docs/deployment.md)")
    num_actors: int = setting(2, help="--ray: model copies", minimum=1)
    ray_address: str | None = setting(None, help="--ray: a cluster to join (auto, ray://head:10001); default: start "
                                                 "Ray on this machine")
    text_field: str = setting("text", help="--ray: the text column of JSONL/Parquet input")


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="per-label metrics and bad cases on dev (or test)")
    add_flags(p, DatasetFiles, required=("dataset_dir",))
    add_flags(p, TableColumns)
    add_flags(p, ModelSource)
    add_flags(p, Decision)
    add_flags(p, EvaluateOutput)
    add_flags(p, RunOptions, only=("format",))
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="label the texts of data.txt")
    add_flags(p, DatasetFiles, only=("dataset_dir",),
              help_overrides={"dataset_dir": "folder holding data.txt (or give --data_file as a path)"})
    add_flags(p, PredictFiles)
    add_flags(p, TableColumns, only=("text_column",))
    add_flags(p, RayOptions)
    add_flags(p, ModelSource)
    add_flags(p, Decision)
    p.set_defaults(func=cmd_predict)


def cmd_evaluate(args) -> int:
    from labelwise.evaluation.evaluate import evaluate, format_report, write_bad_cases

    model, decision = from_args(ModelSource, args), from_args(Decision, args)
    clf = model.load()
    ev = evaluate(clf, args.dataset_dir, args.split, batch_size=model.batch_size, **decision.options(),
                  columns=from_args(TableColumns, args), **from_args(DatasetFiles, args).file_names())
    bad = write_bad_cases(ev, args.bad_case_file)
    if args.format == "json":
        print(json.dumps(ev.metrics, ensure_ascii=False, indent=2))
    else:
        print(format_report(ev.metrics))
        print(f"\n{bad} bad cases written to {args.bad_case_file}")
    if args.report:
        from labelwise.evaluation.report import write_report

        write_report(ev, args.report, classifier=clf)
        print(f"HTML report written to {args.report}", file=sys.stderr if args.format == "json" else sys.stdout)
    own_decisions = ((decision.threshold, decision.top_k_min, decision.top_k_max, decision.hierarchy)
                     == (None, 0, None, "consistent"))
    if args.split == "test" and clf.path and own_decisions and model.max_seq_length is None:
        from labelwise.model.card import record_test_figures  # the model's own decisions: into its model card

        card = record_test_figures(clf.path, ev.metrics, source=f"{clf.backend.name} backend")
        if card:
            print(f"Test figures added to {card}", file=sys.stderr if args.format == "json" else sys.stdout)
    return 0


def cmd_predict(args) -> int:
    from labelwise.evaluation.evaluate import evaluate
    from labelwise.predict.output import predict_file

    if args.ray:
        return _predict_ray(args)
    model, decision = from_args(ModelSource, args), from_args(Decision, args)
    clf = model.load()
    if args.perf:
        if not args.dataset_dir:
            raise LabelwiseError("--perf needs --dataset_dir (a folder with dev.txt and label.txt)")
        start = time.perf_counter()
        ev = evaluate(clf, args.dataset_dir, args.perf_split, batch_size=model.batch_size, **decision.options())
        ms = 1000 * (time.perf_counter() - start) / max(1, ev.metrics["size"])
        print(f"{args.perf_split} size {ev.metrics['size']}  micro-F1 {ev.metrics['micro']['f1']:.2f}  "
              f"macro-F1 {ev.metrics['macro']['f1']:.2f}  {ms:.2f} ms/sample (batch {model.batch_size}, "
              f"{clf.backend.name})")
        return 0
    columns = TableColumns(text_column=args.text_column)
    texts = _hf_texts(args, columns)
    predictions = predict_file(clf, _data_file(args), args.output_file, args.with_scores, columns=columns, texts=texts,
                               batch_size=model.batch_size, max_seq_length=model.max_seq_length, **decision.options())
    print(f"{len(predictions)} predictions written to {args.output_file}")
    return 0


def _data_file(args) -> Path:
    """--data_file inside --dataset_dir (data.csv etc. where data.txt is missing), or as a path."""
    from labelwise.data.tables import table_file

    if not args.dataset_dir:
        return Path(args.data_file)
    return table_file(Path(args.dataset_dir), args.data_file) or Path(args.dataset_dir) / args.data_file


def _hf_texts(args, columns: TableColumns) -> list[str] | None:
    """The texts of --hf_split when --dataset_dir is a saved Hugging Face dataset, else None."""
    from labelwise.data.hf import is_hf_dataset, read_hf_split

    if not args.dataset_dir or not is_hf_dataset(args.dataset_dir):
        return None
    return read_hf_split(args.dataset_dir, args.hf_split, columns, texts_only=True)


def _predict_ray(args) -> int:
    from labelwise.predict.ray_batch import predict_ray

    if args.perf or args.index_dir or args.with_scores:
        raise LabelwiseError("--ray does not combine with --perf, --index_dir or --with_scores "
                             "(scores are always written)")
    model = from_args(ModelSource, args)
    path, backend = model.source()
    result = predict_ray(path, _data_file(args), args.output_file, num_actors=args.num_actors,
                         threads_per_actor=model.num_threads or 1, address=args.ray_address, backend=backend,
                         precision=model.precision, text_field=args.text_field, max_seq_length=model.max_seq_length,
                         **from_args(Decision, args).options())
    print(f"{result.rows} predictions written to {result.output}/ ({result.texts_per_second:.0f} texts/s, "
          f"{result.num_actors} actors)")
    return 0
