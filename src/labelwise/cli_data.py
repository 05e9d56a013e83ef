"""CLI for data tools: ``doccano``, ``labelstudio``, ``data {sparse,augment,dirty}``, ``interpret {words,examples}``.

Each command only parses flags and calls the API (``labelwise.annotation``, ``labelwise.analysis.*``).
``data dirty`` and ``interpret words`` belong to ``labelwise.analysis.dirty`` and
``labelwise.analysis.interpret_words``, which add their own flags; when one is missing, its command
says so instead of breaking the others.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
from pathlib import Path

from .errors import LabelwiseError

DELEGATED = {("data", "dirty"): ("dirty", "find mislabelled training examples to re-annotate"),
             ("interpret", "words"): ("interpret_words", "which words made the model predict a label")}


def _bool(value: str) -> bool:
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _split_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--save_dir", default="./data", help="dataset folder to write (default %(default)s)")
    p.add_argument("--splits", type=float, nargs="+", default=[0.8, 0.2],
                   help="train [dev [test]] ratios summing to 1 (default 0.8 0.2)")
    p.add_argument("--is_shuffle", type=_bool, nargs="?", const=True, default=True,
                   help="shuffle before splitting (default true; --is_shuffle false keeps file order)")
    p.add_argument("--seed", type=int, default=3, help="shuffle seed (default %(default)s)")
    p.add_argument("--stratify", action="store_true",
                   help="iterative stratification: every label reaches every split in proportion")
    p.add_argument("--output_file", default=None,
                   help="instead of a dataset folder, write every example to this one file "
                        "(re-annotated dirty or support data)")
    p.add_argument("--label_file", default=None, help="with --output_file: labels must be in this label.txt")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset_dir", required=True, help="folder with train.txt, dev.txt, label.txt")
    p.add_argument("--params_path", default="checkpoint", help="checkpoint folder from `labelwise train`")
    p.add_argument("--device", default=None, help="cpu | gpu | gpu:N")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_seq_length", type=int, default=None, help="default: the model's")
    p.add_argument("--train_file", default="train.txt")
    p.add_argument("--label_file", default="label.txt")


def _aug_flags(p: argparse.ArgumentParser, strategies, default_create_n: int) -> None:
    from .analysis.augment import AUG_TYPES

    p.add_argument("--aug_strategy", choices=strategies, default="substitute")
    p.add_argument("--aug_type", choices=AUG_TYPES, default="synonym",
                   help="where substitute/insert get words: synonym (Cilin / Moby thesaurus), homonym "
                        "(Chinese pinyin), mlm (a masked LM, needs --mlm_model)")
    p.add_argument("--create_n", type=int, default=default_create_n, help="new texts per example")
    p.add_argument("--aug_percent", type=float, default=0.1, help="share of words changed (default 0.1)")
    p.add_argument("--mlm_model", default=None, help="folder of a model with a masked-LM head, for --aug_type mlm")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def register(sub) -> None:
    p = sub.add_parser("doccano", help="doccano JSONL export → dataset folder")
    p.add_argument("--doccano_file", default="doccano.jsonl", help="doccano text-classification export")
    _split_flags(p)
    p.set_defaults(func=cmd_doccano)

    p = sub.add_parser("labelstudio", help="Label Studio JSON export (choices / taxonomy) → dataset folder")
    p.add_argument("--labelstudio_file", default="label_studio.json", help="Label Studio JSON or JSON-MIN export")
    p.add_argument("--text_key", default="text", help="field of the task data holding the text")
    p.add_argument("--from_name", default=None, help="the choices/taxonomy control to read (when several)")
    _split_flags(p)
    p.set_defaults(func=cmd_labelstudio)

    data = sub.add_parser("data", help="data tools: sparse, augment, dirty").add_subparsers(
        dest="data_command", required=True, metavar="TOOL")
    p = data.add_parser("sparse", help="dev examples with little training support, and data to add for them")
    _model_flags(p)
    from .analysis.sparse import SPARSE_AUG_STRATEGIES

    _aug_flags(p, SPARSE_AUG_STRATEGIES, 1)
    p.add_argument("--annotate", action="store_true",
                   help="pick support texts from unlabelled --unlabeled_file to annotate (doccano JSONL)")
    p.add_argument("--sparse_num", type=int, default=100, help="dev examples to call sparse (default 100)")
    p.add_argument("--support_num", type=int, default=100, help="support examples to pick (default 100)")
    p.add_argument("--support_threshold", type=float, default=0.7, help="minimum cosine of a support example")
    p.add_argument("--rationale_num_sparse", type=int, default=3, help="neighbours averaged for the support score")
    p.add_argument("--rationale_num_support", type=int, default=6, help="neighbours searched per sparse example")
    p.add_argument("--dev_file", default="dev.txt")
    p.add_argument("--unlabeled_file", default="data.txt")
    p.add_argument("--sparse_file", default="sparse.txt")
    p.add_argument("--support_file", default="support.txt")
    p.add_argument("--train_output_file", default="train_sparse_aug.txt", help="train + support, when augmenting")
    p.add_argument("--output_dir", default=None, help="where the files go (default: --dataset_dir)")
    p.set_defaults(func=cmd_sparse)

    p = data.add_parser("augment", help="word-level augmentation of a training file (labels copied)")
    p.add_argument("--train_path", required=True, help="text<TAB>labels file to augment")
    p.add_argument("--aug_path", default=None, help="output file (default: aug.txt beside --train_path)")
    from .analysis.augment import AUG_STRATEGIES

    _aug_flags(p, AUG_STRATEGIES, 2)
    p.add_argument("--device", default=None, help="for --aug_type mlm")
    p.add_argument("--with_original", action="store_true", help="write the original examples first")
    p.set_defaults(func=cmd_augment)

    interpret = sub.add_parser("interpret", help="why did the model predict that: words, examples").add_subparsers(
        dest="interpret_command", required=True, metavar="KIND")
    p = interpret.add_parser("examples", help="training examples that support each prediction (feature similarity)")
    _model_flags(p)
    p.add_argument("--interpret_input_file", default="bad_case.txt",
                   help="bad_case.txt from `labelwise evaluate`, text<TAB>labels lines or bare texts")
    p.add_argument("--text", action="append", default=None, help="a text to interpret (repeatable; "
                   "replaces --interpret_input_file)")
    p.add_argument("--interpret_result_file", default="sent_interpret.txt", help="output; - for stdout")
    p.add_argument("--top_k", type=int, default=3, help="supporting examples per text")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_interpret_examples)

    parents = {"data": data, "interpret": interpret}
    for (parent, name), (module, help_text) in DELEGATED.items():
        _register_delegated(parents[parent], name, module, help_text)


# ---- delegated commands ------------------------------------------------------------------------
def _register_delegated(sub, name: str, module: str, help_text: str) -> None:
    try:
        add_arguments = importlib.import_module(f"labelwise.analysis.{module}").add_arguments
    except ImportError as err:
        # no flags to know: take every argument (even --help) and answer that the part is missing
        p = sub.add_parser(name, help=f"{help_text} (not installed)", prefix_chars="\0", add_help=False)
        p.add_argument("rest", nargs="*")
        p.set_defaults(func=functools.partial(_not_installed, module, str(err)))
        return
    p = sub.add_parser(name, help=help_text)
    add_arguments(p)
    p.set_defaults(func=functools.partial(_run_delegated, module))


def _run_delegated(module: str, args) -> int:
    return importlib.import_module(f"labelwise.analysis.{module}").run(args)


def _not_installed(module: str, reason: str, args) -> int:
    raise LabelwiseError(f"this command needs labelwise.analysis.{module}, which is not installed or "
                         f"failed to import ({reason})")


# ---- commands ----------------------------------------------------------------------------------
def _write_annotated(examples, args, source: str, skipped: int = 0) -> int:
    from .annotation import write_dataset, write_labelled

    if args.output_file:
        path = write_labelled(examples, args.output_file, args.label_file, args.overwrite, source)
        print(f"{len(examples)} examples written to {path}")
        return 0
    if args.label_file:
        raise LabelwiseError("--label_file only checks labels with --output_file")
    report = write_dataset(examples, args.save_dir, args.splits, args.is_shuffle, args.seed, args.stratify,
                           args.overwrite, source, skipped)
    print(report.summary())
    return 0


def cmd_doccano(args) -> int:
    from .annotation import read_doccano

    return _write_annotated(read_doccano(args.doccano_file), args, args.doccano_file)


def cmd_labelstudio(args) -> int:
    from .annotation import read_label_studio

    examples, skipped = read_label_studio(args.labelstudio_file, args.text_key, args.from_name)
    return _write_annotated(examples, args, args.labelstudio_file, skipped)


def cmd_sparse(args) -> int:
    from .analysis.sparse import SparseConfig, run_sparse

    fields = SparseConfig.__dataclass_fields__
    cfg = SparseConfig(**{k: v for k, v in vars(args).items() if k in fields})
    cfg.progress = not args.quiet
    print(run_sparse(cfg).summary())
    return 0


def cmd_augment(args) -> int:
    from .analysis.augment import WordAugmenter, augment_file

    aug_path = args.aug_path or str(Path(args.train_path).parent / "aug.txt")
    augmenter = WordAugmenter(args.aug_strategy, args.aug_type, args.create_n, args.aug_percent, args.seed,
                              args.mlm_model, args.device)
    report = augment_file(args.train_path, aug_path, augmenter, args.with_original, args.overwrite,
                          progress=not args.quiet)
    print(report.summary())
    return 0


def cmd_interpret_examples(args) -> int:
    from .analysis.similarity import format_interpretation, interpret_examples, read_interpret_input
    from .data import load_dataset
    from .inference import Classifier
    from .io_utils import atomic_write_text

    if args.top_k < 1:
        raise LabelwiseError(f"--top_k must be at least 1, got {args.top_k}")
    ds = load_dataset(args.dataset_dir, train_file=args.train_file, label_file=args.label_file, require=("train",))
    clf = Classifier.load(args.params_path, backend="torch", device=args.device)
    if ds.labels != clf.labels:
        raise LabelwiseError(f"{args.dataset_dir}: label.txt differs from the model's labels; interpret with "
                             "the dataset the model was trained on")
    if args.text:
        items = [(text, None) for text in args.text]
    else:
        if args.interpret_result_file != "-" and Path(args.interpret_result_file).resolve() == \
                Path(args.interpret_input_file).resolve():
            raise LabelwiseError(f"{args.interpret_result_file}: the result file is the input file; name another")
        items = read_interpret_input(args.interpret_input_file, clf.labels)
    results = interpret_examples(clf, ds.train, [t for t, _ in items], [g for _, g in items], args.top_k,
                                 args.batch_size, args.max_seq_length, progress=not args.quiet)
    if args.format == "json":
        body = json.dumps([r.to_json() for r in results], ensure_ascii=False, indent=2) + "\n"
    else:
        body = format_interpretation(results)
    if args.interpret_result_file == "-":
        sys.stdout.write(body)
    else:
        atomic_write_text(args.interpret_result_file, body)
        print(f"{len(results)} texts interpreted, top {args.top_k} supporting training examples each, "
              f"written to {args.interpret_result_file}")
    return 0
