"""The benchmark suite on a GPU: lamina against hand-written PyTorch at GPU sizes.

Workloads (bench.py's models and random data, larger where a GPU needs it to be busy):
  W1  MLP 784-128-128-10, 60,000 samples, one epoch at batch 32, 128 and 1024
  W2  convnet, 60,000 samples, batch 128
  W3  predict with the W1 model: 1,000,000 samples at batch 1024, 100,000 at batch 32
  W4  Embedding-LSTM(64)-Dense, 10,000 sequences of length 100, batch 64 (cuDNN LSTM)
  W6  ResNet-18 at full size (224x224x3, 1000 classes), batch 64, 30 steps, in float32 and
      under mixed precision (bfloat16 and float16 autocast)
Systems, interleaved and repeated, each timed between torch.cuda.synchronize() calls:
  lean             the hand-written loop on tensors already on the GPU (index, slice, step)
  dataloader-pin   the loop fed by DataLoader(TensorDataset, pin_memory=True) with
                   non_blocking host-to-device copies (the PyTorch tutorial recipe)
  lamina           model.fit on NumPy arrays (lamina moves them to the GPU once)
  lamina-stream    model.fit with the arrays kept in host memory and streamed through
                   pinned buffers (what lamina does when data would crowd the GPU)
  lamina-jit       compile(jit_compile=True): torch.compile (inductor)
  lamina-graphs    compile(jit_compile="reduce-overhead"): torch.compile replayed as CUDA graphs
  *-bf16/-fp16     the same under mixed precision (lean: torch.autocast; lamina:
                   mixed_precision.set_global_policy("mixed_bfloat16" / "mixed_float16"))
Compile time (first model of each architecture and mode) is reported apart; the timed
epoch follows a warm-up that compiles every batch shape. Peak GPU memory per run is
torch.cuda.max_memory_allocated. Results go to the terminal and to a JSON file.

    python benchmarks/bench_gpu.py [--quick] [--repeats N] [--only W1,W6] [--budget SECONDS]
                                   [--output FILE] [--device cuda] [--skip lamina-jit]
                                   [--profile lstm:64,resnet18-224:64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the models, losses and data of the CPU suite)

DEVICE = torch.device("cuda")
COMPILE: dict[str, float] = {}  # system -> compile seconds of its first model
PEAK: list[int] = []  # peak GPU bytes of the last run


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


class _timed:
    def __enter__(self):
        _sync()
        if DEVICE.type == "cuda":
            torch.cuda.reset_peak_memory_stats(DEVICE)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        _sync()
        self.seconds = time.perf_counter() - self.start
        PEAK.append(torch.cuda.max_memory_allocated(DEVICE) if DEVICE.type == "cuda" else 0)


def _policy(precision: str):
    import lamina

    lamina.mixed_precision.set_global_policy({"fp32": "float32", "bf16": "mixed_bfloat16",
                                              "fp16": "mixed_float16"}[precision])


def lamina_model(kind: str, jit_compile=False):
    import lamina

    if kind == "resnet18-224":
        model = lamina.applications.ResNet18(include_top=True, weights=None, input_shape=(224, 224, 3), classes=1000)
        model.compile(optimizer=lamina.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=jit_compile)
        return model
    return {"mlp": bench.lamina_mlp, "convnet": bench.lamina_convnet, "lstm": bench.lamina_lstm}[kind](jit_compile)


def torch_model(kind: str) -> torch.nn.Module:
    if kind == "resnet18-224":
        return bench._TorchResNet18(classes=1000)
    return bench.torch_model(kind)


def make_data(kind: str, n: int):
    if kind == "resnet18-224":
        rng = np.random.default_rng(0)
        x = rng.random((n, 224, 224, 3), dtype=np.float32)
        return x, np.eye(1000, dtype=np.float32)[rng.integers(0, 1000, n)]
    return bench.make_data(kind, n)


def _warm(n: int, batch_size: int) -> int:
    return min(n, bench._warmup_size(n, batch_size))


def run_lamina(kind, x, y, batch_size, jit_compile=False, precision="fp32", stream=False, label="lamina"):
    from lamina.training import data

    _policy(precision)
    saved = data.STREAM_ABOVE_FREE_FRACTION
    data.STREAM_ABOVE_FREE_FRACTION = 0.0 if stream else saved
    try:
        model = lamina_model(kind, jit_compile)
        model.fit(x[:_warm(len(x), batch_size)], y[:_warm(len(x), batch_size)], batch_size=batch_size,
                  epochs=1, verbose=0)
        if jit_compile:
            COMPILE.setdefault(label, model.compile_time)
        with _timed() as timer:
            model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    finally:
        data.STREAM_ABOVE_FREE_FRACTION = saved
        _policy("fp32")
    return timer.seconds


def _autocast(precision):
    if precision == "fp32":
        return torch.autocast(DEVICE.type, enabled=False)
    return torch.autocast(DEVICE.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def run_lean(kind, x, y, batch_size, precision="fp32"):
    model = torch_model(kind).to(DEVICE)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, fused=True)
    scaler = torch.amp.GradScaler(DEVICE.type, enabled=precision == "fp16")
    # The data goes to the GPU once, inside the timing (as lamina moves it).

    def epoch(xh, yh):
        xs, ys = torch.from_numpy(xh).to(DEVICE), torch.from_numpy(yh).to(DEVICE)
        model.train()
        order = torch.randperm(xs.shape[0], device=DEVICE)
        correct = torch.zeros((), device=DEVICE)
        for i in range(0, xs.shape[0], batch_size):
            index = order[i:i + batch_size]
            xb, yb = xs[index], ys[index]
            with _autocast(precision):
                out = model(xb)
            loss = bench._torch_loss(kind.split("-")[0], out.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if kind != "lstm":
                correct += (out.detach().argmax(-1) == yb.argmax(-1)).sum()
        return correct

    warm = _warm(len(x), batch_size)
    epoch(x[:warm], y[:warm])
    with _timed() as timer:
        epoch(x, y)
    return timer.seconds


def run_dataloader(kind, x, y, batch_size):
    model = torch_model(kind).to(DEVICE)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, fused=True)
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))

    def epoch(data):
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True,
                                             pin_memory=DEVICE.type == "cuda")
        for xb, yb in loader:
            xb, yb = xb.to(DEVICE, non_blocking=True), yb.to(DEVICE, non_blocking=True)
            loss = bench._torch_loss(kind.split("-")[0], model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    epoch(torch.utils.data.Subset(dataset, range(_warm(len(x), batch_size))))
    with _timed() as timer:
        epoch(dataset)
    return timer.seconds


def run_lamina_predict(x, batch_size, jit_compile=False, label="lamina"):
    model = lamina_model("mlp", jit_compile)
    model.predict(x[:batch_size * 3 + len(x) % batch_size], batch_size=batch_size, verbose=0)
    if jit_compile:
        COMPILE.setdefault(label, model.compile_time)
    with _timed() as timer:
        out = model.predict(x, batch_size=batch_size, verbose=0)
    assert out.shape == (len(x), 10)
    return timer.seconds


def run_lean_predict(x, batch_size):
    model = torch_model("mlp").to(DEVICE).eval()
    with _timed() as timer, torch.inference_mode():
        xs = torch.from_numpy(x).to(DEVICE)
        out = torch.empty((len(x), 10), device=DEVICE)
        for i in range(0, len(x), batch_size):
            out[i:i + batch_size] = torch.softmax(model(xs[i:i + batch_size]), -1)
        result = out.cpu().numpy()
    assert result.shape == (len(x), 10)
    return timer.seconds


def workloads(quick: bool):
    n = (lambda full: max(512, full // 20)) if quick else (lambda full: full)  # noqa: E731
    return {
        "W1 MLP bs32": ("train", "mlp", n(60000), 32, ("jit", "graphs", "stream")),
        "W1 MLP bs128": ("train", "mlp", n(60000), 128, ("jit", "graphs", "stream")),
        "W1 MLP bs1024": ("train", "mlp", n(60000), 1024, ("stream",)),
        "W2 convnet bs128": ("train", "convnet", n(60000), 128, ("jit", "stream")),
        "W3 predict bs1024": ("predict", "mlp", n(1000000), 1024, ()),
        "W3 predict bs32": ("predict", "mlp", n(100000), 32, ("graphs",)),
        "W4 LSTM bs64": ("train", "lstm", n(10000), 64, ()),
        "W6 ResNet-18 224 bs64": ("train", "resnet18-224", 64 * (4 if quick else 30), 64, ("stream", "amp")),
    }


def systems_for(spec):
    mode, kind, size, batch_size, extras = spec
    if mode == "predict":
        x, _ = make_data(kind, size)
        systems = {"lean": lambda: run_lean_predict(x, batch_size),
                   "lamina": lambda: run_lamina_predict(x, batch_size)}
        if "graphs" in extras:
            systems["lamina-graphs"] = lambda: run_lamina_predict(x, batch_size, "reduce-overhead", "lamina-graphs")
        return systems
    x, y = make_data(kind, size)
    systems = {"lean": lambda: run_lean(kind, x, y, batch_size),
               "dataloader-pin": lambda: run_dataloader(kind, x, y, batch_size),
               "lamina": lambda: run_lamina(kind, x, y, batch_size)}
    if kind == "resnet18-224":
        systems.pop("dataloader-pin")
    if "stream" in extras:
        systems["lamina-stream"] = lambda: run_lamina(kind, x, y, batch_size, stream=True)
    if "jit" in extras:
        systems["lamina-jit"] = lambda: run_lamina(kind, x, y, batch_size, True, label="lamina-jit")
    if "graphs" in extras:
        systems["lamina-graphs"] = lambda: run_lamina(kind, x, y, batch_size, "reduce-overhead",
                                                      label="lamina-graphs")
    if "amp" in extras:
        for precision in ("bf16", "fp16"):
            systems[f"lean-{precision}"] = lambda p=precision: run_lean(kind, x, y, batch_size, precision=p)
            systems[f"lamina-{precision}"] = lambda p=precision: run_lamina(kind, x, y, batch_size, precision=p)
    return systems


def measure(name, spec, repeats, skip=()):
    systems = {k: v for k, v in systems_for(spec).items() if k not in skip}
    times = {s: [] for s in systems}
    peaks = {s: [] for s in systems}
    for _ in range(repeats):
        for system, fn in systems.items():
            torch.manual_seed(0)
            times[system].append(fn())
            peaks[system].append(PEAK[-1])
    lean = statistics.median(times["lean"])
    _, kind, size, batch_size, _ = spec
    rows = []
    for system, values in times.items():
        median = statistics.median(values)
        lean_ref = statistics.median(times["lean-" + system.split("-")[-1]]) \
            if system.startswith("lamina-") and "lean-" + system.split("-")[-1] in times else lean
        rows.append({"workload": name, "system": system, "median_s": median, "min_s": min(values),
                     "max_s": max(values), "ratio_to_lean": median / lean,
                     "ratio_to_same_precision_lean": median / lean_ref,
                     "steps_per_s": (size / batch_size) / median, "peak_mib": max(peaks[system]) / 2**20,
                     "compile_s": COMPILE.get(system)})
    return rows


def profile_steps(kind: str, batch_size: int, steps: int = 5) -> dict:
    """Per training step, lean against lamina: CUDA kernels launched, GPU busy time, wall
    time, and the operators whose host time differs most (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    x, y = make_data(kind, batch_size * (steps + 3))
    xs, ys = torch.from_numpy(x).to(DEVICE), torch.from_numpy(y).to(DEVICE)
    batches = [(xs[i * batch_size:(i + 1) * batch_size], ys[i * batch_size:(i + 1) * batch_size])
               for i in range(steps + 3)]
    lean = torch_model(kind).to(DEVICE)
    optimizer = torch.optim.Adam(lean.parameters(), lr=1e-3, eps=1e-7, fused=True)

    def lean_step(xb, yb):
        loss = bench._torch_loss(kind.split("-")[0], lean(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model = lamina_model(kind)
    model.fit(x[:batch_size], y[:batch_size], batch_size=batch_size, verbose=0)
    report = {}
    for name, step in (("lean", lean_step), ("lamina", lambda xb, yb: model.train_step((xb, yb, None)))):
        for xb, yb in batches[:3]:
            step(xb, yb)
        _sync()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            began = time.perf_counter()
            for xb, yb in batches[3:]:
                step(xb, yb)
            _sync()
            wall = (time.perf_counter() - began) / steps
        events = prof.key_averages()
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        report[name] = {
            "wall_ms": wall * 1e3,
            "kernels_per_step": sum(e.count for e in kernels) / steps,
            "gpu_ms_per_step": sum(e.self_device_time_total for e in kernels) / steps / 1e3,
            "host_ops": {e.key: (e.count / steps, e.self_cpu_time_total / steps / 1e3) for e in events
                         if e.device_type == torch.autograd.DeviceType.CPU},
            "top_kernels": sorted(((e.key[:60], e.count / steps, e.self_device_time_total / steps / 1e3)
                                   for e in kernels), key=lambda k: -k[2])[:8],
        }
    lean_ops, lamina_ops = report["lean"]["host_ops"], report["lamina"]["host_ops"]
    names = set(lean_ops) | set(lamina_ops)
    diff = sorted(names, key=lambda n: -(lamina_ops.get(n, (0, 0))[1] - lean_ops.get(n, (0, 0))[1]))[:12]
    print(f"profile {kind} bs{batch_size}: " + ", ".join(
        f"{k} {v['wall_ms']:.2f} ms/step wall, {v['kernels_per_step']:.0f} kernels, {v['gpu_ms_per_step']:.2f} ms GPU"
        for k, v in report.items()), flush=True)
    for n in diff:
        a, b = lean_ops.get(n, (0, 0)), lamina_ops.get(n, (0, 0))
        print(f"    {n[:50]:<50} calls {a[0]:6.1f} -> {b[0]:6.1f}   host ms {a[1]:7.3f} -> {b[1]:7.3f}")
    for k, v in report.items():
        print(f"  {k} top kernels: " + "; ".join(f"{n} x{c:.0f} {t:.3f} ms" for n, c, t in v["top_kernels"][:5]))
    for v in report.values():
        v["host_ops"] = {n: v["host_ops"][n] for n in diff if n in v["host_ops"]}
    return report


def main(argv=None):
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="")
    parser.add_argument("--budget", type=float, default=float("inf"), help="seconds; later workloads are skipped")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--output", default=os.path.join(bench.HERE, "results_gpu.json"))
    parser.add_argument("--skip", default="", help="comma-separated systems to leave out, e.g. lamina-jit")
    parser.add_argument("--profile", default="", help="comma-separated kind:batch pairs to profile first, "
                                                      "e.g. lstm:64,resnet18-224:64")
    args = parser.parse_args(argv)
    DEVICE = torch.device(args.device)
    import lamina

    lamina.config.set_device(DEVICE)
    began = time.perf_counter()
    name = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else platform.processor()
    meta = {"device": name, "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if DEVICE.type == "cuda" else None,
            "tf32": torch.backends.cuda.matmul.allow_tf32, "repeats": args.repeats, "quick": args.quick,
            "cpus": os.cpu_count(), "skipped": [], "errors": {}}
    print(f"{name}, torch {torch.__version__}, CUDA {torch.version.cuda}, repeats={args.repeats}", flush=True)
    print(f"{'workload':<22} {'system':<15} {'median s':>9} {'min-max s':>17} {'x lean':>7} {'steps/s':>9} "
          f"{'peak MiB':>9} {'compile s':>9}", flush=True)
    results = []
    for item in filter(None, args.profile.split(",")):
        kind, batch = item.split(":")
        try:
            meta.setdefault("profiles", {})[item] = profile_steps(kind, int(batch))
        except Exception as error:  # noqa: BLE001
            import traceback

            meta["errors"][f"profile {item}"] = traceback.format_exc()[-3000:]
            print(f"profile {item} FAILED: {type(error).__name__}: {error}", flush=True)
    selected = [p.strip() for p in args.only.split(",") if p.strip()]
    for workload, spec in workloads(args.quick).items():
        if selected and not any(workload.startswith(p) for p in selected):
            continue
        if time.perf_counter() - began > args.budget:
            meta["skipped"].append(workload)
            print(f"{workload:<22} skipped: over the time budget", flush=True)
            continue
        COMPILE.clear()
        try:
            rows = measure(workload, spec, args.repeats, skip=set(filter(None, args.skip.split(","))))
        except Exception as error:  # noqa: BLE001 - report and go on: one device run must say everything
            import traceback

            meta["errors"][workload] = traceback.format_exc()[-3000:]
            print(f"{workload:<22} FAILED: {type(error).__name__}: {error}", flush=True)
            continue
        for row in rows:
            compile_s = f"{row['compile_s']:9.1f}" if row["compile_s"] is not None else ""
            print(f"{row['workload']:<22} {row['system']:<15} {row['median_s']:9.3f} "
                  f"{row['min_s']:8.3f}-{row['max_s']:<8.3f} {row['ratio_to_lean']:7.3f} "
                  f"{row['steps_per_s']:9.1f} {row['peak_mib']:9.0f} {compile_s}", flush=True)
        results.extend(rows)
        with open(args.output, "w") as file:  # after every workload: a cut-off run keeps what it measured
            json.dump({"meta": meta, "results": results}, file, indent=2)
    meta["total_s"] = time.perf_counter() - began
    with open(args.output, "w") as file:
        json.dump({"meta": meta, "results": results}, file, indent=2)
    print(f"wrote {args.output} in {meta['total_s']:.0f} s")


if __name__ == "__main__":
    main()
