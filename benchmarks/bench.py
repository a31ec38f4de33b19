"""Benchmark lamina's trainer against hand-written PyTorch loops (``make bench``).

Workloads (random float32 data, fixed seed, Keras defaults: glorot_uniform kernels, zero
biases, Adam(1e-3, epsilon=1e-7)):
  W1  MLP 784-128-128-10, categorical crossentropy + accuracy, one epoch at batch 32 and 128
  W2  convnet Conv2D(32)-MaxPool-Conv2D(64)-MaxPool-Flatten-Dropout-Dense(10), batch 128
  W3  predict with the W1 model at batch 1024 and 32
  W4  Embedding(10000, 64)-LSTM(64)-Dense(1, sigmoid), sequences of length 100, batch 64
  W5  start-up: `python -c "import lamina"` against `python -c "import torch"`
  W6  ResNet-18 (lamina.applications.ResNet18, 32x32x3 images, 10 classes) against the same
      architecture written by hand in PyTorch, batch 64, a few training steps (no lamina-jit:
      inductor takes minutes to compile it on a CPU)
Systems, interleaved (A B C A B C ...) and repeated: lamina (eager), lamina-bf16 (eager under the
"mixed_bfloat16" policy, on W2 and W6), lamina-jit
(compile(jit_compile=True): torch.compile with inductor; compiling happens in the warm-up and
is reported apart, as compile_s: the first model's, as later models of the same architecture
reuse its graphs), the lean hand-written loop (pre-made tensors, a
shuffled index, slicing, zero_grad(set_to_none=True), logits + F.cross_entropy), lean-kloss
(the same loop computing Keras's loss from probabilities, as lamina and Keras do: it separates
the cost of that formula from lamina's own), the lean loop fed by DataLoader(TensorDataset), and,
with --peers PYTHON (``make bench PEERS=1``), Keras 3 itself on W1, W2 and W4 as keras-torch,
keras-jax and keras-tensorflow (benchmarks/peers.py, one subprocess per measurement, run by
that interpreter; a backend that cannot be imported is skipped with a message). Prints a table of medians, min-max, ratios to the lean loop, steps per
second and peak memory, writes them to benchmarks/results.json and charts the ratios in
benchmarks/results.png (matplotlib). Peak memory is resident memory above what a process held
once its data was made, for one run in a fresh process (the systems sharing this process are run
once more for it, untimed; the Keras peers report theirs; W5: a fresh importing process's
whole peak). Each epoch is timed with wall-clock time and, because
the machine may be shared, also with the process's CPU time (cpu_ratio_to_lean). Before the
first system runs, the process applies lamina's host-memory setting (glibc's malloc keeps freed
memory, lamina.training.host_memory), which lamina's CPU fit would apply anyway: the lean loops,
which share the process, run with it too; --malloc-defaults measures without it.

    python benchmarks/bench.py [--quick] [--repeats N] [--threads N] [--only W1,W3] [--no-jit]
                               [--peers .venv-peers/bin/python] [--malloc-defaults]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402  (numpy only: the Keras peers' runner and the shared data)

HERE = os.path.dirname(os.path.abspath(__file__))
COMPILE_TIMES: list[float] = []  # compile time of each lamina-jit run of the current workload
CPU_TIMES: list[float] = []  # CPU seconds of the last timed run (see _timed)
PEAKS: list = []  # peak MiB of each Keras peer run (measured in its own process)


class _timed:
    """Wall-clock seconds of a block; its CPU seconds (this process) go to CPU_TIMES."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.wall
        CPU_TIMES.append(time.process_time() - self.cpu)


# --------------------------------------------------------------------------- models
def lamina_mlp(jit_compile=False):
    import lamina
    from lamina.layers import Dense

    model = lamina.Sequential([lamina.Input((784,)), Dense(128, activation="relu"),
                               Dense(128, activation="relu"), Dense(10, activation="softmax")])
    model.compile(optimizer=lamina.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=jit_compile)
    return model


def lamina_convnet(jit_compile=False):
    import lamina
    from lamina.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D

    model = lamina.Sequential([
        lamina.Input((28, 28, 1)), Conv2D(32, 3, activation="relu"), MaxPooling2D(2),
        Conv2D(64, 3, activation="relu"), MaxPooling2D(2), Flatten(), Dropout(0.5),
        Dense(10, activation="softmax")])
    model.compile(optimizer=lamina.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=jit_compile)
    return model


