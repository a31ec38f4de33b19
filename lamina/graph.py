"""Graph and mesh operators: adjacency matrices, GCN normalisation, Laplacians, cotangent Laplace–Beltrami.

Each function accepts dense tensors or NumPy arrays, torch sparse tensors (COO or CSR) and
scipy.sparse matrices (converted without importing scipy). Sparse input gives a torch sparse
result of the same layout (COO → COO, CSR → CSR, scipy → COO; a batch of CSR matrices gives
COO) and memory in proportion to the edges; dense input gives a dense tensor. The layers using them are in
``lamina.layers.graph_convolution``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from lamina import config

__all__ = [
    "adjacency_from_edges", "normalized_adjacency", "laplacian", "scaled_laplacian",
    "estimate_lambda_max", "cotangent_laplacian",
]


# ----------------------------------------------------------------------------- conversions
def _is_scipy_sparse(value) -> bool:
    return type(value).__module__.startswith("scipy.sparse") and hasattr(value, "tocoo")


def _tensor(value, dtype=None) -> torch.Tensor:
    """``value`` as a tensor; NumPy arrays are copied when read-only (torch cannot share them)."""
    if isinstance(value, torch.Tensor):
        return value if dtype is None else value.to(dtype)
    array = np.asarray(value)
    if not array.flags.writeable:
        array = array.copy()
    return torch.as_tensor(array, dtype=dtype)


def _float_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype.is_floating_point else config.torch_dtype()


def _as_operator(value, function: str) -> tuple[torch.Tensor, str]:
    """``value`` as a float torch tensor and its layout tag: ``"dense"``, ``"coo"`` or ``"csr"``.

    COO results are coalesced. NumPy / scipy floats become ``floatx()``; torch float
    tensors keep their dtype; integers and booleans become ``floatx()``.
    """
    if _is_scipy_sparse(value):
        coo = value.tocoo()
        indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        values = _tensor(coo.data, config.torch_dtype())
        return _coo(indices, values, tuple(coo.shape)), "coo"
    if isinstance(value, torch.Tensor):
        tensor = value if value.is_floating_point() else value.to(config.torch_dtype())
        if tensor.layout == torch.strided:
            return tensor, "dense"
        if tensor.layout == torch.sparse_coo:
            if tensor.dense_dim() != 0:
                raise ValueError(
                    f"{function} expects a sparse matrix without dense dimensions; received a hybrid "
                    f"sparse tensor of shape {tuple(tensor.shape)} with dense_dim={tensor.dense_dim()}. "
                    f"Pass a plain COO tensor (torch.sparse_coo_tensor(indices, values, size))."
                )
            return tensor.coalesce(), "coo"
        layout = "csr" if tensor.layout == torch.sparse_csr else "coo"
        return tensor.to_sparse_coo().coalesce(), layout
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise TypeError(
            f"{function} expects a matrix as a torch tensor, a NumPy array or a scipy.sparse "
            f"matrix; received {type(value).__name__} (dtype {array.dtype})."
        )
    return _tensor(array, config.torch_dtype()), "dense"


def _restore_layout(tensor: torch.Tensor, layout: str) -> torch.Tensor:
    # torch converts only 2-D COO to CSR (a batch of CSR matrices needs equal nnz per graph).
    if layout != "csr" or tensor.ndim != 2:
        return tensor
    with warnings.catch_warnings():
        # torch warns once per process that CSR support is "beta"; the conversion is exact.
        warnings.simplefilter("ignore")
        return tensor.to_sparse_csr()


def _check_square(tensor: torch.Tensor, function: str, what: str) -> None:
    shape = tuple(tensor.shape)
    if tensor.ndim not in (2, 3) or shape[-1] != shape[-2]:
        raise ValueError(
            f"{function} expects a square {what} of shape (nodes, nodes), or (batch, nodes, nodes) "
            f"for a batch of graphs; received shape {shape}."
        )


def _check_nonnegative(tensor: torch.Tensor, layout: str, function: str) -> None:
    values = tensor if layout == "dense" else tensor.values()
    # One host sync per operator: these functions run once per graph, not per training step.
    if bool((values < 0).any()):
        raise ValueError(
            f"{function} needs non-negative edge weights (it takes square roots of node degrees); "
            f"received an adjacency matrix of shape {tuple(tensor.shape)} with negative entries "
            f"(min {float(values.min()):g}). Use laplacian(A, normalized=False) for signed graphs."
        )


def _flat_rows_cols(coo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of each stored entry as indices into the flattened (batch*nodes) axis."""
    indices, n = coo.indices(), coo.shape[-1]
    if coo.ndim == 3:
        return indices[0] * n + indices[1], indices[0] * n + indices[2]
    return indices[0], indices[1]


