"""Graph and mesh feature-extraction layers: GraphConv, ChebConv, LaplaceBeltramiConv, GlobalGraphPooling.

The convolutions are called on ``[features, operator]``; they turn the operator (an
adjacency matrix, or a mesh's stiffness and mass) into a propagation matrix with
``lamina.graph`` once, cache it, and multiply with fused dense or sparse matmuls.
The operators themselves live in ``lamina.graph``; models and training elsewhere.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from lamina import config, registry
from lamina import graph as graph_ops
from lamina.layers.base import Layer

__all__ = ["GraphConv", "ChebConv", "LaplaceBeltramiConv", "GlobalGraphPooling"]


class _SparseMatmul(torch.autograd.Function):
    """``operator @ x`` for a constant 2-D CSR operator, whose backward multiplies by the
    precomputed transpose (CSR too): torch's own backward transposes the CSR matrix on
    every step, which costs several times the forward product."""

    @staticmethod
    def forward(ctx, operator, transpose, x):
        ctx.transpose = transpose
        return torch.sparse.mm(operator, x)

    @staticmethod
    def backward(ctx, grad):
        return None, None, torch.sparse.mm(ctx.transpose, grad)


def _to_csr(coo: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's one-time "CSR support is in beta" notice
        return coo.to_sparse_csr()


class _Propagator:
    """A prepared operator: dense, a 2-D CSR matrix with its transpose, or a batch of COO matrices."""

    def __init__(self, operator: torch.Tensor):
        self.dense = self.csr = self.transpose = self.batched = None
        if operator.layout == torch.strided:
            self.dense = operator
            return
        coo = (operator if operator.layout == torch.sparse_coo else operator.to_sparse_coo()).coalesce()
        if operator.ndim == 3:
            self.batched = coo  # torch.bmm takes batched COO (not CSR) operators
            return
        flipped = coo.t().coalesce()
        self.csr = _to_csr(coo)
        symmetric = torch.equal(coo.indices(), flipped.indices()) and torch.allclose(
            coo.values(), flipped.values(), rtol=1e-6, atol=0.0)
        self.transpose = self.csr if symmetric else _to_csr(flipped)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.dense is not None:
            return torch.matmul(self.dense, x)
        if self.batched is not None:
            return torch.bmm(self.batched, x)
        if x.ndim == 2:
            return _SparseMatmul.apply(self.csr, self.transpose, x)
        # One shared operator for a batch of graphs: fold the batch into the feature axis.
        batch, nodes, features = x.shape
        folded = x.transpose(0, 1).reshape(nodes, batch * features)
        out = _SparseMatmul.apply(self.csr, self.transpose, folded)
        return out.reshape(nodes, batch, -1).transpose(0, 1)


def _operator_key(value):
    """What identifies an operator for the cache (see ``_GraphConvolution``)."""
    if isinstance(value, torch.Tensor):
        try:
            version = value._version
        except RuntimeError:  # inference tensors keep no version counter
            version = None
        if value.layout == torch.strided:
            # Storage, view geometry and version: a fresh slice A[0:N] of the same tensor
            # (as a data pipeline makes each epoch) hits the cache; A.mul_(2) misses it.
            return ("dense", value.data_ptr(), tuple(value.shape), value.stride(), value.dtype,
                    value.device, version)
        return ("sparse", id(value), version)
    return ("object", id(value))


def _shape(value) -> tuple:
    return tuple(value.shape) if hasattr(value, "shape") else tuple(np.shape(value))


def _fmt(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class _GraphConvolution(Layer):
    """Shared logic of the graph convolutions: input checks, operator cache, weights, config.

    Cache rule: the propagation matrix derived from the operator is computed once and
    reused for as long as the layer receives the same operator again: the same torch
    tensor (same storage, shape, strides and version counter, so the slice ``A[0:N]`` a
    data pipeline takes every epoch hits the cache, while an in-place change such as
    ``A.mul_(2)`` misses it) or the same NumPy / scipy object (by identity only: an
    in-place change to those is not seen, so pass a new object). The layer keeps one
    entry, holding a reference to the operator; a different operator replaces it. A dense
    operator that requires grad is not cached and receives gradients; otherwise operators
    are constants.
    """

    _num_operators = 1  # operator inputs after the features

    def __init__(self, units, K, activation, use_bias, kernel_initializer, bias_initializer,
                 kernel_regularizer, bias_regularizer, activity_regularizer, kernel_constraint,
                 bias_constraint, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if isinstance(units, float) and units.is_integer():
            units = int(units)
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise ValueError(
                f"{type(self).__name__} expects units to be a positive int; received units={units!r} "
                f'(layer "{self.name}"). Pass the number of output features per node, e.g. units=16.'
            )
        if not isinstance(K, int) or isinstance(K, bool) or K < 1:
            raise ValueError(
                f"{type(self).__name__} expects K (the number of polynomial terms) to be an int >= 1; "
                f'received K={K!r} (layer "{self.name}").'
            )
        self.units = units
        self.K = K
        self.activation = registry.get("activation", activation or "linear")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = registry.get("initializer", kernel_initializer)
        self.bias_initializer = registry.get("initializer", bias_initializer)
        self.kernel_regularizer = registry.get("regularizer", kernel_regularizer)
        self.bias_regularizer = registry.get("regularizer", bias_regularizer)
        self.kernel_constraint = registry.get("constraint", kernel_constraint)
        self.bias_constraint = registry.get("constraint", bias_constraint)
        self.supports_masking = True
        object.__setattr__(self, "_cache", None)

    # ------------------------------------------------------------------ inputs
    def _input_shapes(self, input_shape) -> list:
        counts = (2, 3) if self._num_operators == 2 else (2,)
        if not isinstance(input_shape, (list, tuple)) or not input_shape or \
                not isinstance(input_shape[0], (list, tuple)) or len(input_shape) not in counts:
            expected = "[features, stiffness] or [features, stiffness, mass]" if counts == (2, 3) \
                else "[features, operator]"
            raise ValueError(
                f'Layer "{self.name}" ({type(self).__name__}) is called on {expected}; received '
                f"input shape {input_shape!r}."
            )
        return [tuple(s) for s in input_shape]

    def _check_shapes(self, feature_shape: tuple, operator_shapes: list) -> None:
        name = f'Layer "{self.name}" ({type(self).__name__})'
        if len(feature_shape) not in (2, 3):
            raise ValueError(
                f"{name} expects node features of shape (nodes, features) or (batch, nodes, "
                f"features); received features of shape {_fmt(feature_shape)}."
            )
        nodes = feature_shape[-2]
        operator_shape = operator_shapes[0]
        hint = ""
        if len(feature_shape) == 2:
            hint = (" In single mode the node axis is the batch axis: fit, evaluate and predict need "
                    "batch_size=num_nodes and shuffle=False, so that each step sees every node.")
        rows, cols = (operator_shape[-2:] if len(operator_shape) >= 2 else (None, None))
        if len(operator_shape) not in (2, 3) or (len(operator_shape) == 3 and len(feature_shape) == 2):
            raise ValueError(
                f"{name} expects an operator of shape (nodes, nodes), or (batch, nodes, nodes) with "
                f"batched features (batch, nodes, features); received features of shape "
                f"{_fmt(feature_shape)} and operator of shape {_fmt(operator_shape)}."
            )
        known = [s for s in (nodes, rows, cols) if s is not None]
        batches = [s for s in (feature_shape[0], operator_shape[0]) if s is not None]
        if len(set(known)) > 1 or (len(operator_shape) == 3 and len(set(batches)) > 1):
            raise ValueError(
                f"{name} expects a square (nodes, nodes) operator for the features' nodes; received "
                f"features of shape {_fmt(feature_shape)} for {nodes} nodes and an operator of shape "
                f"{_fmt(operator_shape)}.{hint}"
            )
        if len(operator_shapes) > 1:
            mass_shape = operator_shapes[1]
            expected = (tuple(operator_shape[:-1]), tuple(operator_shape[:-1]) + (1,), tuple(operator_shape))
            if len(operator_shape) == 3:
                expected += (tuple(operator_shape[1:-1]),)
            if tuple(mass_shape) not in expected:
                raise ValueError(
                    f"{name} expects the lumped mass as a vector {_fmt(operator_shape[:-1])}, a column "
                    f"or a diagonal matrix {_fmt(operator_shape)} matching the stiffness; received "
                    f"stiffness of shape {_fmt(operator_shape)} and mass of shape {_fmt(mass_shape)}."
                )

    def _split(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2 or len(inputs) > 1 + self._num_operators:
            self._input_shapes(None if not isinstance(inputs, (list, tuple)) else [_shape(v) for v in inputs])
        features, operators = inputs[0], list(inputs[1:])
        dtype = config.torch_dtype(self._dtype)
        if not isinstance(features, torch.Tensor):
            features = graph_ops._tensor(features, dtype)
        elif features.dtype != dtype:
            features = features.to(dtype)
        self._check_shapes(tuple(features.shape), [_shape(op) for op in operators])
        if features.shape[-1] != self._input_dim:
            raise ValueError(
                f'Layer "{self.name}" ({type(self).__name__}) was built for {self._input_dim} features '
                f"per node, but received features of shape {_fmt(tuple(features.shape))}. Pass "
                f"{self._input_dim} features per node or build a new layer for this shape."
            )
        return features, operators

    def _propagator(self, operators: list, features: torch.Tensor) -> _Propagator:
        needs_grad = torch.is_grad_enabled() and any(
            isinstance(op, torch.Tensor) and op.requires_grad for op in operators)
        if needs_grad:
            return self._prepare_with_device(operators, features)
        key = (tuple(_operator_key(op) for op in operators), features.device, features.dtype)
        cache = self._cache
        if cache is not None and cache[0] == key:
            return cache[2]
        # Inside predict's inference_mode, a cached operator must still be usable by a later
        # fit (inference tensors cannot be saved for backward), so build it outside.
        with torch.inference_mode(False), torch.no_grad():
            propagator = self._prepare_with_device(operators, features)
        object.__setattr__(self, "_cache", (key, operators, propagator))
        return propagator

    def _prepare_with_device(self, operators: list, features: torch.Tensor) -> _Propagator:
        moved = []
        for op in operators:
            if isinstance(op, torch.Tensor):
                op = op.to(device=features.device, dtype=features.dtype if op.is_floating_point() else None)
            moved.append(op)
        operator = self._prepare(*moved)
        if isinstance(operator, torch.Tensor):
            operator = operator.to(device=features.device, dtype=features.dtype)
        return _Propagator(operator)

    def _prepare(self, operator, mass=None) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------ weights
    def build(self, input_shape):
        shapes = self._input_shapes(input_shape)
        self._check_shapes(shapes[0], shapes[1:])
        input_dim = shapes[0][-1]
        if input_dim is None:
            raise ValueError(
                f'Layer "{self.name}" needs a known number of node features (last axis) to build its '
                f"kernel; received features of shape {_fmt(shapes[0])}."
            )
        self._input_dim = int(input_dim)
        self._build_weights(self._input_dim)
        self.built = True

    def _build_weights(self, input_dim: int) -> None:
        # Keras layout (K, input_dim, units) as Spektral's ChebConv; torch layout (units, K,
        # input_dim) so the K stacked propagations feed one F.linear.
        self.kernel = self._add_weight(
            (self.K, input_dim, self.units), self.kernel_initializer, None, True,
            self.kernel_regularizer, self.kernel_constraint, "kernel", perm=(2, 0, 1))
        self._add_bias()

    def _add_bias(self) -> None:
        if self.use_bias:
            self.bias = self._add_weight((self.units,), self.bias_initializer, None, True,
                                         self.bias_regularizer, self.bias_constraint, "bias")
        else:
            self.bias = None

    # ------------------------------------------------------------------ maths
    def _chebyshev(self, propagate, features: torch.Tensor) -> torch.Tensor:
        """``sum_k T_k(S) X W_k + b`` with the recurrence T_k = 2 S T_{k-1} - T_{k-2}."""
        terms = [features]
        if self.K > 1:
            terms.append(propagate(features))
        for _ in range(2, self.K):
            terms.append(torch.sub(2.0 * propagate(terms[-1]), terms[-2]))
        stacked = torch.cat(terms, dim=-1) if self.K > 1 else features
        kernel = self.kernel.reshape(self.units, -1)
        return self.activation(F.linear(stacked, kernel, self.bias))

    def call(self, inputs):
        features, operators = self._split(inputs)
        return self._chebyshev(self._propagator(operators, features), features)

    def compute_output_shape(self, input_shape):
        shapes = self._input_shapes(input_shape)
        return tuple(shapes[0][:-1]) + (self.units,)

    def compute_mask(self, inputs, previous_mask=None):
        # Node masks (padded graphs) pass through unchanged, from the features input.
        if previous_mask is None and isinstance(inputs, (list, tuple)) and inputs:
            previous_mask = getattr(inputs[0], "_keras_mask", None)
        return previous_mask

    def get_config(self):
        config_ = super().get_config()
        config_.update({
            "units": self.units,
            "activation": registry.serialize("activation", self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": registry.serialize("initializer", self.kernel_initializer),
            "bias_initializer": registry.serialize("initializer", self.bias_initializer),
            "kernel_regularizer": registry.serialize("regularizer", self.kernel_regularizer),
            "bias_regularizer": registry.serialize("regularizer", self.bias_regularizer),
            "kernel_constraint": registry.serialize("constraint", self.kernel_constraint),
            "bias_constraint": registry.serialize("constraint", self.bias_constraint),
        })
        return config_


@registry.register("layer")
class GraphConv(_GraphConvolution):
    """Kipf & Welling's graph convolution: ``activation(Â X W + b)``, ``Â = D^-1/2 (A + I) D^-1/2``.

    Called on ``[features, adjacency]``. ``Â`` is computed from the adjacency matrix
    with ``lamina.graph.normalized_adjacency`` once per operator and cached (the cache
    rule: the same tensor with the same storage, strides and version counter, or the
    same NumPy / scipy object, reuses it; see ``lamina.graph``). Products run as
    ``torch.sparse.mm`` on a CSR copy for sparse operators (memory grows with the edges)
    and ``torch.matmul`` for dense ones, in the cheaper order (``Â (X W)`` when ``units``
    is smaller than the input features, else ``(Â X) W``).

    Two modes, as in Spektral: *single* — features ``(nodes, F)`` and one ``(nodes, nodes)``
    operator; the node axis is then the batch axis of ``fit`` (``batch_size=nodes``,
    ``shuffle=False``); *batch* — features ``(batch, nodes, F)`` with one shared
    ``(nodes, nodes)`` operator or a ``(batch, nodes, nodes)`` one (dense or sparse COO).

    Args:
        units: positive int, output features per node.
        activation: activation name or callable. Default None (linear).
        use_bias: whether to add a bias vector. Default True.
        kernel_initializer: default ``"glorot_uniform"``.
        bias_initializer: default ``"zeros"``.
        kernel_regularizer, bias_regularizer: optional regularizers.
        activity_regularizer: optional regularizer on the output.
        kernel_constraint, bias_constraint: optional constraints.
        normalize: compute ``Â`` from the adjacency matrix (default True), or use the
            operator as given (already normalized, as Spektral's ``GCNConv`` expects).

    Call arguments:
        inputs: ``[features, adjacency]``; the adjacency is a dense tensor or array, a torch
            sparse tensor (COO/CSR) or a scipy.sparse matrix with non-negative weights.

    Input shape:
        ``[(nodes, F), (nodes, nodes)]`` or ``[(batch, nodes, F), ([batch,] nodes, nodes)]``.
    Output shape:
        ``(nodes, units)`` or ``(batch, nodes, units)``.

    Example:
    >>> import torch
    >>> layer = GraphConv(2, kernel_initializer="ones")
    >>> adjacency = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    >>> layer([torch.tensor([[1.0], [3.0]]), adjacency])
    tensor([[2., 2.],
            [2., 2.]], grad_fn=<AddmmBackward0>)
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 normalize=True, **kwargs):
        super().__init__(units, 1, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, **kwargs)
        self.normalize = bool(normalize)

    def _build_weights(self, input_dim: int) -> None:
        self.kernel = self._add_weight(
            (input_dim, self.units), self.kernel_initializer, None, True,
            self.kernel_regularizer, self.kernel_constraint, "kernel", perm=(1, 0))
        self._add_bias()

    def _prepare(self, adjacency, mass=None):
        if self.normalize:
            return graph_ops.normalized_adjacency(adjacency)
        tensor, _ = graph_ops._as_operator(adjacency, f'GraphConv layer "{self.name}"')
        return tensor

    def call(self, inputs):
        features, operators = self._split(inputs)
        propagate = self._propagator(operators, features)
        if self.units < features.shape[-1]:
            out = propagate(F.linear(features, self.kernel))
            if self.bias is not None:
                out = out + self.bias
        else:
            out = F.linear(propagate(features), self.kernel, self.bias)
        return self.activation(out)

    def get_config(self):
        config_ = super().get_config()
        config_["normalize"] = self.normalize
        return config_