def lamina_lstm(jit_compile=False):
    import lamina
    from lamina.layers import LSTM, Dense, Embedding

    model = lamina.Sequential([lamina.Input((100,), dtype="int64"), Embedding(10000, 64), LSTM(64),
                               Dense(1, activation="sigmoid")])
    model.compile(optimizer=lamina.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"],
                  jit_compile=jit_compile)
    return model


def lamina_resnet18(jit_compile=False):
    import lamina

    model = lamina.applications.ResNet18(include_top=True, weights=None, input_shape=(32, 32, 3), classes=10)
    model.compile(optimizer=lamina.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=jit_compile)
    return model


def _glorot(module: torch.nn.Module) -> torch.nn.Module:
    for m in module.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            torch.nn.init.xavier_uniform_(m.weight)
            torch.nn.init.zeros_(m.bias)
    return module


class _TorchConvnet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = torch.nn.Conv2d(1, 32, 3), torch.nn.Conv2d(32, 64, 3)
        self.fc = torch.nn.Linear(1600, 10)

    def forward(self, x):  # x: (N, 28, 28, 1) channels_last, as the Keras model takes it
        x = x.permute(0, 3, 1, 2)
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = x.permute(0, 2, 3, 1).flatten(1)
        return self.fc(F.dropout(x, 0.5, self.training))


class _TorchLSTM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10000, 64)
        self.lstm = torch.nn.LSTM(64, 64, batch_first=True)
        self.fc = torch.nn.Linear(64, 1)

    def forward(self, x):
        _, (h, _) = self.lstm(self.embed(x))
        return self.fc(h[-1])


class _TorchBasicBlock(torch.nn.Module):
    """torchvision's BasicBlock: (strided) 3x3 -> 3x3, bias-free convs, BN eps 1e-5."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False),
                                                torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class _TorchResNet18(torch.nn.Module):
    """ResNet-18 as lamina.applications.ResNet18 builds it (7x7/2 stem, 3x3/2 max pool, four
    stages of two basic blocks, global average pool, Dense), on channels_last input."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(64)
        blocks, cin = [], 64
        for stage, cout in enumerate((64, 128, 256, 512)):
            blocks += [_TorchBasicBlock(cin, cout, 1 if stage == 0 else 2), _TorchBasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = torch.nn.Sequential(*blocks)
        self.fc = torch.nn.Linear(512, classes)
        for m in self.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        torch.nn.init.xavier_uniform_(self.fc.weight)
        torch.nn.init.zeros_(self.fc.bias)

    def forward(self, x):  # x: (N, 32, 32, 3) channels_last, as the Keras model takes it
        x = F.relu(self.bn1(self.conv1(x.permute(0, 3, 1, 2))))
        x = self.blocks(F.max_pool2d(x, 3, 2, 1))
        return self.fc(x.mean((2, 3)))


def torch_model(kind: str) -> torch.nn.Module:
    if kind == "mlp":
        return _glorot(torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128),
                                           torch.nn.ReLU(), torch.nn.Linear(128, 10)))
    if kind == "convnet":
        return _glorot(_TorchConvnet())
    if kind == "resnet18":
        return _TorchResNet18()
    return _TorchLSTM()


def _torch_loss(kind: str, out, y):
    if kind == "lstm":
        return F.binary_cross_entropy_with_logits(out, y)
    return F.cross_entropy(out, y.argmax(-1))


def _keras_loss(kind: str, out, y, eps=1e-7):
    """The loss as Keras (torch backend) computes it from the output activation's probabilities:
    sigmoid / softmax, renormalised, clipped to [eps, 1 - eps], then the crossentropy."""
    if kind == "lstm":
        return F.binary_cross_entropy(torch.sigmoid(out).clamp(eps, 1 - eps), y)
    probabilities = torch.softmax(out, -1)
    probabilities = probabilities / probabilities.sum(-1, keepdim=True)
    return (-(y * torch.log(probabilities.clamp(eps, 1 - eps))).sum(-1)).mean()


# --------------------------------------------------------------------------- data
make_data = peers.make_data  # one definition, shared with the Keras peers


