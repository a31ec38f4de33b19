"""Training, evaluation and prediction on a CUDA device, checked against the CPU.

Skipped without CUDA. The suite's conftest turns TF32 off, so float32 results on the GPU
agree with the CPU's to float32 rounding.
"""

import numpy as np
import pytest
import torch

import lamina
from lamina import config
from lamina.layers import LSTM, Conv2D, Dense, Embedding, Flatten, MaxPooling2D
from lamina.training import data, trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _mlp():
    lamina.utils.set_random_seed(0)
    model = lamina.Sequential([lamina.Input((6,)), Dense(16, activation="relu"), Dense(3, activation="softmax")])
    return model


def _data(n=96):
    rng = np.random.RandomState(0)
    return rng.randn(n, 6).astype("float32"), np.eye(3, dtype="float32")[rng.randint(0, 3, n)]


def _fit_on(device, build, x, y, epochs=2, **compile_kwargs):
    config.set_device(device)
    model = build()
    model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="categorical_crossentropy",
                  metrics=["accuracy"], **compile_kwargs)
    history = model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0).history
    return model, history


def test_fit_evaluate_predict_on_cuda_match_cpu():
    x, y = _data()
    cpu, cpu_history = _fit_on("cpu", _mlp, x, y)
    gpu, gpu_history = _fit_on("cuda", _mlp, x, y)
    assert next(gpu.parameters()).is_cuda
    np.testing.assert_allclose(gpu_history["loss"], cpu_history["loss"], rtol=1e-4)
    for a, b in zip(gpu.get_weights(), cpu.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gpu.evaluate(x, y, verbose=0), cpu.evaluate(x, y, verbose=0), rtol=1e-4)
    np.testing.assert_allclose(gpu.predict(x, verbose=0), cpu.predict(x, verbose=0), rtol=1e-4, atol=1e-6)


