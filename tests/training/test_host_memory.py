import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lamina as keras
from lamina.training import host_memory


class _FakeLibc:
    def __init__(self, result=1):
        self.calls, self.result = [], result

        def mallopt(parameter, value):  # a function: the code sets argtypes/restype on it
            self.calls.append((parameter, value))
            return self.result

        self.mallopt = mallopt


@pytest.fixture
def fresh(monkeypatch):
    """A process state where the setting was never decided, with a recording fake libc."""
    monkeypatch.setattr(host_memory, "_state", {"decided": False, "applied": False})
    for name in (host_memory.OPT_OUT_ENV, "GLIBC_TUNABLES", *host_memory._USER_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(host_memory.sys, "platform", "linux")
    monkeypatch.setattr(host_memory, "_libc_name", lambda: "glibc")
    libc = _FakeLibc()
    monkeypatch.setattr(host_memory.ctypes, "CDLL", lambda name: libc)
    return libc


def test_keep_freed_host_memory_sets_both_thresholds_once(fresh):
    assert host_memory.keep_freed_host_memory() is True
    assert host_memory.keep_freed_host_memory() is True
    assert fresh.calls == [(-3, 32 << 20), (-1, 1 << 30)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


def test_keep_freed_host_memory_reports_a_rejected_value(fresh):
    fresh.result = 0
    assert host_memory.keep_freed_host_memory() is False


@pytest.mark.parametrize("name, value", [
    ("LAMINA_KEEP_HOST_MEMORY", "0"),
    ("LAMINA_KEEP_HOST_MEMORY", "off"),
    ("MALLOC_TOP_PAD_", "1048576"),
    ("MALLOC_TRIM_THRESHOLD_", "0"),
    ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
])
def test_keep_freed_host_memory_leaves_settings_the_user_chose(fresh, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert host_memory.keep_freed_host_memory() is False
    assert fresh.calls == []


def test_keep_freed_host_memory_does_nothing_without_glibc(fresh, monkeypatch):
    monkeypatch.setattr(host_memory, "_libc_name", lambda: "")
    assert host_memory.keep_freed_host_memory() is False
    monkeypatch.setattr(host_memory, "_state", {"decided": False, "applied": False})
    monkeypatch.setattr(host_memory, "_libc_name", lambda: "glibc")
    monkeypatch.setattr(host_memory.sys, "platform", "darwin")
    assert host_memory.keep_freed_host_memory() is False
    assert fresh.calls == []


@pytest.mark.parametrize("run", ["fit", "evaluate", "predict"])
def test_cpu_steps_keep_freed_host_memory(fresh, run):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32)
    getattr(model, run)(*((x,) if run == "predict" else (x, y)), verbose=0)
    assert fresh.calls == [(-3, 32 << 20), (-1, 1 << 30)]


_FAULTS_SCRIPT = textwrap.dedent("""
    import resource
    import numpy as np
    import torch
    import lamina as keras
    from lamina import layers
    from lamina.training import host_memory

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1024, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 1024)]
    model = keras.Sequential([
        keras.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
        layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(x, y, batch_size=128, verbose=0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model.fit(x, y, batch_size=128, epochs=2, verbose=0)
    print(host_memory._state["applied"], resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _page_faults(keep: bool) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k not in host_memory._USER_SETTINGS}
    env[host_memory.OPT_OUT_ENV] = "1" if keep else "0"
    out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], env=env, capture_output=True,
                         text=True, check=True, timeout=120).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or host_memory._libc_name() != "glibc",
                    reason="mallopt is glibc's")
def test_keep_freed_host_memory_stops_a_convnet_from_faulting_its_memory_in_every_step():
    # Each step allocates and frees the same activations and gradients (MiBs each). With
    # glibc's defaults they go back to the kernel and fault in again (70-120 thousand page
    # faults in these 16 steps on the reference machine; 0-2,300 with the setting).
    applied, kept = _page_faults(keep=True)
    not_applied, default = _page_faults(keep=False)
    assert applied and not not_applied
    assert default > 20000  # the behaviour the setting exists for is there to remove
    assert kept * 10 < default
