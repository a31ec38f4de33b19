"""Tests for lamina.serving.server: a real uvicorn server on 127.0.0.1, real HTTP requests.

One server runs as ``python -m lamina serve`` in a subprocess (the error cases and the
load test); others run in a thread of this process (multi-input, ONNX).
"""

import contextlib
import http.client
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lamina import Input, Model, Sequential
from lamina.layers import Concatenate, Dense, Embedding, Flatten
from lamina.saving import load_model

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from lamina.serving import create_app  # noqa: E402  (needs fastapi)

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _call(port, method, path, body=None, headers=None, timeout=10):
    """(status, decoded JSON or raw text) of one HTTP request."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode(errors="replace")


def _post(port, payload, **kwargs):
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return _call(port, "POST", "/v1/predict", body, {"Content-Type": "application/json"}, **kwargs)


def _wait_until_healthy(port, process=None, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"the server exited early:\n{process.stdout.read().decode(errors='replace')}")
        try:
            if _call(port, "GET", "/v1/health", timeout=2)[0] == 200:
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the server on port {port} did not answer within {timeout} s")


# ---------------------------------------------------------------------------------- subprocess server
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``python -m lamina serve`` on a small classifier with tight limits; yields (port, model, process)."""
    path = tmp_path_factory.mktemp("serve") / "classifier.lamina"
    Sequential([Input((4,), name="x"), Dense(8, activation="relu"), Dense(3, activation="softmax", name="probs")],
               name="classifier").save(path)
    port = _free_port()
    command = [sys.executable, "-m", "lamina", "serve", str(path), "--port", str(port), "--max-rows", "16",
               "--max-body-bytes", "4096", "--max-batch-size", "32", "--log-level", "warning"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_until_healthy(port, process)
        yield port, load_model(path), process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def test_server_predict_matches_model_predict(served):
    port, model, _ = served
    x = np.random.normal(size=(3, 4)).astype("float32")
    status, body = _post(port, {"inputs": x.tolist()})
    assert status == 200
    np.testing.assert_allclose(np.array(body["outputs"]), model.predict(x, verbose=0), atol=1e-6)


def test_server_accepts_inputs_keyed_by_name(served):
    port, model, _ = served
    x = np.random.normal(size=(2, 4)).astype("float32")
    status, body = _post(port, {"inputs": {"x": x.tolist()}})
    assert status == 200
    np.testing.assert_allclose(np.array(body["outputs"]), model.predict(x, verbose=0), atol=1e-6)


def test_server_health_and_metadata(served):
    port, _, _ = served
    assert _call(port, "GET", "/v1/health") == (200, {"status": "ok", "model": "classifier"})
    status, metadata = _call(port, "GET", "/v1/metadata")
    assert status == 200
    assert metadata["format"] == "lamina"
    assert metadata["inputs"] == [{"name": "x", "shape": [None, 4], "dtype": "float32"}]
    assert metadata["outputs"] == [{"name": "probs", "shape": [None, 3], "dtype": "float32"}]
    assert (metadata["max_rows"], metadata["max_body_bytes"], metadata["max_batch_size"]) == (16, 4096, 32)


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "Malformed JSON"),
    (b"", 400, "Malformed JSON"),
    (b"\xff\xfe\x00", 400, "not valid UTF-8"),
    (b'{"inputs": [[1, 2, 3, 4]]' + b"]" * 3, 400, "Malformed JSON"),
    (b"[[1, 2, 3, 4]]", 422, 'JSON object {"inputs": ...}'),
    (b'{"data": [[1, 2, 3, 4]]}', 422, "without the key inputs"),
    (b'{"inputs": [[1, 2, 3, 4]], "id": 7}', 422, "Unknown key(s) ['id']"),
    (b'{"inputs": 5}', 422, "must be a JSON array of rows"),
    (b'{"inputs": []}', 422, "has no rows"),
    (b'{"inputs": [1, 2, 3, 4]}', 422, "expects shape (None, 4)"),
    (b'{"inputs": [[1, 2, 3]]}', 422, "received an array of shape (1, 3)"),
    (b'{"inputs": [[[1, 2, 3, 4]]]}', 422, "expects shape (None, 4)"),
    (b'{"inputs": [[1, 2, 3, 4], [1, 2]]}', 422, "not a rectangular array"),
    (b'{"inputs": [["a", "b", "c", "d"]]}', 422, "strings, nulls"),
    (b'{"inputs": [[1, 2, 3, null]]}', 422, "strings, nulls"),
    (b'{"inputs": [[true, false, true, true]]}', 422, "holds booleans"),
    (b'{"inputs": [[1e60, 0, 0, 0]]}', 422, "too large for float32"),
    (b'{"inputs": {"y": [[1, 2, 3, 4]]}}', 422, "inputs are named ['x']"),
    (json.dumps({"inputs": [[0, 0, 0, 0]] * 17}).encode(), 413, "at most 16 rows"),
    (json.dumps({"inputs": [[0.123456789] * 4] * 16}).encode() + b" " * 4096, 413, "limit of 4096 bytes"),
])
def test_server_rejects_bad_requests_with_a_clear_4xx(served, body, status, message):
    port, _, process = served
    got_status, got = _post(port, body)
    assert got_status == status, got
    assert message in got["detail"]
    assert process.poll() is None


