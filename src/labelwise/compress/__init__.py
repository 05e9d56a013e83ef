"""Smaller and faster models: ONNX export (fp32 / int8 / fp16) and structured pruning with distillation."""
