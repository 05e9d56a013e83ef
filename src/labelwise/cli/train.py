"""Making a model: ``train``, ``adapt``, ``zeroshot`` and ``index`` (flags in, the training API called, nothing else)."""
from __future__ import annotations

from dataclasses import dataclass

from labelwise.cli.options import DatasetFiles, LabelPaths, ModelSource, RunOptions
from labelwise.data.tables import TableColumns
from labelwise.errors import LabelwiseError
from labelwise.settings import add_flags, from_args, setting
from labelwise.training.config import AdaptConfig, TrainConfig

ZEROSHOT_FLAGS = ("dataset_dir", "save_dir", "overwrite", "model_name", "pooling", "max_seq_length", "device",
                  "label_file", "hierarchy_sep")


@dataclass
class IndexOptions:
    """What ``labelwise index`` does beside reading a model and a dataset: build, add to or take from an index."""

    add: str | None = setting(None, metavar="FILE", help="instead: add FILE's examples (train.txt format, new labels "
                              "allowed) to --index_dir")
    k: str = setting("auto", help="neighbours that vote (default auto: 5, 10, 20 or 50, best on dev)")
    label_names: bool = setting(True, flags=["--no_label_names"],
                                help="do not index each label's name as a text with that label")
    approximate: bool = setting(False, help="HNSW search (faiss-cpu) for millions of vectors")
    vector_db: str | None = setting(None, metavar="URI",
                                    help="where the vectors go: file (the folder), a Milvus Lite database elsewhere "
                                         "(path/milvus.db) or a Milvus server (http://host:19530); default: Milvus "
                                         "Lite inside --index_dir when pymilvus and milvus-lite are installed (pip "
                                         "install 'labelwise[milvus]'), else file")
    remove_label: str | None = setting(None, metavar="NAME", help="instead: take label NAME out of --index_dir (rows "
                                       "with no other label go)")


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune an encoder on a dataset folder")
    add_flags(p, TrainConfig)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("adapt", help="continue pre-training an encoder on unlabelled texts (domain adaptation)")
    add_flags(p, AdaptConfig)
    p.set_defaults(func=cmd_adapt)

    p = sub.add_parser("zeroshot", help="a classifier from label names alone (no labelled examples)")
    add_flags(p, TrainConfig, only=ZEROSHOT_FLAGS,
              help_overrides={"dataset_dir": "folder with label.txt (and dev.txt to tune thresholds)",
                              "save_dir": "where the checkpoint goes", "model_name": "a sentence encoder"})
    add_flags(p, LabelPaths, only=("label_naming",))
    p.set_defaults(func=cmd_zeroshot)

    p = sub.add_parser("index", help="a retrieval index: labels from the nearest labelled texts, no training")
    add_flags(p, ModelSource, only=("params_path", "index_dir", "batch_size", "device"),
              defaults={"params_path": None, "index_dir": "index"},
              help_overrides={"params_path": "checkpoint folder or sentence encoder whose vectors to index "
                                             "(default: m3e-small for Chinese texts, all-minilm-l6-v2 for others)",
                              "index_dir": "index folder to write"})
    add_flags(p, DatasetFiles, only=("dataset_dir",),
              help_overrides={"dataset_dir": "train.txt (indexed), label.txt, dev.txt (picks k, thresholds)"})
    add_flags(p, TableColumns)
    add_flags(p, IndexOptions)
    add_flags(p, LabelPaths, only=("hierarchy_sep",), defaults={"hierarchy_sep": "auto"},
              help_overrides={"hierarchy_sep": "separator of label paths (体育##足球: a tree); auto: the one "
                                               "--params_path was trained with, ## for a sentence encoder; none: "
                                               "flat names (--add and --remove_label use the index's own)"})
    add_flags(p, RunOptions, only=("overwrite",), help_overrides={"overwrite": "write into --index_dir even when "
              "labelwise did not write it (its files of other names stay)"})
    p.set_defaults(func=cmd_index)

def cmd_train(args) -> int:
    from labelwise.training.finetune import train

    result = train(from_args(TrainConfig, args, progress=not args.quiet))
    print(f"best epoch {result.best_epoch}; checkpoint saved to {result.save_dir} "
          f"({result.train_samples_per_second:.1f} training samples/s)")
    return 0


def cmd_adapt(args) -> int:
    from labelwise.training.adapt import adapt

    result = adapt(from_args(AdaptConfig, args))
    print(f"adapted encoder saved to {result.folder} ({result.info['steps']} steps, {result.info['minutes']} min); "
          f"train on it with --model_name {result.folder}")
    return 0


def cmd_zeroshot(args) -> int:
    from labelwise.training.zeroshot import zero_shot

    clf = zero_shot(args.dataset_dir, args.save_dir, args.model_name, args.pooling, args.max_seq_length, args.device,
                    args.label_file, overwrite=args.overwrite, hierarchy_sep=args.hierarchy_sep,
                    label_naming=args.label_naming)
    dev = clf.meta.metrics.get("dev@tuned") or clf.meta.metrics.get("dev@0.5")
    score = f"; dev micro-F1 {dev['micro_f1']:.2f} macro-F1 {dev['macro_f1']:.2f} (tuned thresholds)" if dev else ""
    print(f"zero-shot checkpoint saved to {args.save_dir}{score}")
    return 0


def cmd_index(args) -> int:
    from labelwise.training.index import add_to_index, build_index, remove_label

    if args.remove_label:
        removed, relabelled = remove_label(args.index_dir, args.remove_label)
        print(f"{args.remove_label} removed from {args.index_dir}: {removed} examples removed, {relabelled} keep "
              "their other labels")
        return 0
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
                      approximate=args.approximate, vector_db=args.vector_db, batch_size=args.batch_size,
                      device=args.device, progress=not args.quiet, overwrite=args.overwrite,
                      hierarchy_sep=args.hierarchy_sep, columns=from_args(TableColumns, args))
    dev = clf.meta.metrics.get("dev@tuned")
    score = f"; dev micro-F1 {dev['micro_f1']:.2f} macro-F1 {dev['macro_f1']:.2f}" if dev else ""
    print(f"index of {clf.backend.size} texts written to {args.index_dir} (k {clf.backend.k}){score}; vectors "
          f"{clf.backend.store.where}")
    return 0


def _positive_int(value: str, flag: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise LabelwiseError(f"{flag} {value!r}: a positive whole number, or auto")
    return int(value)
