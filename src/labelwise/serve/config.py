"""ServeConfig: the service's batching and request limits (their ``labelwise serve`` flags come from these fields)."""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

from labelwise.errors import LabelwiseError
from labelwise.settings import check_fields, setting

log = logging.getLogger("labelwise")
API_KEY_ENV = "LABELWISE_API_KEY"


def _secret(**options):
    """A :func:`setting` left out of the config's repr, so that printing or logging a config never shows it."""
    field = setting(**options)
    field.repr = False
    return field


def _check_access(config: ServeConfig) -> None:
    """The key, origins and host names: refused here in one line rather than by the web framework later."""
    key = config.api_key
    if key is not None and (not key or not all(33 <= ord(c) < 127 for c in key)):
        raise LabelwiseError(f"`api_key` must be printable ASCII without spaces (it travels in an HTTP header); "
                             f"check the flag or ${API_KEY_ENV}")
    for origin in config.cors_origins:
        if origin != "*" and not re.fullmatch(r"[a-z][a-z0-9+.-]*://[^/\s]+", origin):
            raise LabelwiseError(f"`cors_origins`: {origin!r} is not an origin; write scheme://host[:port] "
                                 "without a path, such as https://app.example.com, or *")
    for host in config.allowed_hosts:
        if not host or "/" in host or "*" in host[1:] or (host.startswith("*") and host != "*"
                                                           and not host.startswith("*.")):
            raise LabelwiseError(f"`allowed_hosts`: {host!r} is not a host name; write example.com, "
                                 "*.example.com for its subdomains, or * for any")


@dataclass
class ServeConfig:
    max_batch_size: int = setting(32, help="texts per forward pass", minimum=1)
    max_wait_ms: float = setting(0.0, minimum=0,
                                 help="how long a request waits for others to batch with, on top of those already "
                                      "queued (default %(default)s; a few ms can pay off on a GPU)")
    dynamic_batching: bool = setting(True, help="run every request alone", flags=["--no_dynamic_batching"])
    max_texts: int = setting(64, help="texts per request", minimum=1)
    max_chars: int = setting(20_000, help="characters per request, all texts together", minimum=1)
    max_queue: int = setting(512, minimum=1,
                             help="texts queued or running before new requests get 503 + Retry-After")
    # beyond localhost (docs/deployment.md): the key is never printed, logged or shown by /health
    api_key: str | None = _secret(default_factory=lambda: os.environ.get(API_KEY_ENV) or None, metavar="KEY",
                                  help="require this key on every route but /health (header `Authorization: Bearer "
                                       f"KEY` or `X-API-Key: KEY`); default: ${API_KEY_ENV}, which keeps the key out "
                                       "of the process list")
    cors_origins: list[str] = setting(default_factory=list, nargs="+", metavar="ORIGIN",
                                      help="origins whose browser pages may call the service, such as "
                                           "https://app.example.com, or * for any (default: none)")
    allowed_hosts: list[str] = setting(default_factory=list, nargs="+", metavar="HOST",
                                       help="serve only requests whose Host header is one of these names "
                                            "(*.example.com for subdomains); others get 400 (default: any host)")

    def validate(self) -> "ServeConfig":
        check_fields(self)
        if self.max_queue < self.max_texts:
            raise LabelwiseError(f"`max_queue` ({self.max_queue}) must be at least `max_texts` ({self.max_texts}), "
                                 "or a full request could never be served")
        _check_access(self)
        return self

    @property
    def max_body_bytes(self) -> int:  # UTF-8 text (≤ 4 bytes a character), JSON escapes, parameters
        return 6 * self.max_chars + 200 * self.max_texts + 4096