@registry.register("layer")
class ChebConv(_GraphConvolution):
    """Defferrard et al.'s Chebyshev spectral graph convolution with ``K`` terms.

    ``activation(sum_{k<K} T_k(L~) X W_k + b)`` where ``T_k`` are the Chebyshev polynomials
    (``T_0 = I``, ``T_1 = L~``, ``T_k = 2 L~ T_{k-1} - T_{k-2}``) and ``L~ = 2 L / lambda_max - I``
    the rescaled normalized Laplacian ``L = I - D^-1/2 A D^-1/2`` of the adjacency matrix
    ``A``. ``K`` counts terms, as in Defferrard et al., PyTorch Geometric and Spektral: the
    filter is a polynomial of degree ``K - 1`` and mixes ``K - 1``-hop neighbourhoods.
    ``L~`` is computed once per operator and cached (cache rule as ``GraphConv``).

    Args:
        units: positive int, output features per node.
        K: int >= 1, the number of Chebyshev terms. Default 2.
        lambda_max: largest eigenvalue used to rescale ``L``: default 2.0 (the bound for
            the normalized Laplacian, as PyTorch Geometric assumes); None estimates it
            per operator by power iteration (``lamina.graph.estimate_lambda_max``).
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint: as
            ``GraphConv``. The kernel has the Keras shape ``(K, F, units)``.
        normalize: build ``L~`` from an adjacency matrix (default True), or use the
            operator as given (an already rescaled Laplacian, as Spektral's ``ChebConv``).

    Call arguments:
        inputs: ``[features, adjacency]`` as for ``GraphConv``.

    Input shape:
        ``[(nodes, F), (nodes, nodes)]`` or ``[(batch, nodes, F), ([batch,] nodes, nodes)]``.
    Output shape:
        ``(nodes, units)`` or ``(batch, nodes, units)``.

    Example:
    >>> import torch
    >>> layer = ChebConv(1, K=2, kernel_initializer="ones")
    >>> path = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    >>> layer([torch.tensor([[1.0], [3.0]]), path])  # X + L~ X with L~ = -A here
    tensor([[-2.],
            [ 2.]], grad_fn=<AddmmBackward0>)
    """

    def __init__(self, units, K=2, lambda_max=2.0, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, normalize=True, **kwargs):
        super().__init__(units, K, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, **kwargs)
        if lambda_max is not None and (not isinstance(lambda_max, (int, float)) or isinstance(lambda_max, bool)
                                       or lambda_max <= 0):
            raise ValueError(
                f'ChebConv expects lambda_max to be a positive float or None; received '
                f'lambda_max={lambda_max!r} (layer "{self.name}").'
            )
        self.lambda_max = None if lambda_max is None else float(lambda_max)
        self.normalize = bool(normalize)

    def _prepare(self, adjacency, mass=None):
        if not self.normalize:
            tensor, _ = graph_ops._as_operator(adjacency, f'ChebConv layer "{self.name}"')
            return tensor
        return graph_ops.scaled_laplacian(graph_ops.laplacian(adjacency, normalized=True), self.lambda_max)

    def get_config(self):
        config_ = super().get_config()
        config_.update({"K": self.K, "lambda_max": self.lambda_max, "normalize": self.normalize})
        return config_


