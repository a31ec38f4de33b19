"""Benchmark lamina's GraphConv against PyTorch Geometric's GCNConv (not part of `make test`).

Workload: a random undirected graph with 100,000 nodes and 1,000,000 directed edges (500,000
random node pairs in both directions, no self-loops), float32 node features, and a two-layer
GCN (features -> hidden, relu -> classes). One step = forward + cross-entropy + backward
(no optimizer step). Systems, interleaved (A B C A B C ...) and repeated after a warm-up:

  lamina        lamina.Model([x, a], ...) with two GraphConv layers, A as a torch sparse COO tensor
                (normalized once and cached as CSR by the layer)
  pyg-cached    torch_geometric.nn.GCNConv(cached=True) on edge_index (normalisation cached)
  pyg-default   GCNConv() as constructed by default (gcn_norm recomputed every forward)
  pyg-csr       GCNConv(cached=True) on a torch CSR adjacency (PyG's sparse-matrix path)

Prints one line per system: median and min-max ms/step, ratio to pyg-cached, the one-time
set-up cost of the first call, and the peak extra memory of a run in a fresh subprocess
(VmHWM - VmRSS before the first step on CPU; max_memory_allocated on CUDA). Also checks that
lamina and PyG agree on the outputs when given the same weights.

    python benchmarks/bench_graph.py [--nodes N] [--edges E] [--features F] [--hidden H]
                                     [--classes C] [--repeats R] [--threads T] [--device D]

PyTorch Geometric is optional: `pip install torch_geometric` (pure Python; 2.8.1 imports with
torch 2.13 here); without it only lamina is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def make_graph(nodes: int, edges: int, features: int, classes: int, device: torch.device, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    pairs = torch.randint(0, nodes, (2, edges // 2), generator=generator)
    pairs = pairs[:, pairs[0] != pairs[1]]
    edge_index = torch.cat([pairs, pairs.flip(0)], dim=1)
    adjacency = torch.sparse_coo_tensor(edge_index, torch.ones(edge_index.shape[1]), (nodes, nodes),
                                        check_invariants=False).coalesce()
    # Duplicate pairs merged (weight 1, not their count): both systems see the same unweighted graph.
    edge_index = adjacency.indices()
    adjacency = torch.sparse_coo_tensor(edge_index, torch.ones(edge_index.shape[1]), (nodes, nodes),
                                        check_invariants=False).coalesce()
    x = torch.randn(nodes, features, generator=generator)
    y = torch.randint(0, classes, (nodes,), generator=generator)
    return x.to(device), y.to(device), adjacency.to(device), edge_index.to(device)


def lamina_system(nodes: int, features: int, hidden: int, classes: int, device: torch.device):
    import lamina
    from lamina.layers.graph_convolution import GraphConv

    x_in = lamina.Input((features,))
    a_in = lamina.Input((nodes,), sparse=True)
    h = GraphConv(hidden, activation="relu")([x_in, a_in])
    out = GraphConv(classes)([h, a_in])
    model = lamina.Model([x_in, a_in], out).to(device)

    def step(x, y, adjacency, edge_index):
        logits = model([x, adjacency], training=True)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        for p in model.parameters():
            p.grad = None
        return loss

    return model, step


def pyg_system(nodes: int, features: int, hidden: int, classes: int, device: torch.device, variant: str):
    from torch_geometric.nn import GCNConv
    from torch_geometric.utils import to_torch_csr_tensor

    cached = variant != "pyg-default"
    first = GCNConv(features, hidden, cached=cached).to(device)
    second = GCNConv(hidden, classes, cached=cached).to(device)
    parameters = [*first.parameters(), *second.parameters()]
    csr = {}

    def step(x, y, adjacency, edge_index):
        graph = edge_index
        if variant == "pyg-csr":  # PyG's sparse-matrix path: a torch CSR adj_t (symmetric here)
            if "adj_t" not in csr:
                csr["adj_t"] = to_torch_csr_tensor(edge_index, size=(nodes, nodes))
            graph = csr["adj_t"]
        logits = second(torch.relu(first(x, graph)), graph)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        for p in parameters:
            p.grad = None
        return loss

    return (first, second), step


def build(name: str, args, device):
    if name == "lamina":
        return lamina_system(args.nodes, args.features, args.hidden, args.classes, device)
    return pyg_system(args.nodes, args.features, args.hidden, args.classes, device, name)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def check_agreement(args, device, data) -> float:
    """Max |lamina - PyG| on the same weights (forward of the two-layer model)."""
    (first, second), _ = pyg_system(args.nodes, args.features, args.hidden, args.classes, device, "pyg-cached")
    model, _ = lamina_system(args.nodes, args.features, args.hidden, args.classes, device)
    graph_layers = [layer for layer in model.layers if type(layer).__name__ == "GraphConv"]
    with torch.no_grad():
        for layer, conv in zip(graph_layers, (first, second)):
            conv.lin.weight.copy_(layer.kernel)
            conv.bias.copy_(layer.bias)
        x, _, adjacency, edge_index = data
        ours = model([x, adjacency])
        theirs = second(torch.relu(first(x, edge_index)), edge_index)
    return float((ours - theirs).abs().max())


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def measure_memory(name: str, args) -> None:
    """Child process: build the graph and one system, run a few steps, print peak extra MiB as JSON."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = make_graph(args.nodes, args.edges, args.features, args.classes, device)
    _, step = build(name, args, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_kib("VmRSS") * 1024
    for _ in range(3):
        step(*data)
    sync(device)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else rss_kib("VmHWM") * 1024
    print(json.dumps({"peak_extra_mib": (peak - base) / 2 ** 20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        measure_memory(args.memory_child, args)
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:
        import torch_geometric
        systems = ["lamina", "pyg-cached", "pyg-default", "pyg-csr"]
        pyg_version = torch_geometric.__version__
    except ImportError:
        systems, pyg_version = ["lamina"], "not installed"
    data = make_graph(args.nodes, args.edges, args.features, args.classes, device)
    print(f"graph: {args.nodes:,} nodes, {int(data[2]._nnz()):,} directed edges; features {args.features}, "
          f"hidden {args.hidden}, classes {args.classes}; device {device}, {args.threads} thread(s); "
          f"torch {torch.__version__}, torch_geometric {pyg_version}; load average {os.getloadavg()[0]:.2f}")
    if "pyg-cached" in systems:
        print(f"max |lamina - pyg| on the same weights: {check_agreement(args, device, data):.2e}")

    steps, first_call = {}, {}
    for name in systems:
        torch.manual_seed(0)
        _, steps[name] = build(name, args, device)
        start = time.perf_counter()
        steps[name](*data)  # the first call: lamina and pyg-cached normalize (and cache) here
        sync(device)
        first_call[name] = time.perf_counter() - start
        steps[name](*data)  # warm-up
    times = {name: [] for name in systems}
    for _ in range(args.repeats):
        for name in systems:
            sync(device)
            start = time.perf_counter()
            steps[name](*data)
            sync(device)
            times[name].append(time.perf_counter() - start)

    memory = {}
    for name in systems:
        command = [sys.executable, os.path.abspath(__file__), "--memory-child", name] + [
            f"--{k}={getattr(args, k)}" for k in ("nodes", "edges", "features", "hidden", "classes", "threads", "device")]
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        memory[name] = json.loads(lines[-1])["peak_extra_mib"] if lines else float("nan")

    reference = statistics.median(times["pyg-cached"]) if "pyg-cached" in times else None
    for name in systems:
        median = statistics.median(times[name])
        ratio = f"{median / reference:.2f}x pyg-cached" if reference else "-"
        setup = (first_call[name] - median) * 1e3
        print(f"{name:12s} fwd+bwd median {median * 1e3:8.1f} ms/step  (min {min(times[name]) * 1e3:.1f}, "
              f"max {max(times[name]) * 1e3:.1f}; {args.repeats} interleaved repeats)  {ratio:>18s}  "
              f"first-call extra {setup:7.1f} ms  peak extra memory {memory[name]:7.1f} MiB")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
