"""Smoke tests for the graph examples: examples/karate_club.py and examples/mesh_segmentation.py."""

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pipeline_passes_sparse() -> bool:
    """Whether lamina's data pipeline hands sparse tensors to the model whole."""
    from lamina.training import data

    try:
        batches = data.make_batches([torch.zeros(2, 1), torch.eye(2).to_sparse()], torch.zeros(2),
                                    batch_size=2, shuffle=False, device=torch.device("cpu"))
        next(iter(batches))
    except Exception:
        return False
    return True


def test_karate_club_reaches_090_over_ten_seeds(capsys):
    karate_club = _load("karate_club")
    start = time.perf_counter()
    result = karate_club.main(seeds=10, epochs=200)
    elapsed = time.perf_counter() - start
    assert result["lamina"] >= 0.90
    assert result["torch"] >= 0.90  # the hand-written PyTorch model solves it too
    assert abs(result["lamina"] - result["torch"]) < 0.05
    assert elapsed < 60, f"the example took {elapsed:.1f}s"
    assert "lamina GraphConv : mean" in capsys.readouterr().out


def test_mesh_icosphere_is_a_closed_sphere():
    mesh_segmentation = _load("mesh_segmentation")
    vertices, faces = mesh_segmentation.icosphere(2)
    assert vertices.shape == (162, 3) and faces.shape == (320, 3)  # V - E + F = 2
    np.testing.assert_allclose(np.linalg.norm(vertices, axis=1), 1.0)
    edges = {tuple(sorted(e)) for f in faces.tolist() for e in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))}
    assert len(vertices) - len(edges) + len(faces) == 2


@pytest.mark.skipif(not _pipeline_passes_sparse(),
                    reason="lamina/training/data.py does not yet pass sparse tensors whole (graph data patch)")
def test_mesh_segmentation_beats_the_noisy_observation(capsys):
    mesh_segmentation = _load("mesh_segmentation")
    start = time.perf_counter()
    result = mesh_segmentation.main(subdivisions=3, epochs=100)
    assert time.perf_counter() - start < 60
    assert result["accuracy"] >= 0.85
    assert result["accuracy"] > result["observed"] + 0.2
    assert "LaplaceBeltramiConv segmentation accuracy" in capsys.readouterr().out
