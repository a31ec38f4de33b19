"""Semi-supervised node classification on Zachary's karate club with GraphConv.

Kipf & Welling's two-layer GCN (16 hidden units, identity node features) learns which of
the two clubs each member joined from ONE labelled member per club: the instructor (node 0)
and the president (node 33). It trains with the ordinary ``fit`` in single mode: the node
axis is the batch axis, so the whole graph is one batch (``batch_size=34, shuffle=False``)
and ``sample_weight`` masks the loss to the two labelled nodes. Accuracy is measured on the
other 32 members, averaged over 10 seeds, and compared with the same model written by hand
in PyTorch. The graph ships with lamina (``lamina.datasets.karate``): no download.

Run it with `python examples/karate_club.py`.
"""

import statistics
import sys
import time

import numpy as np
import torch

import lamina
from lamina.datasets import karate
from lamina.graph import adjacency_from_edges, normalized_adjacency
from lamina.layers.graph_convolution import GraphConv

LABELLED = [0, 33]


def load():
    edges, labels = karate.load_data()
    adjacency = adjacency_from_edges(edges, karate.NUM_NODES, sparse=False).numpy()
    features = np.eye(karate.NUM_NODES, dtype="float32")  # identity: each node is its own feature
    train_mask = np.zeros(karate.NUM_NODES, dtype="float32")
    train_mask[LABELLED] = 1.0
    return features, adjacency, labels, train_mask


def lamina_accuracy(seed: int, epochs: int = 200) -> float:
    """Train the lamina GCN from ``seed``; accuracy on the 32 unlabelled members."""
    features, adjacency, labels, train_mask = load()
    nodes = karate.NUM_NODES
    lamina.utils.set_random_seed(seed)
    x_in = lamina.Input((nodes,), name="features")
    a_in = lamina.Input((nodes,), sparse=True, name="adjacency")
    hidden = GraphConv(16, activation="relu")([x_in, a_in])
    out = GraphConv(2, activation="softmax")([hidden, a_in])
    model = lamina.Model([x_in, a_in], out)
    model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit([features, adjacency], labels, sample_weight=train_mask, batch_size=nodes, shuffle=False,
              epochs=epochs, verbose=0)
    predicted = model.predict([features, adjacency], batch_size=nodes, verbose=0).argmax(-1)
    test = train_mask == 0
    return float((predicted[test] == labels[test]).mean())


def torch_accuracy(seed: int, epochs: int = 200) -> float:
    """The same model written by hand in PyTorch (same initialisers, loss scaling and Adam)."""
    features, adjacency, labels, train_mask = load()
    torch.manual_seed(seed)
    a_hat = normalized_adjacency(torch.as_tensor(adjacency))
    x, y, mask = torch.as_tensor(features), torch.as_tensor(labels), torch.as_tensor(train_mask)
    first, second = torch.nn.Linear(x.shape[1], 16), torch.nn.Linear(16, 2)
    for layer in (first, second):
        torch.nn.init.xavier_uniform_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    parameters = [*first.parameters(), *second.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=0.01, eps=1e-7)
    for _ in range(epochs):
        hidden = torch.relu(a_hat @ (x @ first.weight.T) + first.bias)
        logits = a_hat @ (hidden @ second.weight.T) + second.bias
        # Keras's weighted loss: sum(loss * weight) / number of samples (nodes).
        loss = (torch.nn.functional.cross_entropy(logits, y, reduction="none") * mask).sum() / len(y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    predicted = logits.argmax(-1).numpy()
    test = train_mask == 0
    return float((predicted[test] == labels[test]).mean())


def main(seeds: int = 10, epochs: int = 200) -> dict:
    torch.set_num_threads(1)
    start = time.perf_counter()
    ours = [lamina_accuracy(seed, epochs) for seed in range(seeds)]
    lamina_seconds = time.perf_counter() - start
    start = time.perf_counter()
    reference = [torch_accuracy(seed, epochs) for seed in range(seeds)]
    torch_seconds = time.perf_counter() - start
    print(f"karate club, labelled nodes {LABELLED}, accuracy on the other 32 members over {seeds} seeds:")
    print(f"  lamina GraphConv : mean {statistics.mean(ours):.4f}  min {min(ours):.4f}  "
          f"({lamina_seconds:.1f}s)  per seed: {' '.join(f'{a:.3f}' for a in ours)}")
    print(f"  hand-written torch: mean {statistics.mean(reference):.4f}  min {min(reference):.4f}  "
          f"({torch_seconds:.1f}s)  per seed: {' '.join(f'{a:.3f}' for a in reference)}")
    return {"lamina": statistics.mean(ours), "torch": statistics.mean(reference)}


if __name__ == "__main__":
    main(seeds=int(sys.argv[1]) if len(sys.argv) > 1 else 10)
