"""Serving a model: ``serve`` (flags in, :func:`labelwise.serve.app.serve` called)."""
from __future__ import annotations

import argparse

from labelwise.cli.options import ModelSource
from labelwise.serve.config import ServeConfig, ServerOptions
from labelwise.settings import add_flags, from_args

SERVE_MODEL_FLAGS = ("model_path", "index_dir", "backend", "precision", "device", "num_threads")


def register(sub) -> None:
    p = sub.add_parser("serve", help="HTTP service with dynamic batching and a demo page")
    add_flags(p, ModelSource, only=SERVE_MODEL_FLAGS, defaults={"model_path": "export"},
              help_overrides={"model_path": "export folder (ONNX) or checkpoint folder (PyTorch)",
                              "index_dir": "serve a retrieval index (`labelwise index`) instead"})
    add_flags(p, ServerOptions)
    add_flags(p, ServeConfig)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from labelwise.serve.app import serve

    config = from_args(ServeConfig, args).validate()  # the host / port flags: checked by main (check_args)
    serve(args.model_path, host=args.host, port=args.port, backend=args.backend, precision=args.precision,
          device=args.device, num_threads=args.num_threads, config=config, log_level=args.log_level,
          index_dir=args.index_dir)
    return 0