def _diagonal_indices(shape: tuple, device) -> torch.Tensor:
    n = shape[-1]
    node = torch.arange(n, device=device)
    if len(shape) == 3:
        batch = torch.arange(shape[0], device=device).repeat_interleave(n)
        node = node.repeat(shape[0])
        return torch.stack([batch, node, node])
    return torch.stack([node, node])


def _coo(indices, values, shape) -> torch.Tensor:
    """A coalesced COO tensor built without invariant checks (lamina makes valid indices).

    Some torch versions (2.11) warn on every such tensor that checks are "implicitly
    disabled", although they are disabled explicitly here; that warning is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        return torch.sparse_coo_tensor(indices, values, shape, check_invariants=False).coalesce()


def _add_diagonal(coo: torch.Tensor, diagonal: torch.Tensor) -> torch.Tensor:
    """``coo`` plus a diagonal matrix whose entries are ``diagonal`` (flattened over batches)."""
    indices = torch.cat([coo.indices(), _diagonal_indices(tuple(coo.shape), coo.device)], dim=1)
    values = torch.cat([coo.values(), diagonal.reshape(-1).to(coo.dtype)])
    return _coo(indices, values, tuple(coo.shape))


def _row_sums(tensor: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "dense":
        return tensor.sum(-1)
    rows, _ = _flat_rows_cols(tensor)
    flat = torch.zeros(int(np.prod(tensor.shape[:-1])), dtype=tensor.dtype, device=tensor.device)
    return flat.index_add_(0, rows, tensor.values()).reshape(tensor.shape[:-1])


def _inverse_sqrt(degree: torch.Tensor) -> torch.Tensor:
    # Isolated nodes (degree 0) get 0 rather than inf, as PyTorch Geometric, scipy and networkx do.
    return torch.where(degree > 0, degree.clamp_min(torch.finfo(degree.dtype).tiny).rsqrt(), 0.0)


def _scale_both_sides(tensor: torch.Tensor, layout: str, scale: torch.Tensor) -> torch.Tensor:
    """``diag(scale) @ tensor @ diag(scale)`` (per graph for batches)."""
    if layout == "dense":
        return scale.unsqueeze(-1) * tensor * scale.unsqueeze(-2)
    rows, cols = _flat_rows_cols(tensor)
    flat = scale.reshape(-1)
    return _coo(tensor.indices(), tensor.values() * flat[rows] * flat[cols], tuple(tensor.shape))


def _identity_like(tensor: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(tensor.shape[-1], dtype=tensor.dtype, device=tensor.device)
    return eye.expand(tensor.shape) if tensor.ndim == 3 else eye


# ----------------------------------------------------------------------------- graphs
def adjacency_from_edges(edges, num_nodes: int, weights=None, symmetric: bool = True, sparse: bool = True):
    """The adjacency matrix of a graph given as an edge list.

    ``A[i, j] = w`` for each edge ``(i, j)`` with weight ``w`` (1 by default); repeated
    edges add up. With ``symmetric=True`` (an undirected graph) each listed edge also sets
    ``A[j, i]``, so list each undirected edge once: an edge listed in both directions is
    refused rather than silently counted twice.

    Args:
        edges: ``(num_edges, 2)`` integer array or tensor of ``(source, target)`` node indices
            (transpose a PyTorch Geometric ``edge_index`` of shape ``(2, num_edges)``).
        num_nodes: number of nodes; indices must lie in ``[0, num_nodes)``.
        weights: optional ``(num_edges,)`` edge weights. Default: all ones.
        symmetric: whether to add the reverse of each edge (undirected graph). Default True.
        sparse: return a torch sparse COO tensor (default) or a dense tensor.

    Returns:
        A ``(num_nodes, num_nodes)`` float tensor (``floatx()``).

    Example:
    >>> adjacency_from_edges([[0, 1], [1, 2]], 3, sparse=False)
    tensor([[0., 1., 0.],
            [1., 0., 1.],
            [0., 1., 0.]])
    """
    function = "adjacency_from_edges"
    edge_tensor = _tensor(edges)
    if edge_tensor.numel() == 0:
        edge_tensor = edge_tensor.reshape(0, 2)
    if edge_tensor.ndim != 2 or edge_tensor.shape[1] != 2:
        raise ValueError(
            f"{function} expects edges of shape (num_edges, 2); received shape "
            f"{tuple(edge_tensor.shape)}. A PyTorch Geometric edge_index of shape (2, num_edges) "
            f"must be transposed first (edge_index.T)."
        )
    if edge_tensor.is_floating_point() or edge_tensor.dtype == torch.bool:
        raise TypeError(f"{function} expects integer node indices; received edges of dtype {edge_tensor.dtype}.")
    if not isinstance(num_nodes, (int, np.integer)) or isinstance(num_nodes, bool) or num_nodes <= 0:
        raise ValueError(f"{function} expects num_nodes to be a positive int; received num_nodes={num_nodes!r}.")
    edge_tensor = edge_tensor.long()
    if edge_tensor.numel():
        low, high = int(edge_tensor.min()), int(edge_tensor.max())
        if low < 0 or high >= num_nodes:
            raise ValueError(
                f"{function} received edges (shape {tuple(edge_tensor.shape)}) indexing node "
                f"{low if low < 0 else high}, outside [0, {num_nodes}) for num_nodes={num_nodes}. "
                f"Pass the right num_nodes or renumber the nodes from 0."
            )
    dtype = config.torch_dtype()
    if weights is None:
        values = torch.ones(edge_tensor.shape[0], dtype=dtype)
    else:
        values = _tensor(weights)
        values = values.to(_float_dtype(values.dtype))
        if tuple(values.shape) != (edge_tensor.shape[0],):
            raise ValueError(
                f"{function} expects one weight per edge, shape ({edge_tensor.shape[0]},); received "
                f"weights of shape {tuple(values.shape)} for edges of shape {tuple(edge_tensor.shape)}."
            )
    source, target = edge_tensor[:, 0], edge_tensor[:, 1]
    if symmetric:
        off = source != target
        key = source[off] * num_nodes + target[off]
        reverse = torch.isin(key, target[off] * num_nodes + source[off])
        if bool(reverse.any()):
            first = int(torch.nonzero(reverse)[0])
            pair = (int(source[off][first]), int(target[off][first]))
            raise ValueError(
                f"{function}(symmetric=True) received edge {pair} in both directions "
                f"({int(reverse.sum()) // 2} such pair(s)); it adds each edge's reverse itself. List "
                f"each undirected edge once, or pass symmetric=False for a directed edge list."
            )
        source, target = torch.cat([source, target[off]]), torch.cat([target, source[off]])
        values = torch.cat([values, values[off]])
    matrix = _coo(torch.stack([source, target]), values, (num_nodes, num_nodes))
    return matrix if sparse else matrix.to_dense()


def normalized_adjacency(adjacency, add_self_loops: bool = True):
    """Kipf & Welling's GCN propagation matrix ``D^-1/2 (A + I) D^-1/2``.

    ``D`` is the diagonal of the row sums of ``A + I`` (node degrees plus one; for the
    undirected graphs GCN is meant for, row and column sums agree). ``I`` is added to every
    node, also to those that already have a self-loop, as in the paper. Rows of nodes
    with degree 0 (possible only with ``add_self_loops=False``) are zero.

    Args:
        adjacency: ``(nodes, nodes)`` or ``(batch, nodes, nodes)`` matrix with non-negative
            weights: dense, torch sparse (COO/CSR) or scipy.sparse.
        add_self_loops: whether to add ``I`` first. Default True.

    Returns:
        A tensor of the same shape; torch sparse (same layout) for sparse input.

    Example:
    >>> import torch
    >>> normalized_adjacency(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    tensor([[0.5000, 0.5000],
            [0.5000, 0.5000]])
    """
    function = "normalized_adjacency"
    tensor, layout = _as_operator(adjacency, function)
    _check_square(tensor, function, "adjacency matrix")
    _check_nonnegative(tensor, layout, function)
    if add_self_loops:
        if layout == "dense":
            tensor = tensor + _identity_like(tensor)
        else:
            tensor = _add_diagonal(tensor, torch.ones(tensor.shape[:-1], dtype=tensor.dtype, device=tensor.device))
    scale = _inverse_sqrt(_row_sums(tensor, layout))
    return _restore_layout(_scale_both_sides(tensor, layout, scale), layout)


def laplacian(adjacency, normalized: bool = True):
    """The graph Laplacian: ``I - D^-1/2 A D^-1/2`` (normalized) or ``D - A``.

    ``D`` is the diagonal of the row sums of ``A`` (self-loops included). The normalized
    form is computed as ``D^-1/2 (D - A) D^-1/2``, so an isolated node gets a zero row
    and column, as in ``scipy.sparse.csgraph.laplacian(normed=True)`` and networkx; its
    eigenvalues lie in ``[0, 2]``. Both forms are symmetric positive semi-definite for a
    symmetric ``A`` with non-negative weights; the combinatorial form also accepts signed
    weights, the normalized one refuses them.

    Args:
        adjacency: ``(nodes, nodes)`` or ``(batch, nodes, nodes)`` matrix: dense, torch
            sparse (COO/CSR) or scipy.sparse.
        normalized: symmetric normalized Laplacian (default) or combinatorial ``D - A``.

    Returns:
        A tensor of the same shape; torch sparse (same layout) for sparse input.

    Example:
    >>> import torch
    >>> laplacian(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), normalized=False)
    tensor([[ 1., -1.],
            [-1.,  1.]])
    """
    function = "laplacian"
    tensor, layout = _as_operator(adjacency, function)
    _check_square(tensor, function, "adjacency matrix")
    if normalized:
        _check_nonnegative(tensor, layout, function)
    degree = _row_sums(tensor, layout)
    if layout == "dense":
        result = torch.diag_embed(degree) - tensor
    else:
        result = _add_diagonal(-tensor, degree)
    if normalized:
        result = _scale_both_sides(result, layout, _inverse_sqrt(degree))
    return _restore_layout(result, layout)


# ----------------------------------------------------------------------------- spectra
def _mass_vector(mass, like: torch.Tensor, function: str) -> torch.Tensor:
    """A lumped mass given as a vector, an ``(N, 1)`` column or a diagonal matrix, as a vector."""
    tensor, layout = _as_operator(mass, function)
    nodes = like.shape[-1]
    shape = tuple(tensor.shape)
    if layout != "dense":
        # A sparse diagonal matrix: read its diagonal without densifying (N^2 memory).
        rows, cols = _flat_rows_cols(tensor)
        on_diagonal = rows == cols
        if bool((tensor.values()[~on_diagonal] != 0).any()):
            raise ValueError(
                f"{function} expects a lumped (diagonal) mass matrix; received a mass of shape "
                f"{shape} with off-diagonal entries. Use the M returned by cotangent_laplacian."
            )
        flat = torch.zeros(int(np.prod(shape[:-1])), dtype=tensor.dtype, device=tensor.device)
        tensor = flat.index_add_(0, rows[on_diagonal], tensor.values()[on_diagonal]).reshape(shape[:-1])
    elif tensor.ndim >= 2 and shape[-1] == shape[-2] == nodes and nodes != 1:
        tensor = torch.diagonal(tensor, dim1=-2, dim2=-1)
    elif tensor.ndim >= 2 and shape[-1] == 1:
        tensor = tensor[..., 0]
    expected = tuple(like.shape[:-1])
    if tuple(tensor.shape) != expected and not (like.ndim == 3 and tuple(tensor.shape) == expected[1:]):
        raise ValueError(
            f"{function} expects the mass as a vector of shape {expected}, a column {expected + (1,)} "
            f"or a diagonal matrix {expected + (nodes,)} matching the operator of shape "
            f"{tuple(like.shape)}; received mass of shape {shape}."
        )
    if bool((tensor <= 0).any()):
        raise ValueError(
            f"{function} needs a positive mass for every vertex; received a mass of shape {shape} "
            f"with min {float(tensor.min()):g}. Vertices used by no face have zero mass: remove them."
        )
    return tensor.to(device=like.device, dtype=like.dtype).expand(like.shape[:-1])


def _matvec(tensor: torch.Tensor, layout: str, vectors: torch.Tensor) -> torch.Tensor:
    if layout == "dense":
        return tensor @ vectors
    return torch.bmm(tensor, vectors) if tensor.ndim == 3 else torch.sparse.mm(tensor, vectors)


def estimate_lambda_max(operator, mass=None, num_iterations: int = 1000, tolerance: float = 1e-6):
    """The largest eigenvalue of a symmetric positive semi-definite operator, by power iteration.

    With ``mass`` (the lumped mass ``M`` of ``cotangent_laplacian``), the largest
    eigenvalue of ``M^-1 L`` (the generalized problem ``L v = λ M v``), iterated on the
    symmetric ``M^-1/2 L M^-1/2``. Runs in torch on the operator's device (float64 where
    available) from a fixed start vector, so results are deterministic; iterates until
    the Rayleigh quotient changes by less than ``tolerance`` (relative). The result
    approaches the eigenvalue from below.

    Args:
        operator: ``(N, N)`` or ``(batch, N, N)`` matrix: dense, torch sparse or scipy.sparse.
        mass: optional lumped mass: ``(N,)`` vector, ``(N, 1)`` column or diagonal matrix.
        num_iterations: maximum number of iterations. Default 1000.
        tolerance: relative convergence tolerance. Default 1e-6.

    Returns:
        A float64 tensor: a scalar, or one value per graph for a batch.

    Example:
    >>> import torch
    >>> round(float(estimate_lambda_max(torch.tensor([[2.0, -1.0], [-1.0, 2.0]]))), 4)
    3.0
    """
    function = "estimate_lambda_max"
    tensor, layout = _as_operator(operator, function)
    _check_square(tensor, function, "operator")
    work = torch.float32 if tensor.device.type == "mps" else torch.float64
    tensor = tensor.to(work)
    inverse_root = None
    if mass is not None:
        inverse_root = _mass_vector(mass, tensor, function).rsqrt().unsqueeze(-1)
    generator = torch.Generator().manual_seed(0)
    vectors = torch.rand(tuple(tensor.shape[:-1]) + (1,), generator=generator, dtype=work).to(tensor.device) + 0.5
    vectors = vectors / torch.linalg.vector_norm(vectors, dim=-2, keepdim=True)
    estimate = previous = None
    for step in range(num_iterations):
        product = _matvec(tensor, layout, vectors if inverse_root is None else vectors * inverse_root)
        if inverse_root is not None:
            product = product * inverse_root
        estimate = (vectors * product).sum(dim=(-2, -1))
        norm = torch.linalg.vector_norm(product, dim=-2, keepdim=True)
        vectors = product / torch.where(norm > 0, norm, 1.0)
        if step % 10 == 9:
            if previous is not None and bool(
                    ((estimate - previous).abs() <= tolerance * estimate.abs().clamp_min(1e-30)).all()):
                break
            previous = estimate
    return estimate


def scaled_laplacian(laplacian_matrix, lambda_max=None, mass=None):
    """The rescaled Laplacian ``2 L / lambda_max - I``, whose spectrum lies in ``[-1, 1]``.

    This is the argument of the Chebyshev filters of Defferrard et al. (``ChebConv``).
    With ``mass``, the rescaled Laplace–Beltrami operator ``2 M^-1 L / lambda_max - I``
    (``LaplaceBeltramiConv``). With ``lambda_max=None`` the largest eigenvalue is
    estimated with ``estimate_lambda_max`` (power iteration, no scipy needed); for a
    normalized graph Laplacian ``lambda_max=2.0`` is the usual shortcut (an upper bound,
    exact for bipartite graphs) that skips the estimate.

    Args:
        laplacian_matrix: ``(N, N)`` or ``(batch, N, N)`` Laplacian: dense, torch sparse
            (COO/CSR) or scipy.sparse.
        lambda_max: positive float, or one value per graph for a batch; None estimates it.
        mass: optional lumped mass (vector, ``(N, 1)`` column or diagonal matrix).

    Returns:
        A tensor of the same shape; torch sparse (same layout) for sparse input.

    Example:
    >>> import torch
    >>> scaled_laplacian(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), lambda_max=2.0)
    tensor([[ 0., -1.],
            [-1.,  0.]])
    """
    function = "scaled_laplacian"
    tensor, layout = _as_operator(laplacian_matrix, function)
    _check_square(tensor, function, "Laplacian")
    if lambda_max is None:
        lambda_max = estimate_lambda_max(tensor, mass)
    lam = torch.as_tensor(lambda_max, dtype=torch.float64).to(tensor.device)
    batch_shape = tuple(tensor.shape[:-2])
    if lam.ndim > 0 and tuple(lam.shape) != batch_shape:
        raise ValueError(
            f"{function} expects lambda_max as a float or one value per graph, shape {batch_shape}; "
            f"received shape {tuple(lam.shape)} for a Laplacian of shape {tuple(tensor.shape)}."
        )
    if bool((lam <= 0).any()):
        raise ValueError(f"{function} expects a positive lambda_max; received {lambda_max!r}.")
    # Per-row factor 2 / (lambda_max * m_i): rows of the batch share their graph's lambda_max.
    factor = (2.0 / lam).to(tensor.dtype).reshape(batch_shape + (1,)).expand(tensor.shape[:-1])
    if mass is not None:
        factor = factor / _mass_vector(mass, tensor, function)
    if layout == "dense":
        return factor.unsqueeze(-1) * tensor - _identity_like(tensor)
    rows, _ = _flat_rows_cols(tensor)
    scaled = _coo(tensor.indices(), tensor.values() * factor.reshape(-1)[rows], tuple(tensor.shape))
    minus_one = torch.full(tensor.shape[:-1], -1.0, dtype=tensor.dtype, device=tensor.device)
    return _restore_layout(_add_diagonal(scaled, minus_one), layout)


# ----------------------------------------------------------------------------- meshes
def cotangent_laplacian(vertices, faces):
    """The cotangent Laplace–Beltrami stiffness matrix ``L`` and lumped mass matrix ``M`` of a mesh.

    For each edge ``(i, j)``, ``L[i, j] = -(cot a + cot b) / 2`` where ``a`` and ``b`` are the
    angles opposite the edge in its one or two triangles, and ``L[i, i] = -sum_j L[i, j]``:
    ``L`` is symmetric positive semi-definite with the constant vector in its kernel
    (the sign convention of the finite-element stiffness matrix; libigl's ``cotmatrix`` is
    ``-L``). ``M`` is the barycentric lumped mass: each triangle gives a third of its area
    to each of its vertices, so ``M`` is diagonal, positive on every vertex used by a face,
    and sums to the surface area. ``M^-1 L`` approximates ``-Δ`` on the surface.

    Args:
        vertices: ``(num_vertices, 3)`` (or ``(num_vertices, 2)`` for a planar mesh) float
            coordinates.
        faces: ``(num_faces, 3)`` integer vertex indices of the triangles.

    Returns:
        ``(L, M)``: two ``(num_vertices, num_vertices)`` torch sparse COO tensors, in the
        vertices' dtype (``floatx()`` for NumPy input); computed in float64.

    Example:
    >>> L, M = cotangent_laplacian([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])
    >>> L.to_dense()
    tensor([[ 1.0000, -0.5000, -0.5000],
            [-0.5000,  0.5000,  0.0000],
            [-0.5000,  0.0000,  0.5000]])
    >>> round(float(M.to_dense().sum()), 4)
    0.5
    """
    function = "cotangent_laplacian"
    points = _tensor(vertices)
    dtype = points.dtype if points.is_floating_point() else config.torch_dtype()
    if not isinstance(vertices, torch.Tensor):
        dtype = config.torch_dtype()
    triangles = _tensor(faces)
    if points.ndim != 2 or points.shape[1] not in (2, 3):
        raise ValueError(
            f"{function} expects vertices of shape (num_vertices, 3) (or 2 for a planar mesh); "
            f"received shape {tuple(points.shape)}."
        )
    if triangles.ndim != 2 or triangles.shape[1] != 3:
        raise ValueError(
            f"{function} expects triangle faces of shape (num_faces, 3); received shape "
            f"{tuple(triangles.shape)}. Split polygons into triangles first."
        )
    if triangles.is_floating_point() or triangles.dtype == torch.bool:
        raise TypeError(f"{function} expects integer vertex indices in faces; received dtype {triangles.dtype}.")
    num_vertices = points.shape[0]
    triangles = triangles.long().to(points.device)
    if triangles.numel() and (int(triangles.min()) < 0 or int(triangles.max()) >= num_vertices):
        bad = int(triangles.min()) if int(triangles.min()) < 0 else int(triangles.max())
        raise ValueError(
            f"{function} received faces of shape {tuple(triangles.shape)} indexing vertex {bad}, but "
            f"vertices has shape {tuple(points.shape)} (valid indices 0..{num_vertices - 1})."
        )
    points = points.to(torch.float64)
    if points.shape[1] == 2:
        points = torch.nn.functional.pad(points, (0, 1))
    corners = points[triangles]  # (faces, 3 corners, 3 coordinates)
    double_area = torch.linalg.vector_norm(
        torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), dim=-1)
    degenerate = torch.nonzero(double_area <= 1e-14 * double_area.max().clamp_min(1e-300)).flatten()
    if degenerate.numel():
        index = int(degenerate[0])
        raise ValueError(
            f"{function} received {degenerate.numel()} degenerate (zero-area) face(s) among faces of "
            f"shape {tuple(triangles.shape)}, e.g. face {index} = {triangles[index].tolist()}. Remove "
            f"them: their cotangents are infinite."
        )
    rows, cols, weights = [], [], []
    for corner in range(3):
        # The angle at `corner` is opposite the edge joining the two other corners.
        i, j = (corner + 1) % 3, (corner + 2) % 3
        u = corners[:, i] - corners[:, corner]
        v = corners[:, j] - corners[:, corner]
        cotangent = (u * v).sum(-1) / double_area
        rows.append(triangles[:, i])
        cols.append(triangles[:, j])
        weights.append(0.5 * cotangent)
    rows, cols, weights = torch.cat(rows), torch.cat(cols), torch.cat(weights)
    off_rows, off_cols = torch.cat([rows, cols]), torch.cat([cols, rows])
    off_values = -torch.cat([weights, weights])
    diagonal = torch.zeros(num_vertices, dtype=torch.float64, device=points.device)
    diagonal.index_add_(0, rows, weights).index_add_(0, cols, weights)
    nodes = torch.arange(num_vertices, device=points.device)
    stiffness = _coo(torch.stack([torch.cat([off_rows, nodes]), torch.cat([off_cols, nodes])]),
                     torch.cat([off_values, diagonal]), (num_vertices, num_vertices))
    lumped = torch.zeros(num_vertices, dtype=torch.float64, device=points.device)
    third = (double_area / 6.0).repeat(3)
    lumped.index_add_(0, triangles.t().reshape(-1), third)
    mass = _coo(torch.stack([nodes, nodes]), lumped, (num_vertices, num_vertices))
    return stiffness.to(dtype), mass.to(dtype)
