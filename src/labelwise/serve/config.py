"""ServeConfig: the service's batching and request limits."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from labelwise.errors import LabelwiseError

log = logging.getLogger("labelwise")


@dataclass
class ServeConfig:
    max_batch_size: int = 32  # texts per forward pass
    max_wait_ms: float = 0.0  # how long the first waiting request waits for company (0: take what is queued)
    dynamic_batching: bool = True
    max_texts: int = 64  # per request
    max_chars: int = 20_000  # per request, all texts together
    max_queue: int = 512  # texts waiting or running; beyond it new requests get 503 + Retry-After

    def check(self) -> "ServeConfig":
        for name in ("max_batch_size", "max_texts", "max_chars", "max_queue"):
            if getattr(self, name) < 1:
                raise LabelwiseError(f"`{name}` must be at least 1")
        if self.max_queue < self.max_texts:
            raise LabelwiseError(f"`max_queue` ({self.max_queue}) must be at least `max_texts` ({self.max_texts}), "
                                 "or a full request could never be served")
        if self.max_wait_ms < 0:
            raise LabelwiseError("`max_wait_ms` must be 0 or more")
        return self

    @property
    def max_body_bytes(self) -> int:  # UTF-8 text (≤ 4 bytes a character), JSON escapes, parameters
        return 6 * self.max_chars + 200 * self.max_texts + 4096

