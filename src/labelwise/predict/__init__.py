"""Classifier: texts → probabilities → labels, over a checkpoint, an ONNX export or a retrieval index."""
