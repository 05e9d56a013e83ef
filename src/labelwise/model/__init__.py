"""The network (encoder + pooling + linear head), encoder names, the checkpoint folder, pruning surgery."""
