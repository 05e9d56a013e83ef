"""The HTTP service (FastAPI + dynamic batching), its demo page, and the Triton model repository."""
