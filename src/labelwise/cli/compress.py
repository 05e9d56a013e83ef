"""Making a model smaller or portable: ``export`` and ``prune`` (flags in, :mod:`labelwise.compress` called)."""
from __future__ import annotations

import argparse

from labelwise.cli.options import Decision, ModelSource, RunOptions
from labelwise.compress.config import PruneConfig
from labelwise.errors import LabelwiseError
from labelwise.serve.triton import PRECISIONS as TRITON_PRECISIONS
from labelwise.settings import add_flags, from_args


def register(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (+ int8 / fp16) or OpenVINO (+ int8), optionally "
                                      "a Triton repository")
    add_flags(p, ModelSource, only=("params_path",))
    p.add_argument("--format", choices=["onnx", "openvino"], default="onnx",
                   help="onnx (ONNX Runtime; default) or openvino (the OpenVINO runtime, CPUs; the openvino extra)")
    p.add_argument("--output_path", default="export", help="export folder to write (replaced as a whole)")
    add_flags(p, RunOptions, only=("overwrite",), help_overrides={"overwrite": "write into --output_path even when "
              "labelwise did not write it (its files of other names stay)"})
    p.add_argument("--quantize", choices=["int8"], default=None, help="also write an int8 model (CPU): "
                   "model.int8.onnx, or openvino_model.int8.xml")
    p.add_argument("--int8_mode", choices=["static", "weights"], default="static",
                   help="OpenVINO int8: static (calibrated on texts; int8 matrix products, default) or weights "
                        "(weights only, no texts needed)")
    p.add_argument("--calibration_file", default=None, help="OpenVINO int8 static: texts to calibrate on (one a "
                   "line, or a table); default the first 300 of the checkpoint's dev split")
    p.add_argument("--fp16", action="store_true", help="also write model.fp16.onnx (GPU)")
    p.add_argument("--features", action="store_true", help="add a second output, the pooled text vectors, so "
                   "`labelwise index` can embed with ONNX Runtime")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default %(default)s, at least 14)")
    p.add_argument("--no_optimize", dest="optimize", action="store_false",
                   help="keep the plain graph (default: fuse attention/layer-norm/GELU with ONNX Runtime's optimizer)")
    p.add_argument("--triton", default=None, metavar="REPO", help="also write a Triton model repository here")
    add_flags(p, ModelSource, only=("model_path",),
              help_overrides={"model_path": "with --triton: use this existing export folder instead of exporting "
                                            "again"})
    p.add_argument("--triton_precision", choices=TRITON_PRECISIONS, default="fp32",
                   help="which of the export's ONNX files goes in the repository")
    p.add_argument("--triton_name", default="cls_multi_label", help="ensemble name (default %(default)s)")
    p.add_argument("--triton_device", choices=["cpu", "gpu"], default=None,
                   help="where Triton runs the ONNX model (default: gpu for fp16, else cpu)")
    p.add_argument("--max_batch_size", type=int, default=64, help="Triton max_batch_size (default %(default)s)")
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

    export_dir = args.model_path
    if args.format == "openvino" and (args.fp16 or args.triton):
        raise LabelwiseError("--fp16 and --triton are for --format onnx (an OpenVINO export runs fp32, bf16 or int8)")
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
