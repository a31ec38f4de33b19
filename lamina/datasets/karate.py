"""Zachary's karate club: the 34-member social network and the two clubs it split into.

The 78 friendships observed by W. W. Zachary (1977, "An information flow model for conflict
and fission in small groups"), numbered 0-33 as in networkx's ``karate_club_graph()``:
node 0 is the instructor ("Mr. Hi"), node 33 the club president ("Officer"). Shipped
here as plain Python data, so nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

__all__ = ["load_data", "EDGES", "NUM_NODES", "MR_HI_CLUB"]

NUM_NODES = 34

# Each undirected friendship once, (smaller node, larger node), sorted.
EDGES = (
    (0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 6), (0, 7), (0, 8), (0, 10), (0, 11), (0, 12),
    (0, 13), (0, 17), (0, 19), (0, 21), (0, 31),
    (1, 2), (1, 3), (1, 7), (1, 13), (1, 17), (1, 19), (1, 21), (1, 30),
    (2, 3), (2, 7), (2, 8), (2, 9), (2, 13), (2, 27), (2, 28), (2, 32),
    (3, 7), (3, 12), (3, 13),
    (4, 6), (4, 10),
    (5, 6), (5, 10), (5, 16),
    (6, 16),
    (8, 30), (8, 32), (8, 33),
    (9, 33),
    (13, 33),
    (14, 32), (14, 33),
    (15, 32), (15, 33),
    (18, 32), (18, 33),
    (19, 33),
    (20, 32), (20, 33),
    (22, 32), (22, 33),
    (23, 25), (23, 27), (23, 29), (23, 32), (23, 33),
    (24, 25), (24, 27), (24, 31),
    (25, 31),
    (26, 29), (26, 33),
    (27, 33),
    (28, 31), (28, 33),
    (29, 32), (29, 33),
    (30, 32), (30, 33),
    (31, 32), (31, 33),
    (32, 33),
)

# Members who followed the instructor (networkx's club "Mr. Hi"); the others joined the Officer.
MR_HI_CLUB = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 16, 17, 19, 21)


def load_data():
    """The karate club graph as ``(edges, labels)``.

    Returns:
        ``edges``: int64 array of shape ``(78, 2)``, each undirected edge once;
        ``labels``: int64 array of shape ``(34,)``, 0 for Mr. Hi's club and 1 for the Officer's.

    Example:
    >>> edges, labels = load_data()
    >>> edges.shape, labels.shape, int(labels.sum())
    ((78, 2), (34,), 17)
    """
    edges = np.asarray(EDGES, dtype=np.int64)
    labels = np.ones(NUM_NODES, dtype=np.int64)
    labels[list(MR_HI_CLUB)] = 0
    return edges, labels