def test_train_steps_never_synchronise_with_the_host():
    x, y = _data()
    config.set_device("cuda")
    model = _mlp()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy", "auc"])
    model.fit(x[:32], y[:32], batch_size=16, verbose=0)  # builds the model, metrics and optimizer
    batches = list(data.make_batches(x, y, batch_size=16, shuffle=True, device=torch.device("cuda")))
    torch.cuda.synchronize()
    try:  # inside: a failure to switch it on must still switch it off
        torch.cuda.set_sync_debug_mode("error")
        for batch in batches:
            model.train_step(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert np.isfinite(model.get_metrics_result()["loss"])


def test_predict_on_cuda_copies_outputs_in_chunks(monkeypatch):
    x, _ = _data(200)
    config.set_device("cpu")
    expected = _mlp().predict(x, batch_size=7, verbose=0)
    config.set_device("cuda")
    monkeypatch.setattr(trainer, "_PREDICT_CHUNK_BYTES", 3 * 7 * 3 * 4)  # every third batch
    np.testing.assert_allclose(_mlp().predict(x, batch_size=7, verbose=0), expected, rtol=1e-5, atol=1e-7)


def test_large_host_arrays_stream_through_pinned_buffers(monkeypatch):
    x, y = _data()
    _, plain = _fit_on("cuda", _mlp, x, y)
    monkeypatch.setattr(data, "STREAM_ABOVE_FREE_FRACTION", 0.0)
    batches = data.make_batches(x, y, batch_size=16, device=torch.device("cuda"))
    assert isinstance(batches, data.HostBatches)
    first = next(iter(batches))
    assert first[0].is_cuda and first[1].is_cuda
    assert all(buffer.is_pinned() for buffer in batches._buffers.values())
    model, streamed = _fit_on("cuda", _mlp, x, y)
    np.testing.assert_allclose(streamed["loss"], plain["loss"], rtol=1e-6)
    np.testing.assert_allclose(model.predict(x, batch_size=10, verbose=0),
                               model.predict(torch.from_numpy(x).cuda(), batch_size=10, verbose=0), rtol=1e-6)


def _convnet():
    lamina.utils.set_random_seed(0)
    return lamina.Sequential([lamina.Input((12, 12, 2)), Conv2D(4, 3, activation="relu"), MaxPooling2D(2),
                              Flatten(), Dense(3, activation="softmax")])


def _lstm():
    lamina.utils.set_random_seed(0)
    return lamina.Sequential([lamina.Input((7,), dtype="int64"), Embedding(20, 8), LSTM(5), Dense(3, activation="softmax")])


@pytest.mark.parametrize("build, make_x", [
    (_convnet, lambda rng, n: rng.randn(n, 12, 12, 2).astype("float32")),
    (_lstm, lambda rng, n: rng.randint(0, 20, (n, 7))),
])
def test_conv_and_lstm_train_alike_on_cuda_and_cpu(build, make_x):
    rng = np.random.RandomState(1)
    x = make_x(rng, 64)
    y = np.eye(3, dtype="float32")[rng.randint(0, 3, 64)]
    cpu, cpu_history = _fit_on("cpu", build, x, y)
    gpu, gpu_history = _fit_on("cuda", build, x, y)
    np.testing.assert_allclose(gpu_history["loss"], cpu_history["loss"], rtol=1e-4)
    np.testing.assert_allclose(gpu.predict(x, verbose=0), cpu.predict(x, verbose=0), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_on_cuda(policy):
    x, y = _data(256)
    lamina.mixed_precision.set_global_policy(policy)
    try:
        model, history = _fit_on("cuda", _mlp, x, y, epochs=5)
    finally:
        lamina.mixed_precision.set_global_policy("float32")
    assert history["loss"][-1] < history["loss"][0]
    assert all(w.dtype == np.float32 for w in model.get_weights())
    assert model.predict(x, verbose=0).dtype == np.float32


# Importing inductor warns about torch.jit deprecations; with TF32 off it may say so.
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:.*TensorFloat32 tensor cores:UserWarning",
                            "ignore:\\s*Online softmax is disabled:UserWarning",
                            "ignore:The CUDA Graph is empty:UserWarning")
def test_jit_compile_reduce_overhead_uses_cuda_graphs_and_matches_eager(monkeypatch):
    monkeypatch.delenv("LAMINA_COMPILE_BACKEND", raising=False)
    torch._dynamo.reset()
    x, y = _data(100)  # batches of 16 and a last batch of 4
    eager, eager_history = _fit_on("cuda", _mlp, x, y, epochs=3)
    graphs, graph_history = _fit_on("cuda", _mlp, x, y, epochs=3, jit_compile="reduce-overhead")
    np.testing.assert_allclose(graph_history["loss"], eager_history["loss"], rtol=1e-4)
    # predict keeps earlier batches while later ones replay the graph: they must be copies.
    np.testing.assert_allclose(graphs.predict(x, batch_size=16, verbose=0),
                               eager.predict(x, batch_size=16, verbose=0), rtol=1e-4, atol=1e-6)
    assert graphs.compile_time > 0
    assert not any(jit.failed for jit in graphs._trainer._jit.values())
    assert graphs._trainer._jit["train"].graphs
    torch._dynamo.reset()


def test_lstm_weights_share_one_cudnn_buffer_and_follow_moves():
    rng = np.random.RandomState(2)
    x, y = rng.randint(0, 20, (32, 7)), np.eye(3, dtype="float32")[rng.randint(0, 3, 32)]
    model, _ = _fit_on("cuda", _lstm, x, y, epochs=1)
    cell = model.layers[1].cell

    def shared():
        storages = {p.untyped_storage().data_ptr() for p in (cell.kernel, cell.recurrent_kernel, cell.bias)}
        return len(storages) == 1

    assert shared()
    expected = model.predict(x, verbose=0)
    model.to("cpu")
    model.to("cuda")  # new storages: the next call rebuilds the buffer
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert shared()
    assert not cell._flat_zero.any()
