"""Tests for lamina.graph: adjacency matrices, normalisation, Laplacians, cotangent Laplace–Beltrami."""

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from lamina import graph
from lamina.datasets import karate

# A small undirected graph with a degree-3 node, a leaf and a triangle.
EDGES = [(0, 1), (0, 2), (0, 3), (1, 2), (3, 4)]
N = 5


def _dense_adjacency():
    a = np.zeros((N, N), dtype=np.float32)
    for i, j in EDGES:
        a[i, j] = a[j, i] = 1.0
    return a


def _csr(tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tensor.to_sparse_csr()


def _layouts(array):
    """The same matrix as NumPy, dense torch, torch COO, torch CSR and (if installed) scipy CSR."""
    dense = torch.as_tensor(array)
    forms = {"numpy": array, "dense": dense, "coo": dense.to_sparse(), "csr": _csr(dense)}
    try:
        import scipy.sparse
    except ImportError:
        return forms
    forms["scipy"] = scipy.sparse.csr_matrix(array)
    return forms


def _to_dense(tensor):
    return tensor.to_dense() if tensor.layout != torch.strided else tensor


def _icosahedron():
    phi = (1 + 5 ** 0.5) / 2
    vertices = np.array([(-1, phi, 0), (1, phi, 0), (-1, -phi, 0), (1, -phi, 0), (0, -1, phi), (0, 1, phi),
                         (0, -1, -phi), (0, 1, -phi), (phi, 0, -1), (phi, 0, 1), (-phi, 0, -1), (-phi, 0, 1)],
                        dtype=np.float64)
    faces = np.array([(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
                      (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
                      (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)])
    return vertices, faces


# ----------------------------------------------------------------------------- adjacency_from_edges
def test_adjacency_from_edges_symmetric_matches_closed_form():
    result = graph.adjacency_from_edges(EDGES, N)
    assert result.layout == torch.sparse_coo and result.dtype == torch.float32
    np.testing.assert_array_equal(result.to_dense().numpy(), _dense_adjacency())


def test_adjacency_from_edges_directed_and_weighted():
    result = graph.adjacency_from_edges([(0, 1), (1, 2), (0, 1)], 3, weights=[1.0, 2.0, 0.5],
                                        symmetric=False, sparse=False)
    expected = np.array([[0, 1.5, 0], [0, 0, 2.0], [0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(result.numpy(), expected)


def test_adjacency_from_edges_self_loop_counted_once():
    result = graph.adjacency_from_edges([(1, 1), (0, 1)], 2, sparse=False)
    np.testing.assert_array_equal(result.numpy(), [[0, 1], [1, 1]])


def test_adjacency_from_edges_refuses_edge_listed_both_ways():
    with pytest.raises(ValueError, match=r"adjacency_from_edges.*\(0, 1\) in both directions"):
        graph.adjacency_from_edges([(0, 1), (1, 0)], 2)


@pytest.mark.parametrize("edges, num_nodes, message", [
    ([(0, 5)], 5, r"adjacency_from_edges.*node 5, outside \[0, 5\)"),
    ([(-1, 2)], 5, r"adjacency_from_edges.*node -1"),
    ([[0, 1, 2], [1, 2, 3]], 5, r"adjacency_from_edges expects edges of shape \(num_edges, 2\); received shape \(2, 3\)"),
    ([(0, 1)], 0, r"num_nodes to be a positive int"),
])
def test_adjacency_from_edges_bad_input(edges, num_nodes, message):
    with pytest.raises(ValueError, match=message):
        graph.adjacency_from_edges(edges, num_nodes)


def test_adjacency_from_edges_weights_shape_checked():
    with pytest.raises(ValueError, match=r"one weight per edge, shape \(2,\); received weights of shape \(3,\)"):
        graph.adjacency_from_edges([(0, 1), (1, 2)], 3, weights=[1.0, 2.0, 3.0])


def test_karate_club_counts():
    edges, labels = karate.load_data()
    adjacency = graph.adjacency_from_edges(edges, karate.NUM_NODES, sparse=False)
    assert edges.shape == (78, 2) and labels.shape == (34,)
    assert int(adjacency.sum()) == 2 * 78
    assert torch.equal(adjacency, adjacency.T)
    assert int(adjacency.sum(1)[0]) == 16 and int(adjacency.sum(1)[33]) == 17  # the two leaders
    assert labels[0] == 0 and labels[33] == 1 and int((labels == 0).sum()) == 17


def test_karate_club_matches_networkx():
    nx = pytest.importorskip("networkx")
    reference = nx.karate_club_graph()
    edges, labels = karate.load_data()
    assert {tuple(sorted(e)) for e in reference.edges()} == {tuple(e) for e in edges.tolist()}
    clubs = [0 if reference.nodes[n]["club"] == "Mr. Hi" else 1 for n in range(34)]
    assert clubs == labels.tolist()


# ----------------------------------------------------------------------------- normalized_adjacency
def _gcn_reference(a):
    a_tilde = a + np.eye(len(a))
    d = a_tilde.sum(1)
    return a_tilde / np.sqrt(np.outer(d, d))


@pytest.mark.parametrize("form", ["numpy", "dense", "coo", "csr", "scipy"])
def test_normalized_adjacency_matches_closed_form(form):
    forms = _layouts(_dense_adjacency())
    if form not in forms:
        pytest.skip("scipy is not installed")
    result = graph.normalized_adjacency(forms[form])
    expected_layout = {"numpy": torch.strided, "dense": torch.strided, "coo": torch.sparse_coo,
                       "csr": torch.sparse_csr, "scipy": torch.sparse_coo}[form]
    assert result.layout == expected_layout
    np.testing.assert_allclose(_to_dense(result).numpy(), _gcn_reference(_dense_adjacency()), atol=1e-6)


def test_normalized_adjacency_without_self_loops_zeroes_isolated_nodes():
    a = np.zeros((3, 3), dtype=np.float32)
    a[0, 1] = a[1, 0] = 2.0
    result = graph.normalized_adjacency(a, add_self_loops=False).numpy()
    np.testing.assert_allclose(result, [[0, 1, 0], [1, 0, 0], [0, 0, 0]], atol=1e-7)


def test_normalized_adjacency_batch_dense_and_sparse_agree():
    rng = np.random.default_rng(0)
    a = (rng.random((3, 6, 6)) < 0.4).astype(np.float32)
    a = np.maximum(a, a.transpose(0, 2, 1))
    dense = graph.normalized_adjacency(torch.as_tensor(a))
    sparse = graph.normalized_adjacency(torch.as_tensor(a).to_sparse())
    assert sparse.layout == torch.sparse_coo and sparse.shape == (3, 6, 6)
    for b in range(3):
        np.testing.assert_allclose(dense[b].numpy(), _gcn_reference(a[b]), atol=1e-6)
    np.testing.assert_allclose(sparse.to_dense().numpy(), dense.numpy(), atol=1e-6)


@pytest.mark.parametrize("function", [graph.normalized_adjacency, graph.laplacian])
def test_operators_refuse_non_square(function):
    with pytest.raises(ValueError, match=rf"{function.__name__} expects a square adjacency matrix.*received shape \(3, 4\)"):
        function(np.ones((3, 4)))


@pytest.mark.parametrize("form", ["dense", "coo"])
def test_normalized_adjacency_refuses_negative_weights(form):
    a = _dense_adjacency()
    a[0, 1] = a[1, 0] = -1.0
    with pytest.raises(ValueError, match=r"normalized_adjacency needs non-negative edge weights.*shape \(5, 5\)"):
        graph.normalized_adjacency(_layouts(a)[form])


def test_operators_refuse_objects():
    with pytest.raises(TypeError, match="normalized_adjacency expects a matrix"):
        graph.normalized_adjacency("not a matrix")


# ----------------------------------------------------------------------------- laplacian
def test_laplacian_combinatorial_is_degree_minus_adjacency():
    a = _dense_adjacency()
    result = graph.laplacian(torch.as_tensor(a).to_sparse(), normalized=False)
    assert result.layout == torch.sparse_coo
    np.testing.assert_allclose(result.to_dense().numpy(), np.diag(a.sum(1)) - a)
    assert torch.allclose(result.to_dense() @ torch.ones(N), torch.zeros(N))


@pytest.mark.parametrize("form", ["dense", "coo", "csr", "scipy"])
def test_laplacian_normalized_matches_scipy(form):
    csgraph = pytest.importorskip("scipy.sparse.csgraph")
    a = _dense_adjacency()
    a[:, 4] = a[4, :] = 0.0  # node 4 isolated: a zero row, as in scipy
    expected = csgraph.laplacian(a.astype(np.float64), normed=True)
    result = graph.laplacian(_layouts(a)[form], normalized=True)
    np.testing.assert_allclose(_to_dense(result).numpy(), expected, atol=1e-6)
    eigenvalues = np.linalg.eigvalsh(_to_dense(result).numpy())
    assert eigenvalues.min() > -1e-6 and eigenvalues.max() < 2 + 1e-6


def test_laplacian_signed_weights_only_when_combinatorial():
    a = np.array([[0, -1.0], [-1.0, 0]], dtype=np.float32)
    np.testing.assert_allclose(graph.laplacian(a, normalized=False).numpy(), [[-1, 1], [1, -1]])
    with pytest.raises(ValueError, match="laplacian needs non-negative edge weights"):
        graph.laplacian(a)


# ----------------------------------------------------------------------------- scaled_laplacian
@pytest.mark.parametrize("form", ["dense", "coo", "csr"])
def test_scaled_laplacian_matches_closed_form(form):
    lap = graph.laplacian(_dense_adjacency()).numpy()
    result = graph.scaled_laplacian(_layouts(lap)[form], lambda_max=2.0)
    np.testing.assert_allclose(_to_dense(result).numpy(), lap - np.eye(N), atol=1e-6)
    estimated = graph.scaled_laplacian(_layouts(lap)[form])
    top = np.linalg.eigvalsh(lap.astype(np.float64)).max()
    np.testing.assert_allclose(_to_dense(estimated).numpy(), 2 * lap / top - np.eye(N), atol=1e-4)


def test_scaled_laplacian_spectrum_in_unit_interval():
    rng = np.random.default_rng(1)
    a = np.triu((rng.random((30, 30)) < 0.2).astype(np.float32), 1)
    lap = graph.laplacian(a + a.T, normalized=False)
    eigenvalues = np.linalg.eigvalsh(graph.scaled_laplacian(lap).numpy().astype(np.float64))
    assert eigenvalues.min() >= -1 - 1e-5 and abs(eigenvalues.max() - 1) < 1e-3


def test_scaled_laplacian_batch_uses_each_graphs_lambda():
    laps = torch.stack([torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), torch.tensor([[2.0, -2.0], [-2.0, 2.0]])])
    result = graph.scaled_laplacian(laps.to_sparse())
    expected = torch.tensor([[0.0, -1.0], [-1.0, 0.0]]).expand(2, 2, 2)
    torch.testing.assert_close(result.to_dense(), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(graph.scaled_laplacian(laps, lambda_max=[2.0, 4.0]), expected)


def test_scaled_laplacian_with_mass_matches_generalized_problem():
    vertices, faces = _icosahedron()
    stiffness, mass = graph.cotangent_laplacian(torch.as_tensor(vertices), faces)
    l_dense, m = stiffness.to_dense().numpy(), np.diag(mass.to_dense().numpy()).copy()
    root = 1 / np.sqrt(m)
    top = np.linalg.eigvalsh(root[:, None] * l_dense * root[None, :]).max()
    np.testing.assert_allclose(float(graph.estimate_lambda_max(stiffness, mass)), top, rtol=1e-6)
    for mass_form in (mass, torch.as_tensor(m), torch.as_tensor(m)[:, None], mass.to_dense()):
        result = graph.scaled_laplacian(stiffness, mass=mass_form)
        np.testing.assert_allclose(result.to_dense().numpy(), 2 * l_dense / (top * m[:, None]) - np.eye(12), atol=1e-6)


@pytest.mark.parametrize("lambda_max, message", [(0.0, "positive lambda_max"), ([1.0, 2.0], r"one value per graph, shape \(\)")])
def test_scaled_laplacian_bad_lambda_max(lambda_max, message):
    with pytest.raises(ValueError, match=message):
        graph.scaled_laplacian(np.eye(3), lambda_max=lambda_max)


def test_scaled_laplacian_refuses_bad_mass():
    with pytest.raises(ValueError, match=r"scaled_laplacian expects the mass as a vector of shape \(3,\).*received mass of shape \(4,\)"):
        graph.scaled_laplacian(np.eye(3), lambda_max=1.0, mass=np.ones(4))
    with pytest.raises(ValueError, match="positive mass for every vertex"):
        graph.scaled_laplacian(np.eye(3), lambda_max=1.0, mass=np.array([1.0, 0.0, 1.0]))


def test_estimate_lambda_max_matches_eigvalsh():
    rng = np.random.default_rng(2)
    a = np.triu((rng.random((40, 40)) < 0.15) * rng.random((40, 40)), 1)
    lap = graph.laplacian((a + a.T).astype(np.float32), normalized=False)
    expected = np.linalg.eigvalsh(lap.numpy().astype(np.float64)).max()
    np.testing.assert_allclose(float(graph.estimate_lambda_max(lap.to_sparse())), expected, rtol=1e-5)


# ----------------------------------------------------------------------------- cotangent_laplacian
def test_cotangent_laplacian_regular_tetrahedron_by_hand():
    # Every angle is 60 degrees and every edge lies in two faces: weight (2 cot 60) / 2 = 1/sqrt(3).
    vertices = [(1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)]
    faces = [(0, 1, 2), (0, 3, 1), (0, 2, 3), (1, 3, 2)]
    stiffness, mass = graph.cotangent_laplacian(vertices, faces)
    w = 1 / math.sqrt(3)
    expected = np.full((4, 4), -w) + np.eye(4) * 4 * w
    np.testing.assert_allclose(stiffness.to_dense().numpy(), expected, atol=1e-6)
    # Edge length 2*sqrt(2): face area sqrt(3)/4 * 8 = 2 sqrt(3); each vertex takes a third of 3 faces.
    np.testing.assert_allclose(mass.to_dense().numpy(), np.eye(4) * 2 * math.sqrt(3), atol=1e-6)


def test_cotangent_laplacian_flat_hexagon_by_hand():
    angles = np.arange(6) * np.pi / 3
    vertices = np.vstack([[0.0, 0.0], np.stack([np.cos(angles), np.sin(angles)], 1)])
    faces = [(0, 1 + k, 1 + (k + 1) % 6) for k in range(6)]
    stiffness, mass = graph.cotangent_laplacian(torch.as_tensor(vertices), faces)
    dense = stiffness.to_dense().numpy()
    w = 1 / math.sqrt(3)
    assert stiffness.dtype == torch.float64
    np.testing.assert_allclose(dense[0], [6 * w] + [-w] * 6, atol=1e-12)  # spokes: two 60-degree angles
    np.testing.assert_allclose(dense[1, 2], -w / 2, atol=1e-12)  # rim edge: one opposite angle
    # Linear precision: L x = 0 at the interior vertex for linear functions on a flat mesh.
    np.testing.assert_allclose(dense[0] @ vertices, 0.0, atol=1e-12)
    np.testing.assert_allclose(mass.to_dense().sum().item(), 6 * math.sqrt(3) / 4, rtol=1e-12)


def test_cotangent_laplacian_icosahedron_properties():
    vertices, faces = _icosahedron()
    stiffness, mass = graph.cotangent_laplacian(vertices, faces)
    assert stiffness.layout == torch.sparse_coo and stiffness.dtype == torch.float32
    assert stiffness._nnz() == 12 + 2 * 30  # diagonal plus both directions of each edge
    dense = stiffness.to_dense().double().numpy()
    np.testing.assert_allclose(dense, dense.T, atol=1e-6)
    np.testing.assert_allclose(dense @ np.ones(12), 0.0, atol=1e-5)  # constants in the kernel
    assert np.linalg.eigvalsh(dense).min() > -1e-5  # positive semi-definite
    edge = np.linalg.norm(vertices[0] - vertices[11])
    area = 20 * math.sqrt(3) / 4 * edge ** 2
    np.testing.assert_allclose(mass.to_dense().sum().item(), area, rtol=1e-6)


def test_cotangent_laplacian_random_mesh_area_and_kernel():
    rng = np.random.default_rng(3)
    vertices = rng.normal(size=(6, 3))
    faces = [(0, 1, 2), (0, 2, 3), (0, 3, 4), (0, 4, 5), (0, 5, 1)]
    stiffness, mass = graph.cotangent_laplacian(torch.as_tensor(vertices), faces)
    corners = vertices[np.array(faces)]
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1).sum()
    np.testing.assert_allclose(mass.to_dense().sum().item(), area, rtol=1e-12)
    np.testing.assert_allclose(stiffness.to_dense().numpy() @ np.ones(6), 0.0, atol=1e-12)


@pytest.mark.parametrize("vertices, faces, error, message", [
    (np.zeros((3, 3)), [(0, 1, 3)], ValueError,
     r"cotangent_laplacian received faces of shape \(1, 3\) indexing vertex 3, but vertices has shape \(3, 3\)"),
    (np.zeros((3, 4)), [(0, 1, 2)], ValueError, r"vertices of shape \(num_vertices, 3\).*received shape \(3, 4\)"),
    (np.eye(3), [(0, 1, 2, 0)], ValueError, r"faces of shape \(num_faces, 3\); received shape \(1, 4\)"),
    (np.eye(3), np.array([(0.0, 1.0, 2.0)]), TypeError, "integer vertex indices"),
    (np.array([(0.0, 0, 0), (1, 0, 0), (2, 0, 0)]), [(0, 1, 2)], ValueError, r"degenerate \(zero-area\) face.*face 0"),
])
def test_cotangent_laplacian_bad_input(vertices, faces, error, message):
    with pytest.raises(error, match=message):
        graph.cotangent_laplacian(vertices, faces)


def test_graph_module_imports_and_runs_without_scipy():
    # sys.modules["scipy"] = None makes every `import scipy` fail, as if it were not installed.
    code = (
        "import sys; sys.modules['scipy'] = None\n"
        "import torch\n"
        "from lamina import graph\n"
        "from lamina.layers.graph_convolution import GraphConv\n"
        "from lamina.datasets import karate\n"
        "edges, labels = karate.load_data()\n"
        "a = graph.adjacency_from_edges(edges, 34)\n"
        "out = GraphConv(2)([torch.eye(34), a])\n"
        "print(tuple(graph.normalized_adjacency(a).shape), tuple(out.shape))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(34, 34) (34, 2)"
