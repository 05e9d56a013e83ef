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
# where Label Studio's own ML backends look for its address and token
LABELSTUDIO_URL_ENV, LABELSTUDIO_TOKEN_ENV = "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"


def _secret(**options):
    """A :func:`setting` left out of the config's repr, so that printing or logging a config never shows it."""
    field = setting(**options)
    field.repr = False
    return field


def _check_access(config: ServeConfig) -> None:
    """The key, origins and host names: refused here in one line rather than by the web framework later."""
    for name, env in (("api_key", API_KEY_ENV), ("labelstudio_token", LABELSTUDIO_TOKEN_ENV)):
        key = getattr(config, name)
        if key is not None and (not key or not all(33 <= ord(c) < 127 for c in key)):
            raise LabelwiseError(f"`{name}` must be printable ASCII without spaces (it travels in an HTTP header); "
                                 f"check the flag or ${env}")
    url = config.labelstudio_url
    if url is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
        raise LabelwiseError(f"`labelstudio_url`: {url!r} is not an address; write http://host:port, such as "
                             "http://localhost:8080")
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
    spin_wait: bool = setting(False, help="let the engine's threads busy-wait between passes (ONNX Runtime's "
                                          "default offline); off, they sleep and leave the cores to the HTTP loop")
    max_wait_ms: float = setting(0.0, minimum=0,
                                 help="how long a request waits for others to batch with, on top of those already "
                                      "queued (default %(default)s; a few ms can pay off on a GPU)")
    dynamic_batching: bool = setting(True, help="run every request alone", flags=["--no_dynamic_batching"])
    max_texts: int = setting(64, help="texts per request", minimum=1)
    max_chars: int = setting(20_000, help="characters per request, all texts together", minimum=1)
    max_queue: int = setting(512, minimum=1,
                             help="texts queued or running before new requests get 503 + Retry-After")
    read_timeout: float = setting(30.0, minimum=0.001,
                                  help="seconds a client has to send a request body whole, else 408 (slow "
                                       "clients hold no connection longer)")
    shutdown_timeout: float = setting(20.0, minimum=0,
                                      help="seconds a stopping server (SIGTERM) gives the requests in flight before "
                                           "it closes their connections")
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

    # Label Studio's ML-backend protocol under /labelstudio (docs/label-studio.md)
    labelstudio_from_name: str | None = setting(
        None, metavar="NAME", help="the <Choices>/<Taxonomy> of the labelling config that gets the predictions "
                                   "(default: the first)")
    labelstudio_url: str | None = setting(
        default_factory=lambda: os.environ.get(LABELSTUDIO_URL_ENV) or None, metavar="URL",
        help="Label Studio's address, to download annotations for training (default: the one Label Studio sends "
             f"when it connects; ${LABELSTUDIO_URL_ENV})")
    labelstudio_token: str | None = _secret(
        default_factory=lambda: os.environ.get(LABELSTUDIO_TOKEN_ENV) or None, metavar="TOKEN",
        help="Label Studio access token (legacy or personal) for that download (default: the one Label Studio sends "
             f"when it connects; ${LABELSTUDIO_TOKEN_ENV})")
    labelstudio_dataset_dir: str | None = setting(
        None, metavar="DIR", help="dataset whose train/dev splits retraining adds the annotations to (default: the "
                                  "served model's own dataset_dir)")
    labelstudio_runs_dir: str = setting("labelstudio-runs", metavar="DIR",
                                        help="where each retraining job writes a new folder (its data and checkpoint)")
    labelstudio_retrain_epochs: int | None = setting(None, minimum=1,
                                                     help="epochs of a retraining (default: the served model's)")
    labelstudio_retrain_every: int = setting(
        0, minimum=0, help="also retrain after this many annotation events from Label Studio's webhook (default 0: "
                           "only when training is started in Label Studio)")
    labelstudio_max_tasks: int = setting(1000, help="tasks in one /labelstudio/predict call (each text also within "
                                         "`max_chars`; they go through the model `max_texts` at a time)", minimum=1)
    labelstudio_max_mb: float = setting(64.0, help="largest request body on /labelstudio/ routes, in MB (Label "
                                        "Studio sends all tasks of a prediction or training call at once)",
                                        minimum=0.001)

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

    @property
    def body_limits(self) -> dict[str, int]:
        """Larger body limits for some path prefixes: Label Studio posts many tasks in one request."""
        return {"/labelstudio/": max(self.max_body_bytes, int(self.labelstudio_max_mb * 2**20))}


@dataclass
class ServerOptions:
    """Where ``labelwise serve`` listens, and how much it logs (the arguments of :func:`labelwise.serve.app.serve`
    beside the model and its :class:`ServeConfig`)."""

    host: str = setting("127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine only)")
    port: int = setting(8189, help="the port", minimum=1, maximum=65535)
    log_level: str = setting("info", choices=("debug", "info", "warning", "error"), help="the server's log level")
