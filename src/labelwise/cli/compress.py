"""Making a model smaller or portable: ``export`` and ``prune`` (flags in, :mod:`labelwise.compress` called)."""
from __future__ import annotations

import argparse

from labelwise.cli.options import Decision, ModelSource, RunOptions
from labelwise.compress.config import ExportConfig, PruneConfig
from labelwise.errors import LabelwiseError
from labelwise.settings import add_flags, from_args


def register(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (+ int8 / fp16) or OpenVINO (+ int8), optionally "
                                      "a Triton repository")
    add_flags(p, ModelSource, only=("params_path",))
    add_flags(p, ExportConfig)
    add_flags(p, RunOptions, only=("overwrite",), help_overrides={"overwrite": "write into --output_path even when "
              "labelwise did not write it (its files of other names stay)"})
    add_flags(p, ModelSource, only=("model_path",),
              help_overrides={"model_path": "with --triton: use this existing export folder instead of exporting "
                                            "again"})
    add_flags(p, Decision, only=("top_k_min", "hierarchy"),
              help_overrides={"top_k_min": "Triton postprocess: at least this many labels (paths, for a label tree)",
                              "hierarchy": "Triton postprocess, label trees (体育##足球): consistent = a child only "
                                           "with its parent; leaves = only the deepest labels; none = each label on "
                                           "its own (default consistent)"})
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("prune", help="smaller, faster copies of a checkpoint (fewer heads/neurons/layers), distilled")
    add_flags(p, PruneConfig)
    p.set_defaults(func=cmd_prune)


def cmd_export(args: argparse.Namespace) -> int:
    from labelwise.compress.export import export_onnx
    from labelwise.serve.triton import write_triton_repo

    from_args(ExportConfig, args).validate()
    export_dir = args.model_path
    if export_dir is None and args.format == "openvino":
        from labelwise.compress.openvino_export import export_openvino
        from labelwise.data.dataset import read_texts

        texts = read_texts(args.calibration_file)[:300] if args.calibration_file else None
        report = export_openvino(args.params_path, args.output_path, quantize=args.quantize,
                                 int8_mode=args.int8_mode, calibration_texts=texts, features=args.features,
                                 overwrite=args.overwrite)
        print(report.summary())
        return 0
    if export_dir is None:
        report = export_onnx(args.params_path, args.output_path, quantize=args.quantize, fp16=args.fp16,
                             opset=args.opset, optimize=args.optimize, features=args.features,
                             overwrite=args.overwrite)
        print(report.summary())
        export_dir = args.output_path
    elif not args.triton:
        raise LabelwiseError("--model_path is only for --triton (write a Triton repository from an export)")
    if args.triton:
        repo = write_triton_repo(export_dir, args.triton, name=args.triton_name, precision=args.triton_precision,
                                 max_batch_size=args.max_batch_size, top_k_min=args.top_k_min,
                                 device=args.triton_device, hierarchy=args.hierarchy)
        print(f"Triton model repository written to {repo} (ensemble {args.triton_name!r})")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from labelwise.compress.prune import prune

    result = prune(from_args(PruneConfig, args, progress=not args.quiet))
    print(result.table())
    print(f"pruned models written to {args.output_dir}/ ({result.seconds / 60:.1f} min)")
    return 0