# --------------------------------------------------------------------------- systems
def _warmup_size(size: int, batch_size: int) -> int:
    """Five batches plus the epoch's last, smaller batch: every shape the timed epoch sees is
    seen once before it (torch.compile compiles them in the warm-up, not in the timing)."""
    return batch_size * 5 + size % batch_size


def run_lamina(kind, x, y, batch_size, jit_compile=False, policy=None):
    import lamina

    lamina.mixed_precision.set_global_policy(policy or "float32")
    try:
        model = {"mlp": lamina_mlp, "convnet": lamina_convnet, "lstm": lamina_lstm,
                 "resnet18": lamina_resnet18}[kind](jit_compile)
    finally:
        lamina.mixed_precision.set_global_policy("float32")  # compile() has read it
    warm = _warmup_size(len(x), batch_size)
    model.fit(x[:warm], y[:warm], batch_size=batch_size, epochs=1, verbose=0)  # warm-up
    if jit_compile:
        COMPILE_TIMES.append(model.compile_time)
    with _timed() as timer:
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    return timer.seconds


def run_lean(kind, x, y, batch_size, loss_fn=_torch_loss):
    model = torch_model(kind)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, fused=True)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def epoch(xs, ys):
        model.train()
        order = torch.randperm(xs.shape[0])
        correct = torch.zeros(())
        for i in range(0, xs.shape[0], batch_size):
            index = order[i:i + batch_size]
            xb, yb = xs[index], ys[index]
            out = model(xb)
            loss = loss_fn(kind, out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            correct += (out.detach().argmax(-1) == yb.argmax(-1)).sum() if kind != "lstm" else 0
        return float(correct)

    warm = _warmup_size(len(x), batch_size)
    epoch(xt[:warm], yt[:warm])
    with _timed() as timer:
        epoch(xt, yt)
    return timer.seconds


def run_dataloader(kind, x, y, batch_size):
    model = torch_model(kind)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, fused=True)
    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))

    def epoch(dataset):
        for xb, yb in torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True):
            loss = _torch_loss(kind, model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    epoch(torch.utils.data.Subset(data, range(min(len(x), _warmup_size(len(x), batch_size)))))
    with _timed() as timer:
        epoch(data)
    return timer.seconds


def run_lamina_predict(kind, x, batch_size, jit_compile=False):
    model = lamina_mlp(jit_compile)
    model.predict(x[: batch_size * 2 + len(x) % batch_size], batch_size=batch_size, verbose=0)
    if jit_compile:
        COMPILE_TIMES.append(model.compile_time)
    with _timed() as timer:
        model.predict(x, batch_size=batch_size, verbose=0)
    return timer.seconds


def run_lean_predict(kind, x, batch_size):
    model = torch_model("mlp").eval()
    xt = torch.from_numpy(x)
    out = np.empty((x.shape[0], 10), dtype=np.float32)
    with _timed() as timer, torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            out[i:i + batch_size] = torch.softmax(model(xt[i:i + batch_size]), -1).numpy()
    return timer.seconds


def run_peer(python: str, backend: str, workload: str, threads: int, quick: bool) -> float:
    """One Keras measurement in a fresh ``python`` process (peers.py): its timed epoch only."""
    command = [python, os.path.join(HERE, "peers.py"), "--backend", backend, "--workload", workload,
               "--threads", str(threads)] + (["--quick"] if quick else [])
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PEER ")]
    if done.returncode or not lines:
        raise RuntimeError(f"keras-{backend} failed on {workload}:\n{done.stderr[-2000:]}")
    result = json.loads(lines[-1][5:])
    CPU_TIMES.append(result["cpu_s"])
    PEAKS.append(result.get("peak_mib"))
    return result["wall_s"]


def check_peers(python: str, threads: int) -> list[str]:
    """The Keras backends that import under ``python``; prints why the others are skipped."""
    available = []
    for backend in peers.BACKENDS:
        done = subprocess.run([python, os.path.join(HERE, "peers.py"), "--backend", backend, "--check"],
                              capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("PEER ")]
        result = json.loads(lines[-1][5:]) if lines else {"ok": False, "error": done.stderr.strip()[-300:]}
        if result["ok"]:
            available.append(backend)
            print(f"peer keras-{backend}: keras {result['keras']}, {backend} {result['version']}")
        else:
            print(f"peer keras-{backend}: SKIPPED, the backend cannot be imported in {python}: {result['error']}")
    return available


def _lamina_byte_compiled() -> bool:
    """Whether every lamina module has its byte code cached (as after a pip install).

    W5 times ``import lamina`` in new processes: without cached byte code (an editable install
    under PYTHONDONTWRITEBYTECODE=1) each start also compiles lamina's sources. ``make bench``
    runs ``compileall`` first.
    """
    import importlib.util
    import pathlib

    import lamina

    sources = pathlib.Path(lamina.__file__).parent.rglob("*.py")
    return all(os.path.exists(importlib.util.cache_from_source(str(path))) for path in sources)


def run_import(module: str) -> float:
    start = time.perf_counter()
    child_cpu = os.times()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    after = os.times()
    CPU_TIMES.append((after.children_user + after.children_system)
                     - (child_cpu.children_user + child_cpu.children_system))
    return time.perf_counter() - start


IMPORTS = {"lamina": "lamina", "lean": "torch"}  # W5's systems: what each one imports


def import_peak(module: str) -> float | None:
    """Peak resident MiB of a fresh ``python -c "import module"`` (read by the child itself
    as it ends: a parent's resource usage would count the memory the child shared before exec)."""
    code = (f"import {module}\nfor line in open('/proc/self/status'):\n"
            f"    if line.startswith('VmHWM:'): print('PEAK', int(line.split()[1]) / 1024)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PEAK ")]
    return float(lines[-1][5:]) if not done.returncode and lines else None


