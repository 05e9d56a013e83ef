"""Where a retrieval index's vectors live, and how a query finds its nearest rows there.

Every store answers one call, ``search(queries, k) -> (row numbers, similarities)``, best first, for queries
already centred and at unit length as the index's vectors are:

* :class:`ExactStore`: the vectors in the index folder (``vectors.safetensors``); one matrix product per batch.
* :class:`FaissStore`: the same vectors in a faiss HNSW graph built when the index opens (``approximate``;
  ``pip install faiss-cpu``).
* :class:`MilvusStore`: the vectors in a Milvus collection (``vector_db``): a Milvus Lite database (a local path
  ending in ``.db``, embedded in this process; ``pip install 'labelwise[milvus]'``) or a Milvus server or cluster
  (``http://host:19530``; a token, when the server wants one, comes from ``$MILVUS_TOKEN``). The code is the same
  for both; only the search structure differs: exact (FLAT) in Milvus Lite, the server's own choice (AUTOINDEX)
  on a server. One collection per index: primary key = row number, inner product on unit vectors; its
  properties record the encoder and the dimension, which are checked against the index whenever it opens.

Where a new index's vectors go (:func:`choose_vector_db`): by default, when pymilvus and milvus-lite import, into
a Milvus Lite database inside the index folder (``milvus.db``, recorded by that relative name, so the folder
moves and copies whole), else into the folder's ``vectors.safetensors``; ``"file"`` asks for the folder, a
``.db`` path or a server URI for that Milvus.

The labels of the rows stay in the index folder whatever the store (:mod:`labelwise.predict.retrieval`).
"""
from __future__ import annotations

import importlib
import logging
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np

from labelwise.errors import LabelwiseError
from labelwise.predict.search import top_k_dot

log = logging.getLogger("labelwise")

BATCH = 2000  # rows per Milvus insert / get, queries per search (well under gRPC's message limit at 1024 dims)
CONNECT_TIMEOUT = 10.0  # seconds to reach a Milvus server
ENCODER_KEY, DIM_KEY = "labelwise.encoder", "labelwise.dim"  # collection properties
# Milvus Lite's in-process gRPC server answers pymilvus's 10-second keepalive pings with GOAWAY (too_many_pings)
# and an idle client can then fail to reconnect (milvus-lite issue 334): on the loopback, no keepalive at all
LITE_GRPC = {"grpc.keepalive_time_ms": 2**31 - 1, "grpc.keepalive_permit_without_calls": False}
LITE_DB = "milvus.db"  # the Milvus Lite database inside an index folder (the default store with the extra)
FILE_STORE = "file"  # `vector_db` that asks for the vectors in the folder