def test_server_rejects_an_oversized_chunked_body(served):
    port, _, _ = served
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/v1/predict", body=iter([b" " * 1024] * 8), encode_chunked=True,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 413
        assert "limit of 4096 bytes" in json.loads(response.read())["detail"]
    finally:
        connection.close()


@pytest.mark.parametrize("method, path, status", [("GET", "/v1/predict", 405), ("GET", "/v2/predict", 404),
                                                  ("POST", "/v1/health", 405)])
def test_server_wrong_routes(served, method, path, status):
    port, _, _ = served
    got, body = _call(port, method, path)
    assert got == status and "detail" in body


def test_server_non_finite_values_are_answered_not_crashed(served):
    port, _, _ = served
    status, body = _post(port, b'{"inputs": [[Infinity, 0, 0, 0]]}')
    assert status == 200
    assert any(math.isnan(v) or math.isinf(v) for v in body["outputs"][0])


def test_server_load_many_concurrent_clients_are_batched(served):
    """2,000 single-row requests from 32 concurrent keep-alive clients (then 200 from one
    client for comparison): no errors, every answer right, and the server batched them."""
    port, model, process = served
    rng = np.random.default_rng(0)
    bodies = rng.normal(size=(64, 1, 4)).round(4).astype("float32")
    expected = model.predict(bodies[:, 0], verbose=0)
    payloads = [json.dumps({"inputs": b.tolist()}) for b in bodies]
    before = _call(port, "GET", "/v1/stats")[1]

    def run(total, clients):
        latencies, failures, lock, counter = [], [], threading.Lock(), iter(range(total))

        def client():
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine = []
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    break
                start = time.perf_counter()
                connection.request("POST", "/v1/predict", payloads[n % 64], {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.read()
                mine.append(time.perf_counter() - start)
                if response.status != 200 or not np.allclose(json.loads(answer)["outputs"], expected[n % 64:n % 64 + 1],
                                                              atol=1e-6):
                    failures.append((response.status, answer[:200]))
            connection.close()
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        elapsed = time.perf_counter() - began
        milliseconds = np.array(latencies) * 1000
        print(f"\n{total} requests, {clients} clients: {total / elapsed:.0f} requests/s, "
              f"p50 {np.percentile(milliseconds, 50):.1f} ms, p99 {np.percentile(milliseconds, 99):.1f} ms, "
              f"{len(failures)} errors")
        return total / elapsed, failures

    loaded_throughput, failures = run(2000, 32)
    assert failures == [] and process.poll() is None
    after = _call(port, "GET", "/v1/stats")[1]
    requests, batches = after["requests"] - before["requests"], after["batches"] - before["batches"]
    print(f"batching: {requests} requests in {batches} model calls (largest {after['largest_batch']} rows)")
    assert requests == 2000
    assert batches < requests / 2 and after["largest_batch"] > 4
    single_throughput, failures = run(200, 1)
    assert failures == []
    # Batching, not just more clients, must carry the load: one client gets no better service.
    assert loaded_throughput > single_throughput


# ---------------------------------------------------------------------------------- in-thread servers
@contextlib.contextmanager
def _thread_server(app):
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.02)
        assert server.started, "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        thread.join(20)


def _two_input_model():
    numbers = Input((2,), name="numbers")
    tokens = Input((3,), dtype="int32", name="tokens")
    hidden = Concatenate()([Dense(4, activation="relu")(numbers), Flatten()(Embedding(10, 2)(tokens))])
    return Model({"numbers": numbers, "tokens": tokens},
                 {"score": Dense(1, name="score")(hidden), "probs": Dense(2, activation="softmax", name="p")(hidden)})


@pytest.fixture(scope="module")
def two_input():
    model = _two_input_model()
    with _thread_server(create_app(model, max_batch_size=8)) as port:
        yield port, model


def test_server_multi_input_named_outputs(two_input):
    port, model = two_input
    data = {"numbers": np.random.normal(size=(3, 2)).astype("float32"),
            "tokens": np.random.randint(0, 10, size=(3, 3)).astype("int32")}
    status, body = _post(port, {"inputs": {k: v.tolist() for k, v in data.items()}})
    assert status == 200 and sorted(body["outputs"]) == ["probs", "score"]
    expected = model.predict(data, verbose=0)
    for name in ("score", "probs"):
        np.testing.assert_allclose(np.array(body["outputs"][name]), expected[name], atol=1e-6)


@pytest.mark.parametrize("inputs, message", [
    ([[[0, 0]], [[1, 2, 3]]], "send them as an object"),
    ({"numbers": [[0, 0]]}, "lacks ['tokens']"),
    ({"numbers": [[0, 0]], "tokens": [[1, 2, 3]], "extra": [[1]]}, "has unknown ['extra']"),
    ({"numbers": [[0, 0], [1, 1]], "tokens": [[1, 2, 3]]}, "same number of rows"),
    ({"numbers": [[0, 0]], "tokens": [[1, 2.5, 3]]}, "expects integers of dtype int32"),
    ({"numbers": [[0, 0]], "tokens": [[1, 2, 2 ** 40]]}, "outside the range of int32"),
    ({"numbers": [[0, 0]], "tokens": [[1, 2, 99]]}, "The model could not run on these inputs"),
])
def test_server_multi_input_validation(two_input, inputs, message):
    port, _ = two_input
    status, body = _post(port, {"inputs": inputs})
    assert status == 422, body
    assert message in body["detail"]
    assert _post(port, {"inputs": {"numbers": [[0, 0]], "tokens": [[1, 2, 3]]}})[0] == 200


def test_server_serves_an_onnx_file(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from lamina.export import export_model

    model = Sequential([Input((4,), name="x"), Dense(3, name="y")])
    path = export_model(model, tmp_path / "model.onnx", verbose=False)
    x = np.random.normal(size=(5, 4)).astype("float32")
    with _thread_server(create_app(path)) as port:
        status, body = _post(port, {"inputs": x.tolist()})
        assert status == 200
        np.testing.assert_allclose(np.array(body["outputs"]), model.predict(x, verbose=0), atol=1e-5)
        metadata = _call(port, "GET", "/v1/metadata")[1]
        assert metadata["format"] == "onnx"
        assert metadata["inputs"] == [{"name": "x", "shape": [None, 4], "dtype": "float32"}]


@pytest.mark.parametrize("kwargs, match", [({"max_rows": 0}, "max_rows"), ({"max_body_bytes": 0}, "max_body_bytes"),
                                           ({"max_batch_size": 0}, "max_batch_size")])
def test_create_app_validates_limits(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_app(Sequential([Input((2,)), Dense(1)]), **kwargs)


def test_create_app_rejects_other_objects():
    with pytest.raises(TypeError, match="model file path, a lamina model or a Predictor"):
        create_app(42)
