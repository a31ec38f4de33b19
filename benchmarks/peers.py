"""Keras 3 itself as a peer system for ``benchmarks/bench.py`` (``make bench PEERS=1``).

Runs one timed epoch of W1 (bs32, bs128), W2 or W4 under real Keras with one backend, on the
same data, seed, warm-up slice and epoch definition as bench.py, and prints the wall-clock and
CPU seconds and the peak memory (resident memory above what the process held once Keras was
imported and the data made) as one JSON line. It runs in its own venv (``.venv-peers``: keras, torch, jax,
tensorflow-cpu), one subprocess per measurement with KERAS_BACKEND set, so that bench.py can
interleave it with the other systems. Keras runs with its defaults: ``jit_compile="auto"``
(XLA on JAX and TensorFlow, eager on torch); compiling happens in the warm-up.

    python benchmarks/peers.py --backend jax --workload "W1 MLP bs128" [--threads 1] [--quick]
    python benchmarks/peers.py --backend tensorflow --check   # can this backend be imported?
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

BACKENDS = ("torch", "jax", "tensorflow")
# name -> (model kind, full data size, batch size); sizes as bench.py's workloads().
WORKLOADS = {
    "W1 MLP bs32": ("mlp", 60000, 32),
    "W1 MLP bs128": ("mlp", 60000, 128),
    "W2 convnet bs128": ("convnet", 10000, 128),
    "W4 LSTM bs64": ("lstm", 10000, 64),
}


def make_data(kind: str, n: int, seed: int = 0):
    """The workloads' random data (bench.py uses this very function)."""
    rng = np.random.default_rng(seed)
    if kind == "mlp":
        x = rng.random((n, 784), dtype=np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    elif kind == "convnet":
        x = rng.random((n, 28, 28, 1), dtype=np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    elif kind == "resnet18":
        x = rng.random((n, 32, 32, 3), dtype=np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    else:
        x = rng.integers(1, 10000, (n, 100)).astype(np.int64)
        y = rng.integers(0, 2, (n, 1)).astype(np.float32)
    return x, y


def size_of(full: int, quick: bool) -> int:
    """bench.py's data size: the full size, or 10% of it (at least 256) with --quick."""
    return max(256, int(full * (0.1 if quick else 1.0)))


def warmup_size(size: int, batch_size: int) -> int:
    """Five batches plus the epoch's last, smaller batch (as bench.py): every shape the timed
    epoch sees is compiled in the warm-up."""
    return batch_size * 5 + size % batch_size


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> int | None:
    """Start measuring peak memory: this process's resident KiB now (the baseline), with
    Linux's high-water mark reset to it; None where /proc cannot do that."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset VmHWM to the current resident size (Linux >= 4.0)
    except OSError:
        return None
    return _status_kib("VmRSS")


def peak_mib(baseline: int | None) -> float | None:
    """Peak resident memory since ``reset_peak()`` above its baseline, in MiB (or None)."""
    peak = None if baseline is None else _status_kib("VmHWM")
    return None if peak is None else (peak - baseline) / 1024


def _limit_threads(backend: str, threads: int) -> None:
    """Before importing the backend: at most ``threads`` compute threads, as bench.py's torch."""
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if backend == "jax":
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                                   f"{'true' if threads > 1 else 'false'} intra_op_parallelism_threads={threads}")
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    elif backend == "tensorflow":
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = "1"


def _import_keras(backend: str, threads: int):
    _limit_threads(backend, threads)
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    elif backend == "jax":
        import jax  # noqa: F401
    import keras

    if keras.backend.backend() != backend:
        raise RuntimeError(f"KERAS_BACKEND={backend} but keras loaded {keras.backend.backend()!r}")
    return keras


def build(keras, kind: str):
    """The workload's model, compiled as bench.py compiles lamina's."""
    layers = keras.layers
    if kind == "mlp":
        model = keras.Sequential([keras.Input((784,)), layers.Dense(128, activation="relu"),
                                  layers.Dense(128, activation="relu"), layers.Dense(10, activation="softmax")])
        loss = "categorical_crossentropy"
    elif kind == "convnet":
        model = keras.Sequential([
            keras.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
            layers.Dropout(0.5), layers.Dense(10, activation="softmax")])
        loss = "categorical_crossentropy"
    else:
        model = keras.Sequential([keras.Input((100,), dtype="int64"), layers.Embedding(10000, 64),
                                  layers.LSTM(64), layers.Dense(1, activation="sigmoid")])
        loss = "binary_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
    return model


def run(backend: str, workload: str, threads: int = 1, quick: bool = False) -> dict:
    """One measurement: a fresh model, the warm-up slice, then one timed epoch."""
    keras = _import_keras(backend, threads)
    kind, full, batch_size = WORKLOADS[workload]
    size = size_of(full, quick)
    x, y = make_data(kind, size)
    baseline = reset_peak()  # memory beyond the framework and the data: model, steps, caches
    keras.utils.set_random_seed(0)
    model = build(keras, kind)
    warm = warmup_size(size, batch_size)
    model.fit(x[:warm], y[:warm], batch_size=batch_size, epochs=1, verbose=0)
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    return {"backend": backend, "workload": workload, "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu, "keras": keras.__version__,
            "peak_mib": peak_mib(baseline)}


def check(backend: str, threads: int = 1) -> dict:
    """Whether Keras can run on ``backend`` in this interpreter, with the versions found."""
    try:
        keras = _import_keras(backend, threads)
        module = __import__({"torch": "torch", "jax": "jax", "tensorflow": "tensorflow"}[backend])
        return {"backend": backend, "ok": True, "keras": keras.__version__, "version": module.__version__}
    except Exception as error:  # noqa: BLE001 - any import failure means: skip this backend
        return {"backend": backend, "ok": False, "error": f"{type(error).__name__}: {error}"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, required=True)
    parser.add_argument("--workload", choices=sorted(WORKLOADS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--check", action="store_true", help="only report whether the backend imports")
    args = parser.parse_args(argv)
    if args.check:
        result = check(args.backend, args.threads)
    elif args.workload is None:
        parser.error("--workload is required unless --check is given")
    else:
        result = run(args.backend, args.workload, args.threads, args.quick)
    print("PEER " + json.dumps(result), flush=True)
    return 0 if result.get("ok", True) else 3


if __name__ == "__main__":
    sys.exit(main())