class VectorStore(Protocol):
    kind: str  # exact | faiss | milvus
    where: str  # where the vectors are, as a user reads it

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest rows of each query: (row numbers [q, k] int64, similarities [q, k] float32)."""


class ExactStore:
    """Exact inner-product search over vectors held in memory."""

    kind, where = "exact", "in the folder (exact search)"

    def __init__(self, vectors: np.ndarray):
        self.vectors = vectors

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return top_k_dot(queries, self.vectors, k)


class FaissStore:
    """HNSW search (faiss) over vectors held in memory: for millions of vectors, approximately."""

    kind, where = "faiss", "in the folder (faiss HNSW search)"

    def __init__(self, vectors: np.ndarray):
        try:
            import faiss
        except ImportError:
            raise LabelwiseError("an approximate index needs faiss: pip install faiss-cpu, or 'labelwise[ann]' (or "
                                 "leave `approximate` off: exact search is fast up to about a million "
                                 "vectors)") from None
        self.vectors, self.index = vectors, faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efSearch = 100
        self.index.add(np.ascontiguousarray(vectors))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(self.vectors)))
        return ids.astype(np.int64), sims


# ---- Milvus ------------------------------------------------------------------------------------------------

def is_lite(uri: str) -> bool:
    """A Milvus Lite database (a local path), not a server URI."""
    return "://" not in uri and not uri.startswith("unix:")


def is_embedded(uri: str) -> bool:
    """A Milvus Lite database inside the index folder: an index records it by its relative name."""
    return is_lite(uri) and not os.path.isabs(uri)


def resolve_uri(index_dir: str | os.PathLike, uri: str) -> str:
    """The URI of the database an index records: its own (relative) Milvus Lite database under its folder."""
    return str(Path(index_dir).resolve() / uri) if is_embedded(uri) else uri


def milvus_installed() -> bool:
    """Whether pymilvus and milvus-lite import (the ``labelwise[milvus]`` extra)."""
    try:
        importlib.import_module("pymilvus")
        importlib.import_module("milvus_lite")
    except ImportError:
        return False
    return True


def choose_vector_db(vector_db: str | None, approximate: bool = False) -> str | None:
    """Where a new index's vectors go: None (the folder), :data:`LITE_DB` (Milvus Lite inside the folder) or a
    Milvus URI (as :func:`milvus_uri` returns it).

    ``vector_db`` None: Milvus Lite inside the folder when the extra is installed and search is not
    ``approximate`` (faiss searches the folder's vectors), else the folder; ``"file"``: the folder.
    """
    if vector_db is None:
        return LITE_DB if not approximate and milvus_installed() else None
    if str(vector_db).strip() == FILE_STORE:
        return None
    if approximate:
        raise LabelwiseError("`approximate` and `vector_db` do not combine: Milvus searches its collection itself; "
                             "choose one (or `vector_db` file)")
    return milvus_uri(vector_db)


def milvus_uri(uri: str) -> str:
    """The URI an index records: a Milvus Lite path made absolute (the index is opened from anywhere), a server
    URI as given. One line for anything Milvus would not take."""
    uri = str(uri).strip()
    if not is_lite(uri):
        if not re.match(r"((https?|tcp)://|unix:)\S+$", uri):
            raise LabelwiseError(f"`vector_db` {uri!r}: not a Milvus URI; give http://host:19530 (a Milvus server "
                                 "or cluster) or a local path ending in .db (Milvus Lite)")
        return uri
    if not uri.endswith(".db"):
        raise LabelwiseError(f"`vector_db` {uri!r}: a Milvus Lite database is a path ending in .db (e.g. milvus.db); "
                             "a Milvus server is http://host:19530")
    path = Path(uri).expanduser().resolve()
    if not path.parent.is_dir():
        raise LabelwiseError(f"`vector_db` {uri}: the folder {path.parent} does not exist; create it first")
    return str(path)


def _import_pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise LabelwiseError("an index in Milvus needs pymilvus (and milvus-lite for a local .db): "
                             "pip install 'labelwise[milvus]'") from None
    # pymilvus logs every failed call with its traceback before raising; the failures reach the user as one line
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    return pymilvus


def _unimplemented(record: logging.LogRecord) -> bool:
    """False for a call Milvus Lite's gRPC server does not implement (pymilvus asks it for a timestamp after
    creating a collection and goes on without one), which its server logs with a traceback."""
    return not (record.exc_info and isinstance(record.exc_info[1], NotImplementedError))


def release_lite(path: str | os.PathLike) -> None:
    """Stop this process's Milvus Lite server for the database at ``path``, if it runs one: it lets go of the
    database (its lock), and the next client opens what is at ``path`` then, not a folder since replaced."""
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return
    server_manager_instance.release_server(os.path.abspath(path))


def _reason(err: Exception) -> str:
    return str(getattr(err, "message", "") or err).strip().rstrip(".")


@contextmanager
def milvus_errors(uri: str, doing: str) -> Iterator[None]:
    """Milvus's exceptions as one :class:`LabelwiseError` line naming the URI and what was being done."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as err:
        raise LabelwiseError(f"Milvus at {uri}: {doing} failed ({_reason(err)})") from None