@registry.register("layer")
class LaplaceBeltramiConv(_GraphConvolution):
    """A spectral mesh convolution: a polynomial of degree ``K - 1`` in the Laplace–Beltrami operator.

    ``activation(sum_{k<K} T_k(S) X W_k + b)`` with ``S = 2 M^-1 L / lambda_max - I``, where
    ``L`` is the cotangent stiffness matrix and ``M`` the lumped mass of the mesh (as
    ``lamina.graph.cotangent_laplacian`` returns them), so ``M^-1 L`` is the discrete
    ``-Δ`` with spectrum ``[0, lambda_max]`` and ``S`` has spectrum ``[-1, 1]``, where the
    Chebyshev polynomials ``T_k`` are bounded. Normalising by the mass makes the filter
    (nearly) independent of how finely the surface is meshed. ``lambda_max`` is
    estimated once per mesh by power iteration on ``M^-1/2 L M^-1/2`` unless given;
    ``S`` is cached (rule as ``GraphConv``). Without a mass input, ``M = I``.

    Args:
        units: positive int, output features per vertex.
        K: int >= 1, the number of polynomial (Chebyshev) terms. Default 2.
        lambda_max: largest eigenvalue of ``M^-1 L`` if known; default None (estimated).
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint: as
            ``GraphConv``. The kernel has the Keras shape ``(K, F, units)``.

    Call arguments:
        inputs: ``[features, stiffness]`` or ``[features, stiffness, mass]``; the stiffness is
            positive semi-definite (positive diagonal; libigl's ``cotmatrix`` is its negative)
            and the mass a vector ``(vertices,)``, a column ``(vertices, 1)`` or a diagonal matrix.

    Input shape:
        ``[(vertices, F), (vertices, vertices), (vertices,)]``, or with a batch axis.
    Output shape:
        ``(vertices, units)`` or ``(batch, vertices, units)``.

    Example:
    >>> import torch
    >>> from lamina.graph import cotangent_laplacian
    >>> L, M = cotangent_laplacian([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2]])
    >>> layer = LaplaceBeltramiConv(3, K=3)
    >>> layer([torch.ones(4, 2), L, M]).shape
    torch.Size([4, 3])
    """

    _num_operators = 2

    def __init__(self, units, K=2, lambda_max=None, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(units, K, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, activity_regularizer,
                         kernel_constraint, bias_constraint, **kwargs)
        if lambda_max is not None and (not isinstance(lambda_max, (int, float)) or isinstance(lambda_max, bool)
                                       or lambda_max <= 0):
            raise ValueError(
                f"LaplaceBeltramiConv expects lambda_max to be a positive float or None; received "
                f'lambda_max={lambda_max!r} (layer "{self.name}").'
            )
        self.lambda_max = None if lambda_max is None else float(lambda_max)

    def _prepare(self, stiffness, mass=None):
        name = f'LaplaceBeltramiConv layer "{self.name}"'
        tensor, layout = graph_ops._as_operator(stiffness, name)
        diagonal = torch.diagonal(tensor, dim1=-2, dim2=-1) if layout == "dense" else \
            tensor.values()[tensor.indices()[-1] == tensor.indices()[-2]]
        if bool((diagonal < 0).any()):
            raise ValueError(
                f"{name} expects a positive semi-definite stiffness matrix (non-negative diagonal, "
                f"as lamina.graph.cotangent_laplacian returns); received a stiffness of shape "
                f"{tuple(tensor.shape)} with negative diagonal entries. Pass -L for a negative "
                f"semi-definite convention such as libigl's cotmatrix."
            )
        return graph_ops.scaled_laplacian(tensor, self.lambda_max, mass=mass)

    def get_config(self):
        config_ = super().get_config()
        config_.update({"K": self.K, "lambda_max": self.lambda_max})
        return config_


@registry.register("layer")
class GlobalGraphPooling(Layer):
    """Pools node features into one vector per graph: mean, max or sum over the nodes.

    Features ``(batch, nodes, F)`` give ``(batch, F)``; a single graph ``(nodes, F)`` gives
    ``(1, F)``. For batches of graphs padded to the same number of nodes, a boolean
    mask ``(batch, nodes)`` (``True`` for real nodes) leaves the padding out: it arrives
    from the previous layer (``_keras_mask``) or as the ``mask`` argument.

    Args:
        mode: ``"mean"`` (default), ``"max"`` or ``"sum"``.

    Call arguments:
        inputs: node features.
        mask: optional ``(batch, nodes)`` (or ``(nodes,)``) mask of real nodes.

    Input shape:
        ``(batch, nodes, F)`` or ``(nodes, F)``.
    Output shape:
        ``(batch, F)`` or ``(1, F)``.

    Example:
    >>> import torch
    >>> x = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> GlobalGraphPooling("mean")(x, mask=torch.tensor([[True, True, False]]))
    tensor([[2.]])
    """

    _MODES = ("mean", "max", "sum")

    def __init__(self, mode="mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in self._MODES:
            raise ValueError(
                f"GlobalGraphPooling expects mode to be one of {self._MODES}; received mode={mode!r} "
                f'(layer "{self.name}").'
            )
        self.mode = mode
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if inputs.ndim not in (2, 3):
            raise ValueError(
                f'Layer "{self.name}" (GlobalGraphPooling) expects node features of shape (nodes, '
                f"features) or (batch, nodes, features); received shape {_fmt(tuple(inputs.shape))}."
            )
        x = inputs if inputs.ndim == 3 else inputs.unsqueeze(0)
        if mask is not None:
            mask = torch.as_tensor(mask, device=x.device)
            mask = mask if mask.ndim == 2 else mask.reshape(1, -1)
            if tuple(mask.shape) != tuple(x.shape[:2]):
                raise ValueError(
                    f'Layer "{self.name}" (GlobalGraphPooling) expects a mask of shape '
                    f"{_fmt(tuple(inputs.shape[:-1]))} for features of shape {_fmt(tuple(inputs.shape))}; "
                    f"received a mask of shape {_fmt(tuple(mask.shape))}."
                )
            keep = mask.to(torch.bool).unsqueeze(-1)
            if self.mode == "max":
                return torch.where(keep, x, torch.finfo(x.dtype).min).amax(dim=1)
            total = torch.where(keep, x, 0.0).sum(dim=1)
            if self.mode == "sum":
                return total
            return total / keep.sum(dim=1).clamp_min(1).to(x.dtype)
        if self.mode == "max":
            return x.amax(dim=1)
        return x.sum(dim=1) if self.mode == "sum" else x.mean(dim=1)

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        return (shape[0], shape[-1]) if len(shape) == 3 else (1, shape[-1])

    def get_config(self):
        config_ = super().get_config()
        config_["mode"] = self.mode
        return config_