def measure_peak(name: str, system: str, threads: int, quick: bool, malloc_defaults: bool) -> float | None:
    """Peak memory of one run of ``system`` on ``name`` in a fresh process (``--peak-of``): MiB
    of resident memory above what the process held once the data was made (the model,
    optimizer state, batches, activations and allocator caches of the warm-up and the
    epoch). Not timed; one run per system and workload."""
    command = [sys.executable, os.path.abspath(__file__), "--peak-of", name, system,
               "--threads", str(threads)] + (["--quick"] if quick else []) + \
        (["--malloc-defaults"] if malloc_defaults else [])
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PEAK ")]
    if done.returncode or not lines:
        print(f"{name}: peak memory of {system} not measured:\n{done.stderr[-1000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1][5:])["peak_mib"]


def _peak_child(name: str, system: str, quick: bool) -> None:
    spec = workloads(quick)[name]
    systems = _systems(spec)
    baseline = peers.reset_peak()
    systems[system]()
    print("PEAK " + json.dumps({"workload": name, "system": system, "peak_mib": peers.peak_mib(baseline)}),
          flush=True)


def write_chart(rows: list[dict], path: str, title: str) -> bool:
    """A PNG of each system's time relative to the lean loop (1.0, the vertical line), per workload.
    False (and a message) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("chart skipped: matplotlib is not installed (make bench installs it)")
        return False
    names = list(dict.fromkeys(row["workload"] for row in rows))
    systems = list(dict.fromkeys(row["system"] for row in rows))
    colours = {system: plt.get_cmap("tab10")(i % 10) for i, system in enumerate(systems)}
    labels, values, bar_colours = [], [], []
    for name in names:
        for row in rows:
            if row["workload"] == name:
                labels.append(f"{name}  {row['system']}")
                values.append(row["ratio_to_lean"])
                bar_colours.append(colours[row["system"]])
    figure, axes = plt.subplots(figsize=(9, 0.28 * len(labels) + 1.2))
    positions = list(range(len(labels)))[::-1]
    axes.barh(positions, values, color=bar_colours)
    axes.set_yticks(positions, labels, fontsize=7)
    axes.set_xlim(0, max(values) * 1.12)
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xlabel("time / lean PyTorch loop (median; lower is faster)")
    axes.set_title(title, fontsize=9)
    for position, value in zip(positions, values):
        axes.text(value, position, f" {value:.2f}", va="center", fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


# --------------------------------------------------------------------------- driver
def workloads(quick: bool):
    scale = 0.1 if quick else 1.0
    n = lambda full: max(256, int(full * scale))  # noqa: E731
    return {
        "W1 MLP bs32": ("train", "mlp", n(60000), 32),
        "W1 MLP bs128": ("train", "mlp", n(60000), 128),
        "W2 convnet bs128": ("train", "convnet", n(10000), 128),
        "W3 predict bs1024": ("predict", "mlp", n(100000), 1024),
        "W3 predict bs32": ("predict", "mlp", n(100000), 32),
        "W4 LSTM bs64": ("train", "lstm", n(10000), 64),
        "W5 start-up": ("import", None, 0, 0),
        # A few steps only: ~0.2 s a step on one CPU thread. The warm-up is 5 more steps.
        "W6 ResNet-18 bs64": ("train", "resnet18", 64 * (4 if quick else 8), 64),
    }


def _systems(spec) -> dict:
    """The systems of a workload (not the Keras peers), each a function running it once."""
    mode, kind, size, batch_size = spec
    if mode == "import":
        systems = {system: (lambda m=module: run_import(m)) for system, module in IMPORTS.items()}
    elif mode == "predict":
        x, _ = make_data(kind, size)
        systems = {"lamina": lambda: run_lamina_predict(kind, x, batch_size),
                   "lamina-jit": lambda: run_lamina_predict(kind, x, batch_size, jit_compile=True),
                   "lean": lambda: run_lean_predict(kind, x, batch_size)}
    else:
        x, y = make_data(kind, size)
        systems = {"lamina": lambda: run_lamina(kind, x, y, batch_size),
                   "lamina-jit": lambda: run_lamina(kind, x, y, batch_size, jit_compile=True),
                   "lean": lambda: run_lean(kind, x, y, batch_size),
                   "lean-kloss": lambda: run_lean(kind, x, y, batch_size, loss_fn=_keras_loss),
                   "dataloader": lambda: run_dataloader(kind, x, y, batch_size)}
        if kind in ("convnet", "resnet18"):  # mixed_bfloat16: torch.autocast(bfloat16) on the CPU
            systems["lamina-bf16"] = lambda: run_lamina(kind, x, y, batch_size, policy="mixed_bfloat16")
    return systems


def measure(name, spec, repeats, jit=True, peer_python=None, peer_backends=(), threads=1, quick=False,
            malloc_defaults=False):
    mode, kind, size, batch_size = spec
    systems = _systems(spec)
    if peer_python and name in peers.WORKLOADS:
        for backend in peer_backends:
            systems[f"keras-{backend}"] = (lambda b=backend: run_peer(peer_python, b, name, threads, quick))
    if not jit or kind == "resnet18":  # inductor compiles ResNet-18's training graph for minutes on CPU
        systems.pop("lamina-jit", None)
    COMPILE_TIMES.clear()
    times = {system: [] for system in systems}
    cpu_times = {system: [] for system in systems}
    peaks = {system: [] for system in systems}
    for _ in range(repeats):  # interleaved: A B C A B C ...
        for system, fn in systems.items():
            torch.manual_seed(0)
            PEAKS.clear()
            times[system].append(fn())
            cpu_times[system].append(CPU_TIMES[-1])
            if PEAKS and PEAKS[-1] is not None:
                peaks[system].append(PEAKS[-1])
    for system in systems:  # systems sharing this process: one more run each, in its own
        if peaks[system] or system.startswith("keras-"):
            continue
        if mode == "import":
            peak = import_peak(IMPORTS[system])
        else:
            peak = measure_peak(name, system, threads, quick, malloc_defaults)
        peaks[system] = [] if peak is None else [peak]
    lean, lean_cpu = statistics.median(times["lean"]), statistics.median(cpu_times["lean"])
    rows = []
    for system, values in times.items():
        median = statistics.median(values)
        rows.append({"workload": name, "system": system, "median_s": median, "min_s": min(values),
                     "max_s": max(values), "ratio_to_lean": median / lean,
                     "cpu_median_s": statistics.median(cpu_times[system]),
                     "cpu_ratio_to_lean": statistics.median(cpu_times[system]) / lean_cpu,
                     # Later models of the same architecture reuse the first one's graphs.
                     "compile_s": max(COMPILE_TIMES) if system == "lamina-jit" else None,
                     "peak_mib": statistics.median(peaks[system]) if peaks[system] else None,
                     "steps_per_s": (size / batch_size) / median if batch_size else None})
    return rows


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10%% of the data, for a smoke run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--only", default="", help="comma-separated workload prefixes, e.g. W1,W3")
    parser.add_argument("--output", default=os.path.join(HERE, "results.json"))
    parser.add_argument("--no-jit", action="store_true", help="skip the lamina-jit system (torch.compile)")
    parser.add_argument("--peers", metavar="PYTHON", default="",
                        help="add Keras 3 (torch, jax, tensorflow backends) as systems on W1, W2 and W4, "
                             "run by this interpreter (make bench PEERS=1 uses .venv-peers/bin/python)")
    parser.add_argument("--malloc-defaults", action="store_true",
                        help="leave glibc's malloc as it is; by default the process applies lamina's "
                             "host-memory setting before the first system runs, so the lean loops "
                             "(same process) get it too")
    parser.add_argument("--chart", default=None,
                        help="PNG of the ratios to the lean loop (default: the output's path with .png)")
    parser.add_argument("--peak-of", nargs=2, metavar=("WORKLOAD", "SYSTEM"), default=None,
                        help=argparse.SUPPRESS)  # internal: one run's peak memory, in a fresh process
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from lamina.training import host_memory

    if args.malloc_defaults:
        os.environ[host_memory.OPT_OUT_ENV] = "0"
    kept = host_memory.keep_freed_host_memory()
    if args.peak_of:
        _peak_child(*args.peak_of, quick=args.quick)
        return
    selected = [p.strip() for p in args.only.split(",") if p.strip()]
    results = []
    compiled = _lamina_byte_compiled()
    print(f"torch {torch.__version__}, {args.threads} thread(s), {_cpu_name()}, "
          f"repeats={args.repeats}{' (quick)' if args.quick else ''}, "
          f"host memory kept for reuse: {kept}, lamina byte-compiled: {compiled}")
    peer_backends = check_peers(args.peers, args.threads) if args.peers else []
    print(f"{'workload':<20} {'system':<16} {'median s':>9} {'min-max s':>17} {'x lean':>7} {'cpu x':>7} "
          f"{'steps/s':>9} {'peak MiB':>9} {'compile s':>9}")
    for name, spec in workloads(args.quick).items():
        if selected and not any(name.startswith(p) for p in selected):
            continue
        try:
            rows = measure(name, spec, args.repeats, jit=not args.no_jit, peer_python=args.peers,
                           peer_backends=peer_backends, threads=args.threads, quick=args.quick,
                           malloc_defaults=args.malloc_defaults)
        except ImportError as error:  # a layer the workload needs is not in this lamina yet
            print(f"{name:<20} skipped: {error}")
            continue
        for row in rows:
            steps = f"{row['steps_per_s']:9.1f}" if row["steps_per_s"] else " " * 9
            compile_s = f"{row['compile_s']:9.2f}" if row["compile_s"] is not None else ""
            peak = f"{row['peak_mib']:9.1f}" if row["peak_mib"] is not None else f"{'-':>9}"
            print(f"{row['workload']:<20} {row['system']:<16} {row['median_s']:9.3f} "
                  f"{row['min_s']:8.3f}-{row['max_s']:<8.3f} {row['ratio_to_lean']:7.3f} "
                  f"{row['cpu_ratio_to_lean']:7.3f} {steps} {peak} {compile_s}", flush=True)
        results.extend(rows)
    meta = {"torch": torch.__version__, "threads": args.threads, "python": platform.python_version(),
            "machine": platform.machine(), "processor": _cpu_name(), "cpus": os.cpu_count(),
            "repeats": args.repeats, "quick": args.quick, "peers": peer_backends,
            "host_memory_kept": kept, "lamina_byte_compiled": compiled}
    with open(args.output, "w") as file:
        json.dump({"meta": meta, "results": results}, file, indent=2)
    print(f"wrote {args.output}")
    chart = args.chart or os.path.splitext(args.output)[0] + ".png"
    title = (f"lamina {'(quick) ' if args.quick else ''}vs a lean PyTorch loop: torch {torch.__version__}, "
             f"{args.threads} thread(s), {_cpu_name()}, medians of {args.repeats}")
    if results and write_chart(results, chart, title):
        print(f"wrote {chart}")


if __name__ == "__main__":
    main()