def connect(uri: str):
    """A client for ``uri`` (as :func:`milvus_uri` returns it); one line when it cannot be reached or opened."""
    pymilvus = _import_pymilvus()
    options = {}
    if is_lite(uri):
        options["grpc_options"] = LITE_GRPC
        server_log = logging.getLogger("grpc._server")
        if _unimplemented not in server_log.filters:
            server_log.addFilter(_unimplemented)
    try:
        return pymilvus.MilvusClient(uri=uri, token=os.environ.get("MILVUS_TOKEN", ""), timeout=CONNECT_TIMEOUT,
                                     **options)
    except pymilvus.exceptions.MilvusException as err:
        reason = _reason(err)
        if is_lite(uri) and reason == "Open local milvus failed":  # its lock: another process has it open
            raise LabelwiseError(f"Milvus Lite could not open {uri}: another process has it open (a running "
                                 "`labelwise serve`?) or it is not a Milvus Lite database; Milvus Lite serves one "
                                 "process at a time, a Milvus server many, and an index built with `vector_db` file "
                                 "(vectors in the folder) any number") from None
        raise LabelwiseError(f"cannot reach Milvus at {uri} ({reason}); start it, or check the URI") from None


def collection_name(index_dir: str | os.PathLike) -> str:
    """A new collection name for an index folder: its name (letters, digits, _) and a random suffix."""
    stem = re.sub(r"\W", "_", Path(index_dir).resolve().name, flags=re.ASCII)[:40]
    return f"labelwise_{stem}_{uuid.uuid4().hex[:12]}"


