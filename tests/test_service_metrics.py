"""GET /metrics: Prometheus counters that move with real requests, and a scrape that answers during overload."""
from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from labelwise.predict.classifier import Classifier
from labelwise.serve.app import ServerThread, create_app
from labelwise.serve.config import ServeConfig
from test_serving import TEXTS, SlowClassifier  # noqa: E402


@pytest.fixture(scope="module")
def classifier(untrained_zh_checkpoint):
    return Classifier.load(untrained_zh_checkpoint, device="cpu")


def scrape(client) -> dict[tuple, float]:
    """{(sample name, sorted label pairs): value} from a /metrics answer."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_with_real_requests(classifier):
    app = create_app(classifier, ServeConfig(max_texts=4, max_chars=300))
    good = [{"texts": TEXTS, "threshold": 0.5, "top_k_min": 1}, {"texts": TEXTS[:1], "threshold": 0.3},
            {"texts": TEXTS[1:], "top_k_max": 2}]
    with TestClient(app) as client:
        before = scrape(client)
        returned = []
        for body in good:
            response = client.post("/predict", json=body)
            assert response.status_code == 200
            returned += [p["labels"] for p in response.json()["predictions"]]
        paddle = client.post("/models/cls_multi_label", json={"data": {"text": TEXTS[:2]}}).json()["result"]
        returned += paddle["label"]
        assert client.post("/predict", json={"texts": ["a"] * 5}).status_code == 413
        assert client.post("/predict", json={"texts": ["fine", " "]}).status_code == 422
        assert client.get("/no/such/route").status_code == 404
        after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("labelwise_requests_total", route="/predict", status="200") == 3
    assert moved("labelwise_requests_total", route="/models/cls_multi_label", status="200") == 1
    assert moved("labelwise_requests_total", route="/predict", status="413") == 1
    assert moved("labelwise_requests_total", route="/predict", status="422") == 1
    assert moved("labelwise_requests_total", route="other", status="404") == 1
    assert moved("labelwise_texts_total", route="/predict", status="200") == 3 + 1 + 2
    assert moved("labelwise_texts_total", route="/models/cls_multi_label", status="200") == 2
    assert moved("labelwise_texts_total", route="/predict", status="413") == 5
    assert moved("labelwise_texts_total", route="/predict", status="422") == 2
    assert moved("labelwise_request_duration_seconds_count", route="/predict") == 5
    assert moved("labelwise_request_duration_seconds_sum", route="/predict") > 0
    # every text that reached the model went through one forward pass
    assert moved("labelwise_batch_texts_sum") == 8 and 1 <= moved("labelwise_batch_texts_count") <= 4
    assert value(after, "labelwise_queue_texts") == 0 and value(after, "labelwise_shed_requests_total") == 0
    # per-label counts: exactly the labels the answers carried, every label listed
    counts = Counter(label for labels in returned for label in labels)
    assert sum(counts.values()) > 0
    for label in classifier.labels:
        assert moved("labelwise_label_predictions_total", label=label) == counts[label], label
    info = [key for key in after if key[0] == "labelwise_model_info"]
    assert len(info) == 1
    fields = dict(info[0][1])
    assert fields["backend"] == "torch" and len(fields["model_version"]) == 12 and fields["labelwise_version"]


def test_apps_keep_their_own_registries(classifier):
    with TestClient(create_app(classifier)) as first, TestClient(create_app(classifier)) as second:
        assert first.post("/predict", json={"texts": ["一"]}).status_code == 200
        assert value(scrape(first), "labelwise_requests_total", route="/predict", status="200") == 1
        assert value(scrape(second), "labelwise_requests_total", route="/predict", status="200") == 0


def test_a_scrape_during_overload_answers_and_counts_the_shed_requests(classifier):
    app = create_app(SlowClassifier(classifier), ServeConfig(max_queue=4, max_texts=4, max_batch_size=4))
    with ServerThread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        scrapes, done = [], threading.Event()

        def keep_scraping():
            while not done.is_set():
                scrapes.append(http.get("/metrics"))
                time.sleep(0.05)

        watcher = threading.Thread(target=keep_scraping)
        watcher.start()
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda i: http.post("/predict", json={"texts": [f"{TEXTS[0]} {i}"]}), range(16)))
        done.set()
        watcher.join()
        final = scrape(http)
    shed = sum(a.status_code == 503 for a in answers)
    assert shed > 0 and all(a.status_code in (200, 503) for a in answers)
    assert scrapes and all(s.status_code == 200 for s in scrapes)
    depths = []
    for response in scrapes:  # every scrape parses, and saw the queue at or under its bound
        samples = {s.name: s.value for f in text_string_to_metric_families(response.text) for s in f.samples}
        depths.append(samples["labelwise_queue_texts"])
    assert max(depths) <= 4 and max(depths) > 0
    assert value(final, "labelwise_shed_requests_total") == shed
    assert value(final, "labelwise_requests_total", route="/predict", status="503") == shed
    assert value(final, "labelwise_requests_total", route="/predict", status="200") == 16 - shed
