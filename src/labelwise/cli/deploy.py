"""`labelwise export` and `labelwise serve`: flags in, the deployment API called, nothing else."""
from __future__ import annotations

import argparse

from labelwise.errors import LabelwiseError

PRECISIONS = ("fp32", "int8", "fp16")


def register(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (+ int8 / fp16), optionally a Triton repository")
    p.add_argument("--params_path", default="checkpoint", help="checkpoint folder from `labelwise train`")
    p.add_argument("--output_path", default="export", help="export folder to write (replaced as a whole)")
    p.add_argument("--quantize", choices=["int8"], default=None, help="also write model.int8.onnx (CPU)")
    p.add_argument("--fp16", action="store_true", help="also write model.fp16.onnx (GPU)")
    p.add_argument("--features", action="store_true",
                   help="add a second output, the pooled text vectors, so `labelwise index` can embed with ONNX Runtime")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default %(default)s, at least 14)")
    p.add_argument("--no_optimize", dest="optimize", action="store_false",
                   help="keep the plain graph (default: fuse attention/layer-norm/GELU with ONNX Runtime's optimizer)")
    p.add_argument("--triton", default=None, metavar="REPO", help="also write a Triton model repository here")
    p.add_argument("--model_path", default=None,
                   help="with --triton: use this existing export folder instead of exporting again")
    p.add_argument("--triton_precision", choices=PRECISIONS, default="fp32", help="ONNX file put in the repository")
    p.add_argument("--triton_name", default="cls_multi_label", help="ensemble name (default %(default)s)")
    p.add_argument("--triton_device", choices=["cpu", "gpu"], default=None,
                   help="where Triton runs the ONNX model (default: gpu for fp16, else cpu)")
    p.add_argument("--max_batch_size", type=int, default=64, help="Triton max_batch_size (default %(default)s)")
    p.add_argument("--top_k_min", type=int, default=0, help="Triton postprocess: at least this many labels")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("prune", help="smaller, faster copies of a checkpoint (fewer heads/neurons/layers), distilled")
    p.add_argument("--params_path", "--params_dir", dest="params_path", default="checkpoint",
                   help="the fine-tuned checkpoint to prune (default %(default)s)")
    p.add_argument("--dataset_dir", required=True, help="folder with train.txt, dev.txt, label.txt")
    p.add_argument("--output_dir", default="prune", help="one folder per shape goes here (default %(default)s)")
    p.add_argument("--width_mult_list", nargs="+", default=["3/4", "1/2"], metavar="RATIO",
                   help="share of attention heads and FFN neurons kept, e.g. 3/4 1/2 (ratio × heads must be whole; "
                        "default %(default)s)")
    p.add_argument("--depth_mult_list", nargs="+", default=["1"], metavar="RATIO",
                   help="share of layers kept (the most useful ones), e.g. 1/2; every width × depth is trained "
                        "(default %(default)s)")
    p.add_argument("--learning_rate", type=float, default=3e-5, help="default %(default)s")
    p.add_argument("--per_device_train_batch_size", "--batch_size", dest="batch_size", type=int, default=32)
    p.add_argument("--per_device_eval_batch_size", dest="eval_batch_size", type=int, default=32)
    p.add_argument("--num_train_epochs", "--epochs", dest="epochs", type=int, default=10,
                   help="default %(default)s (PaddleNLP's); on a CPU 3 did, see docs/pruning.md")
    p.add_argument("--max_seq_length", type=int, default=None, help="default: the checkpoint's")
    p.add_argument("--logging_steps", type=int, default=5)
    p.add_argument("--save_steps", type=int, default=100, help="evaluate every shape (and keep its best) this often")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--device", default=None, help="cpu | gpu | gpu:N (default: GPU when there is one)")
    p.add_argument("--max_train_samples", type=int, default=None, help="distil on a random subset of train")
    p.add_argument("--max_dev_samples", type=int, default=None, help="rank and evaluate on a random subset of dev")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("serve", help="HTTP service with dynamic batching and a demo page")
    p.add_argument("--model_path", default="export", help="export folder (ONNX) or checkpoint folder (PyTorch)")
    p.add_argument("--index_dir", default=None, help="serve a retrieval index (`labelwise index`) instead")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="which ONNX file of the export")
    p.add_argument("--device", default=None, help="cpu | gpu | gpu:N")
    p.add_argument("--num_threads", type=int, default=None, help="CPU threads for inference")
    p.add_argument("--host", default="127.0.0.1", help="default %(default)s (this machine only)")
    p.add_argument("--port", type=int, default=8189)
    p.add_argument("--max_batch_size", type=int, default=32, help="texts per forward pass (default %(default)s)")
    p.add_argument("--max_wait_ms", type=float, default=0.0,
                   help="how long a request waits for others to batch with, on top of those already queued "
                        "(default %(default)s; a few ms can pay off on a GPU)")
    p.add_argument("--no_dynamic_batching", action="store_true", help="run every request alone")
    p.add_argument("--max_texts", type=int, default=64, help="texts per request (default %(default)s)")
    p.add_argument("--max_chars", type=int, default=20000, help="characters per request (default %(default)s)")
    p.add_argument("--max_queue", type=int, default=512,
                   help="texts queued or running before new requests get 503 + Retry-After (default %(default)s)")
    p.add_argument("--log_level", choices=["debug", "info", "warning", "error"], default="info")
    p.set_defaults(func=cmd_serve)


def cmd_export(args: argparse.Namespace) -> int:
    from labelwise.compress.export import export_onnx
    from labelwise.serve.triton import write_triton_repo

    export_dir = args.model_path
    if export_dir is None:
        report = export_onnx(args.params_path, args.output_path, quantize=args.quantize, fp16=args.fp16,
                             opset=args.opset, optimize=args.optimize, features=args.features)
        print(report.summary())
        export_dir = args.output_path
    elif not args.triton:
        raise LabelwiseError("--model_path is only for --triton (write a Triton repository from an export)")
    if args.triton:
        repo = write_triton_repo(export_dir, args.triton, name=args.triton_name, precision=args.triton_precision,
                                 max_batch_size=args.max_batch_size, top_k_min=args.top_k_min,
                                 device=args.triton_device)
        print(f"Triton model repository written to {repo} (ensemble {args.triton_name!r})")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from labelwise.compress.prune import PruneConfig, prune

    fields = PruneConfig.__dataclass_fields__
    result = prune(PruneConfig(**{k: v for k, v in vars(args).items() if k in fields}, progress=not args.quiet))
    print(result.table())
    print(f"pruned models written to {args.output_dir}/ ({result.seconds / 60:.1f} min)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from labelwise.serve.app import serve
    from labelwise.serve.config import ServeConfig

    config = ServeConfig(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                         dynamic_batching=not args.no_dynamic_batching, max_texts=args.max_texts,
                         max_chars=args.max_chars, max_queue=args.max_queue).check()
    serve(args.model_path, host=args.host, port=args.port, backend=args.backend, precision=args.precision,
          device=args.device, num_threads=args.num_threads, config=config, log_level=args.log_level,
          index_dir=args.index_dir)
    return 0
