"""`labelwise` command line: each subcommand parses flags and calls the Python API, nothing else."""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

from labelwise.cli import data as cli_data
from labelwise.cli import deploy as cli_deploy
from labelwise.errors import LabelwiseError, OutputExistsError

log = logging.getLogger("labelwise")


def _dataset_files(p: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        p.add_argument(f"--{name}_file", default=f"{name}.txt", help=f"file name of the {name} split (default %(default)s)")


def _prediction_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threshold", type=float, default=None,
                   help="one threshold for every label (default: the checkpoint's tuned thresholds, else 0.5)")
    p.add_argument("--top_k_min", type=int, default=0, help="always return at least this many labels (1 = never empty)")
    p.add_argument("--top_k_max", type=int, default=None, help="return at most this many labels")
    p.add_argument("--long_text", choices=["truncate", "slide"], default="truncate",
                   help="texts longer than max_seq_length: cut (PaddleNLP's way) or slide overlapping windows "
                        "and take each label's max probability")


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params_path", default="checkpoint", help="checkpoint folder from `labelwise train`")
    p.add_argument("--model_path", default=None, help="an export folder (ONNX); implies --backend onnx")
    p.add_argument("--index_dir", default=None, help="a retrieval index from `labelwise index` instead of a model")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto")
    p.add_argument("--precision", choices=["fp32", "int8", "fp16"], default="fp32",
                   help="which model file of an ONNX export (default %(default)s)")
    p.add_argument("--device", default=None, help="cpu | gpu | gpu:N (default: GPU when there is one)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_seq_length", type=int, default=None, help="default: the one the model was trained with")
    p.add_argument("--num_threads", type=int, default=None, help="CPU threads for inference")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labelwise", description="Multi-label text classification.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="fine-tune an encoder on a dataset folder")
    p.add_argument("--dataset_dir", required=True, help="folder with train.txt, dev.txt, label.txt")
    p.add_argument("--save_dir", default="checkpoint", help="where the best checkpoint goes (default %(default)s)")
    p.add_argument("--model_name", default="m3e-small",
                   help="m3e-small (offline), all-minilm-l6-v2 (offline, English), ernie-3.0-medium-zh etc. "
                        "(hub, needs internet), any hub id or local folder")
    p.add_argument("--device", default=None, help="cpu | gpu | gpu:N (default: GPU when there is one)")
    p.add_argument("--batch_size", type=int, default=None, help="default 32; 8 with --few_shot")
    for name, typ, default in [("max_seq_length", int, 128), ("early_stop_nums", int, 4),
                               ("logging_steps", int, 5), ("warmup_steps", int, 0),
                               ("warmup_proportion", float, 0.1), ("seed", int, 3)]:
        p.add_argument(f"--{name}", type=typ, default=default, help="default %(default)s")
    p.add_argument("--learning_rate", type=float, default=None,
                   help="encoder learning rate (default: 1e-4 for encoders up to 512 wide, 3e-5 for larger ones)")
    p.add_argument("--head_learning_rate", type=float, default=None,
                   help="learning rate of the new linear head (default: 30 × --learning_rate)")
    p.add_argument("--epochs", type=int, default=None,
                   help="default: enough for 600 optimiser steps, at least 3 and at most 40 epochs")
    p.add_argument("--weight_decay", type=float, default=0.01,
                   help="AdamW decay of the encoder's weight matrices (default %(default)s)")
    p.add_argument("--pooling", choices=["auto", "mean", "cls"], default="auto",
                   help="how the head reads the encoder: mean over tokens, or the [CLS] vector (through the "
                        "encoder's pooler); auto = mean for sentence encoders (m3e, MiniLM), cls otherwise")
    p.add_argument("--early_stop", action="store_true", help="stop after --early_stop_nums epochs without gain")
    p.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                   help="warm the learning rate up over --warmup_proportion (default on; --no-warmup turns it off)")
    p.add_argument("--no_baseline", dest="baseline", action="store_false",
                   help="skip the TF-IDF + linear SVM baseline trained (in seconds) beside the model")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast (GPUs with bf16, CPUs with AVX-512 BF16 or AMX; fp32 elsewhere, with a "
                        "warning). Default: on only on CPUs with AMX, where it was measured faster; --no-bf16: off")
    p.add_argument("--few_shot", action="store_true",
                   help="for a few examples per label: contrastive pairs + label names, then the head "
                        "(see docs/few-shot.md)")
    p.add_argument("--init_from_ckpt", default=None, help="start from the weights of this checkpoint folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of the same --save_dir")
    p.add_argument("--loss", choices=["bce", "focal", "asymmetric"], default="bce")
    p.add_argument("--pos_weight", choices=["auto"], default=None, help="auto: weight positives by neg/pos per label")
    p.add_argument("--no_threshold_tuning", dest="threshold_tuning", action="store_false",
                   help="keep 0.5 for every label instead of tuning per-label thresholds on dev")
    p.add_argument("--max_train_samples", type=int, default=None, help="train on a random subset")
    p.add_argument("--max_dev_samples", type=int, default=None, help="evaluate on a random subset")
    _dataset_files(p, "train", "dev", "test", "label")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="per-label metrics and bad cases on dev (or test)")
    p.add_argument("--dataset_dir", required=True)
    _model_flags(p)
    p.add_argument("--split", choices=["dev", "test", "train"], default="dev")
    p.add_argument("--bad_case_file", default="bad_case.txt", help="examples with any wrong label (default %(default)s)")
    p.add_argument("--threshold", type=float, default=None, help="one threshold for every label")
    p.add_argument("--long_text", choices=["truncate", "slide"], default="truncate")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--report", default=None, help="also write a self-contained HTML report here")
    _dataset_files(p, "dev", "test", "train", "label")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="label the texts of data.txt")
    p.add_argument("--dataset_dir", default=None, help="folder holding data.txt (or give --data_file as a path)")
    p.add_argument("--data_file", default="data.txt")
    p.add_argument("--output_file", default="output.txt")
    p.add_argument("--with_scores", action="store_true", help="write label:probability")
    p.add_argument("--perf", action="store_true", help="instead: micro/macro F1 and ms/sample over dev (or test)")
    p.add_argument("--perf_split", choices=["dev", "test"], default="dev")
    p.add_argument("--ray", action="store_true",
                   help="score with Ray Data over --num_actors model copies; --output_file must end in .parquet or "
                        ".jsonl and becomes a folder (needs labelwise[ray]; see docs/deployment.md)")
    p.add_argument("--num_actors", type=int, default=2, help="--ray: model copies (default %(default)s)")
    p.add_argument("--ray_address", default=None,
                   help="--ray: a cluster to join (auto, ray://head:10001); default: start Ray on this machine")
    p.add_argument("--text_field", default="text", help="--ray: the text column of JSONL/Parquet input")
    _model_flags(p)
    _prediction_flags(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("index", help="a retrieval index: labels from the nearest labelled texts, no training")
    p.add_argument("--params_path", default="m3e-small",
                   help="checkpoint folder or sentence encoder whose vectors to index (default %(default)s)")
    p.add_argument("--dataset_dir", default=None, help="train.txt (indexed), label.txt, dev.txt (picks k, thresholds)")
    p.add_argument("--index_dir", default="index", help="index folder to write (default %(default)s)")
    p.add_argument("--add", default=None, metavar="FILE",
                   help="instead: add FILE's examples (train.txt format, new labels allowed) to --index_dir")
    p.add_argument("--k", default="auto", help="neighbours that vote (default auto: 5, 10, 20 or 50, best on dev)")
    p.add_argument("--no_label_names", dest="label_names", action="store_false",
                   help="do not index each label's name as a text with that label")
    p.add_argument("--approximate", action="store_true", help="HNSW search (faiss-cpu) for millions of vectors")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--device", default=None, help="cpu | gpu | gpu:N")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("zeroshot", help="a classifier from label names alone (no labelled examples)")
    p.add_argument("--dataset_dir", required=True, help="folder with label.txt (and dev.txt to tune thresholds)")
    p.add_argument("--save_dir", default="checkpoint", help="where the checkpoint goes (default %(default)s)")
    p.add_argument("--model_name", default="m3e-small", help="a sentence encoder (default %(default)s)")
    p.add_argument("--pooling", choices=["auto", "mean", "cls"], default="auto")
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--device", default=None, help="cpu | gpu | gpu:N")
    p.add_argument("--label_file", default="label.txt")
    p.set_defaults(func=cmd_zeroshot)

    p = sub.add_parser("demo", help="train briefly on the bundled divorce data, evaluate and predict")
    p.add_argument("--dataset_dir", default="data/divorce")
    p.add_argument("--work_dir", default="runs/demo")
    p.add_argument("--max_train_samples", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=2)
    p.set_defaults(func=cmd_demo)

    cli_deploy.register(sub)
    cli_data.register(sub)
    return parser


def _load_classifier(args):
    """The model named by --params_path / --model_path / --index_dir, opened the one way every command uses."""
    from labelwise.predict.classifier import Classifier

    path, backend = _model_source(args)
    return Classifier.load(path, backend=backend, device=args.device, num_threads=args.num_threads,
                           precision=args.precision)


def _model_source(args) -> tuple[str, str]:
    """(folder, backend) named by --params_path / --model_path / --backend: --model_path implies onnx."""
    if args.index_dir:
        return args.index_dir, "retrieval"
    if args.model_path:
        return args.model_path, "onnx" if args.backend == "auto" else args.backend
    return args.params_path, args.backend


def cmd_train(args) -> int:
    from labelwise.training.config import TrainConfig
    from labelwise.training.finetune import train

    fields = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    cfg.progress = not args.quiet
    result = train(cfg)
    print(f"best epoch {result.best_epoch}; checkpoint saved to {result.save_dir} "
          f"({result.train_samples_per_second:.1f} training samples/s)")
    return 0


def cmd_index(args) -> int:
    from labelwise.training.index import add_to_index, build_index

    if args.add:
        added, new_labels = add_to_index(args.index_dir, args.add, batch_size=args.batch_size, device=args.device,
                                         progress=not args.quiet)
        extra = f"; new labels: {', '.join(new_labels)}" if new_labels else ""
        print(f"{added} examples added to {args.index_dir}{extra}")
        return 0
    if not args.dataset_dir:
        raise LabelwiseError("--dataset_dir is needed to build an index (or --add FILE to add to one)")
    k = args.k if args.k == "auto" else _positive_int(args.k, "--k")
    clf = build_index(args.params_path, args.dataset_dir, args.index_dir, k=k, label_names=args.label_names,
                      approximate=args.approximate, batch_size=args.batch_size, device=args.device,
                      progress=not args.quiet)
    dev = clf.meta.metrics.get("dev@tuned")
    score = f"; dev micro-F1 {dev['micro_f1']:.2f} macro-F1 {dev['macro_f1']:.2f}" if dev else ""
    print(f"index of {clf.backend.vectors.shape[0]} texts written to {args.index_dir} (k {clf.backend.k}){score}")
    return 0


def _positive_int(value: str, flag: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise LabelwiseError(f"{flag} {value!r}: a positive whole number, or auto")
    return int(value)


def cmd_zeroshot(args) -> int:
    from labelwise.training.zeroshot import zero_shot

    clf = zero_shot(args.dataset_dir, args.save_dir, args.model_name, args.pooling, args.max_seq_length, args.device,
                    args.label_file)
    dev = clf.meta.metrics.get("dev@tuned") or clf.meta.metrics.get("dev@0.5")
    score = f"; dev micro-F1 {dev['micro_f1']:.2f} macro-F1 {dev['macro_f1']:.2f} (tuned thresholds)" if dev else ""
    print(f"zero-shot checkpoint saved to {args.save_dir}{score}")
    return 0


def cmd_evaluate(args) -> int:
    from labelwise.evaluation.evaluate import evaluate, format_report, write_bad_cases

    clf = _load_classifier(args)
    names = {f"{k}_file": getattr(args, f"{k}_file") for k in ("train", "dev", "test", "label")}
    ev = evaluate(clf, args.dataset_dir, args.split, args.threshold, args.batch_size, args.long_text, **names)
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
    return 0


def cmd_predict(args) -> int:
    from labelwise.evaluation.evaluate import evaluate
    from labelwise.predict.output import predict_file

    if args.ray:
        return _predict_ray(args)
    clf = _load_classifier(args)
    if args.perf:
        if not args.dataset_dir:
            raise LabelwiseError("--perf needs --dataset_dir (a folder with dev.txt and label.txt)")
        start = time.perf_counter()
        ev = evaluate(clf, args.dataset_dir, args.perf_split, args.threshold, args.batch_size, args.long_text)
        ms = 1000 * (time.perf_counter() - start) / max(1, ev.metrics["size"])
        print(f"{args.perf_split} size {ev.metrics['size']}  micro-F1 {ev.metrics['micro']['f1']:.2f}  "
              f"macro-F1 {ev.metrics['macro']['f1']:.2f}  {ms:.2f} ms/sample (batch {args.batch_size}, "
              f"{clf.backend.name})")
        return 0
    data_file = Path(args.dataset_dir) / args.data_file if args.dataset_dir else Path(args.data_file)
    predictions = predict_file(clf, data_file, args.output_file, args.with_scores, threshold=args.threshold,
                               top_k_min=args.top_k_min, top_k_max=args.top_k_max, batch_size=args.batch_size,
                               max_seq_length=args.max_seq_length, long_text=args.long_text)
    print(f"{len(predictions)} predictions written to {args.output_file}")
    return 0


def _predict_ray(args) -> int:
    from labelwise.predict.ray_batch import predict_ray

    if args.perf or args.index_dir or args.with_scores:
        raise LabelwiseError("--ray does not combine with --perf, --index_dir or --with_scores (scores are always written)")
    data_file = Path(args.dataset_dir) / args.data_file if args.dataset_dir else Path(args.data_file)
    path, backend = _model_source(args)
    result = predict_ray(path, data_file, args.output_file, num_actors=args.num_actors,
                         threads_per_actor=args.num_threads or 1, address=args.ray_address, backend=backend,
                         precision=args.precision, text_field=args.text_field, threshold=args.threshold,
                         top_k_min=args.top_k_min, top_k_max=args.top_k_max, max_seq_length=args.max_seq_length,
                         long_text=args.long_text)
    print(f"{result.rows} predictions written to {result.output}/ ({result.texts_per_second:.0f} texts/s, "
          f"{result.num_actors} actors)")
    return 0


def cmd_demo(args) -> int:
    from labelwise.cli.demo import run_demo

    run_demo(args.dataset_dir, args.work_dir, args.max_train_samples, args.epochs, progress=not args.quiet)
    return 0


def _command_options(parser: argparse.ArgumentParser, func) -> set[str]:
    """Option strings of the (sub)subcommand whose ``func`` default is ``func``; empty when none is found."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if sub.get_default("func") is func:
                    return {o for a in sub._actions for o in a.option_strings}
                found = _command_options(sub, func)
                if found:
                    return found
    return set()


def flag_message(message: str, options: set[str]) -> str:
    """Library messages name parameters as `name`; say ``--name`` where the command has that flag."""
    return re.sub(r"`([A-Za-z_][A-Za-z0-9_]*)`",
                  lambda m: f"--{m.group(1)}" if f"--{m.group(1)}" in options else m.group(1), message)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(message)s", level=logging.WARNING if args.quiet else logging.INFO)
    try:
        return args.func(args)
    except LabelwiseError as err:
        # the library names no flag; where the command has one, say which
        hint = " (--overwrite)" if isinstance(err, OutputExistsError) and "overwrite" in args else ""
        message = flag_message(str(err), _command_options(parser, getattr(args, "func", None)))
        print(f"labelwise: error: {message}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("labelwise: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