class MilvusStore:
    """One index's collection in Milvus: search, and the writes that building, adding and removing need."""

    kind = "milvus"

    def __init__(self, uri: str, collection: str, size: int = 0):
        self.uri, self.collection, self.size = uri, collection, size
        self.client = connect(uri)

    @property
    def where(self) -> str:
        return f"in Milvus Lite ({self.uri})" if is_lite(self.uri) else f"in Milvus at {self.uri} ({self.collection})"

    def close(self) -> None:
        """Close the client; a Milvus Lite database is let go of (:func:`release_lite`)."""
        self.client.close()
        if is_lite(self.uri):
            release_lite(self.uri)

    @classmethod
    def create(cls, uri: str, collection: str, dim: int, encoder: str) -> MilvusStore:
        """A new, empty collection for vectors of ``dim`` dimensions made by ``encoder``."""
        from pymilvus import DataType

        store = cls(uri, collection)
        client = store.client
        with milvus_errors(uri, f"creating collection {collection}"):
            if client.has_collection(collection):
                raise LabelwiseError(f"Milvus at {uri} already has a collection {collection}; labelwise does not "
                                     "write into a collection it did not create: choose another name")
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dim))
            params = client.prepare_index_params()
            params.add_index(field_name="vector", index_type="FLAT" if is_lite(uri) else "AUTOINDEX", metric_type="IP")
            client.create_collection(collection, schema=schema, index_params=params, consistency_level="Strong",
                                     properties={ENCODER_KEY: str(encoder), DIM_KEY: str(int(dim))})
        return store

    def check(self, *, size: int, dim: int, encoder: str, where: str) -> MilvusStore:
        """Refuse (one line) a collection that is gone, short of rows, or made by another encoder; load it."""
        fix = "build the index again (`labelwise index`)"
        name, client = self.collection, self.client
        with milvus_errors(self.uri, f"opening collection {name} of {where}"):
            if not client.has_collection(name):
                raise LabelwiseError(f"{where}: Milvus at {self.uri} has no collection {name} (dropped, or another "
                                     f"Milvus); {fix}")
            described = client.describe_collection(name)
            got_dim = next((int(f["params"]["dim"]) for f in described["fields"] if f["name"] == "vector"), None)
            got_encoder = described.get("properties", {}).get(ENCODER_KEY)
            if got_dim != dim or got_encoder != encoder:
                raise LabelwiseError(f"{where}: collection {name} at {self.uri} holds {got_dim}-dimensional vectors "
                                     f"of {got_encoder}, but this index uses {dim}-dimensional vectors of {encoder}; "
                                     f"the collection was made by another encoder: {fix}")
            client.load_collection(name)
            rows = self._count(size)
        if rows != size:
            raise LabelwiseError(f"{where}: collection {name} at {self.uri} holds {rows} of the index's {size} "
                                 f"vectors; {fix}")
        self.size = size
        return self

    def _count(self, below: int) -> int:
        result = self.client.query(self.collection, filter=f"id < {int(below)}", output_fields=["count(*)"])
        return int(result[0]["count(*)"])

    def insert(self, vectors: np.ndarray) -> None:
        """Append ``vectors`` as rows ``size``, ``size + 1``, …; rows at or past ``size`` (left by an add that
        stopped half way) are deleted first, so ids stay row numbers."""
        vectors = np.asarray(vectors, dtype=np.float32)
        with milvus_errors(self.uri, f"inserting into collection {self.collection}"):
            self.client.delete(self.collection, filter=f"id >= {int(self.size)}")
            for start in range(0, len(vectors), BATCH):
                chunk = vectors[start:start + BATCH]
                self.client.insert(self.collection, [{"id": self.size + start + i, "vector": row}
                                                     for i, row in enumerate(chunk)])
        self.size += len(vectors)

    def truncate(self, size: int) -> None:
        """Delete rows ``size`` and on (undoing an :meth:`insert` whose index was not written)."""
        with milvus_errors(self.uri, f"deleting from collection {self.collection}"):
            self.client.delete(self.collection, filter=f"id >= {int(size)}")
        self.size = size

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of rows ``ids``, in that order."""
        dim = None
        found: dict[int, list[float]] = {}
        with milvus_errors(self.uri, f"reading collection {self.collection}"):
            for start in range(0, len(ids), BATCH):
                for hit in self.client.get(self.collection, ids=[int(i) for i in ids[start:start + BATCH]],
                                           output_fields=["vector"]):
                    found[int(hit["id"])] = hit["vector"]
                    dim = len(hit["vector"])
        missing = [int(i) for i in ids if int(i) not in found]
        if missing:
            raise LabelwiseError(f"collection {self.collection} at {self.uri} lacks rows {missing[:5]}; build the "
                                 "index again")
        return np.asarray([found[int(i)] for i in ids], dtype=np.float32).reshape(len(ids), dim or 0)

    def drop(self) -> None:
        """Drop the collection; a failure is only logged (what it leaves is an unused collection)."""
        try:
            with milvus_errors(self.uri, f"dropping collection {self.collection}"):
                self.client.drop_collection(self.collection)
        except LabelwiseError as err:
            log.warning("%s", err)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.size)
        ids = np.zeros((len(queries), k), dtype=np.int64)
        sims = np.full((len(queries), k), -np.inf, dtype=np.float32)
        with milvus_errors(self.uri, f"searching collection {self.collection}"):
            for start in range(0, len(queries), BATCH):
                chunk = np.asarray(queries[start:start + BATCH], dtype=np.float32)
                hits = self.client.search(self.collection, data=list(chunk), limit=k, filter=f"id < {self.size}",
                                          output_fields=["id"], search_params={"metric_type": "IP"})
                for q, found in enumerate(hits, start):
                    n = len(found)  # fewer than k only in a damaged collection: the rest weigh nothing in a vote
                    ids[q, :n] = [h["id"] for h in found]
                    sims[q, :n] = [h["distance"] for h in found]
                    if 0 < n < k:
                        ids[q, n:] = ids[q, 0]
        return ids, sims


__all__ = ["FILE_STORE", "LITE_DB", "ExactStore", "FaissStore", "MilvusStore", "VectorStore", "choose_vector_db",
           "collection_name", "connect", "is_embedded", "milvus_installed", "milvus_uri", "release_lite",
           "resolve_uri"]
