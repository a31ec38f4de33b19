"""Tests for lamina.losses: every loss against keras.losses, closed forms, errors and configs."""

import inspect
import json

import numpy as np
import pytest
import torch

from lamina import config, losses, registry

BATCH = 6
REDUCTIONS = ("sum_over_batch_size", "sum", "none", None, "mean", "mean_with_sample_weight")


def _np(x):
    return np.asarray(x.detach().cpu()) if isinstance(x, torch.Tensor) else np.asarray(x)


def _data(kind, shape, seed=0):
    """(y_true, y_pred) float32 numpy arrays suited to a family of losses."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    if kind == "regression":
        return rng.normal(size=shape).astype(f32), rng.normal(size=shape).astype(f32)
    if kind == "positive":
        return rng.uniform(0.0, 2.0, shape).astype(f32), rng.uniform(0.1, 2.0, shape).astype(f32)
    if kind == "binary":
        return rng.integers(0, 2, shape).astype(f32), rng.uniform(0.01, 0.99, shape).astype(f32)
    if kind == "binary_extreme":
        # Probabilities of exactly 0 and 1 exercise the clipping to [epsilon, 1 - epsilon].
        y_true = rng.integers(0, 2, shape).astype(f32)
        return y_true, np.where(rng.random(shape) < 0.5, y_true, 1 - y_true).astype(f32)
    if kind == "binary_logits":
        return rng.integers(0, 2, shape).astype(f32), (3 * rng.normal(size=shape)).astype(f32)
    if kind == "onehot":
        # Unnormalized positive scores exercise the renormalization of probabilities.
        eye = np.eye(shape[-1], dtype=f32)
        labels = eye[rng.integers(0, shape[-1], shape[:-1])]
        return labels, rng.uniform(0.01, 1.0, shape).astype(f32)
    if kind == "onehot_extreme":
        eye = np.eye(shape[-1], dtype=f32)
        y_true = eye[rng.integers(0, shape[-1], shape[:-1])]
        return y_true, eye[rng.integers(0, shape[-1], shape[:-1])]
    if kind == "onehot_logits":
        eye = np.eye(shape[-1], dtype=f32)
        return eye[rng.integers(0, shape[-1], shape[:-1])], (3 * rng.normal(size=shape)).astype(f32)
    if kind == "distribution":
        a, b = rng.uniform(0.01, 1.0, shape), rng.uniform(0.01, 1.0, shape)
        a, b = a / a.sum(-1, keepdims=True), b / b.sum(-1, keepdims=True)
        return a.astype(f32), b.astype(f32)
    if kind == "signs":
        return rng.choice([-1.0, 1.0], shape).astype(f32), rng.normal(size=shape).astype(f32)
    raise ValueError(kind)


# Function name, keyword arguments, input kind, shape.
FUNCTION_CASES = [
    ("mean_squared_error", {}, "regression", (BATCH, 4)),
    ("mean_squared_error", {}, "regression", (BATCH, 3, 4)),
    ("mean_absolute_error", {}, "regression", (BATCH, 4)),
    ("mean_absolute_percentage_error", {}, "regression", (BATCH, 4)),
    ("mean_squared_logarithmic_error", {}, "positive", (BATCH, 4)),
    ("huber", {}, "regression", (BATCH, 4)),
    ("huber", {"delta": 0.3}, "regression", (BATCH, 4)),
    ("log_cosh", {}, "regression", (BATCH, 4)),
    ("cosine_similarity", {}, "regression", (BATCH, 4)),
    ("cosine_similarity", {"axis": 1}, "regression", (BATCH, 3, 4)),
    ("kl_divergence", {}, "distribution", (BATCH, 4)),
    ("poisson", {}, "positive", (BATCH, 4)),
    ("hinge", {}, "binary", (BATCH, 4)),
    ("hinge", {}, "signs", (BATCH, 4)),
    ("squared_hinge", {}, "binary", (BATCH, 4)),
    ("squared_hinge", {}, "signs", (BATCH, 4)),
    ("categorical_hinge", {}, "onehot", (BATCH, 4)),
    ("binary_crossentropy", {}, "binary", (BATCH, 4)),
    ("binary_crossentropy", {"label_smoothing": 0.2}, "binary", (BATCH, 4)),
    ("binary_crossentropy", {}, "binary_extreme", (BATCH, 4)),
    ("binary_focal_crossentropy", {"gamma": 0.5}, "binary_extreme", (BATCH, 4)),
    ("categorical_crossentropy", {}, "onehot_extreme", (BATCH, 5)),
    ("kl_divergence", {}, "onehot_extreme", (BATCH, 5)),
    ("poisson", {}, "onehot_extreme", (BATCH, 5)),
    ("mean_squared_logarithmic_error", {}, "signs", (BATCH, 4)),
    ("mean_absolute_percentage_error", {}, "onehot_extreme", (BATCH, 5)),
    ("binary_crossentropy", {"from_logits": True}, "binary_logits", (BATCH, 4)),
    ("binary_crossentropy", {"from_logits": True, "label_smoothing": 0.1}, "binary_logits",
     (BATCH, 4)),
    ("binary_crossentropy", {"axis": 1}, "binary", (BATCH, 3, 4)),
    ("binary_focal_crossentropy", {}, "binary", (BATCH, 4)),
    ("binary_focal_crossentropy", {"apply_class_balancing": True, "alpha": 0.4, "gamma": 1.5},
     "binary", (BATCH, 4)),
    ("binary_focal_crossentropy", {"from_logits": True, "label_smoothing": 0.1}, "binary_logits",
     (BATCH, 4)),
    ("binary_focal_crossentropy", {"axis": 1}, "binary", (BATCH, 3, 4)),
    ("categorical_crossentropy", {}, "onehot", (BATCH, 5)),
    ("categorical_crossentropy", {"label_smoothing": 0.2}, "onehot", (BATCH, 5)),
    ("categorical_crossentropy", {"from_logits": True}, "onehot_logits", (BATCH, 5)),
    ("categorical_crossentropy", {"from_logits": True, "label_smoothing": 0.1}, "onehot_logits",
     (BATCH, 5)),
    ("categorical_crossentropy", {"from_logits": True}, "onehot_logits", (BATCH, 3, 5)),
]


@pytest.mark.parametrize("name,kwargs,kind,shape", FUNCTION_CASES)
def test_loss_function_matches_keras(keras, name, kwargs, kind, shape):
    y_true, y_pred = _data(kind, shape)
    expected = _np(getattr(keras.losses, name)(y_true, y_pred, **kwargs))
    result = getattr(losses, name)(y_true, y_pred, **kwargs)
    assert isinstance(result, torch.Tensor)
    assert tuple(result.shape) == expected.shape
    np.testing.assert_allclose(_np(result), expected, rtol=1e-5, atol=1e-6)


def test_categorical_crossentropy_axis_matches_keras(keras):
    y_true, y_pred = _data("onehot_logits", (BATCH, 3, 5))
    y_true, y_pred = np.moveaxis(y_true, -1, 1), np.moveaxis(y_pred, -1, 1)  # classes on axis 1
    for kwargs in ({"from_logits": True, "axis": 1}, {"axis": 1, "label_smoothing": 0.1}):
        probs = np.abs(y_pred) if not kwargs.get("from_logits") else y_pred
        expected = _np(keras.losses.categorical_crossentropy(y_true, probs, **kwargs))
        result = losses.categorical_crossentropy(y_true, probs, **kwargs)
        np.testing.assert_allclose(_np(result), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("label_shape", [(BATCH,), (BATCH, 1)])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.float32])
def test_sparse_categorical_crossentropy_matches_keras(keras, label_shape, from_logits,
                                                       label_dtype):
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 5, label_shape).astype(label_dtype)
    kind = "onehot_logits" if from_logits else "onehot"
    y_pred = _data(kind, (BATCH, 5))[1]
    kwargs = {"from_logits": from_logits}
    expected = _np(keras.losses.sparse_categorical_crossentropy(y_true, y_pred, **kwargs))
    result = losses.sparse_categorical_crossentropy(y_true, y_pred, **kwargs)
    assert tuple(result.shape) == (BATCH,)
    np.testing.assert_allclose(_np(result), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("from_logits", [False, True])
def test_sparse_categorical_crossentropy_axis_matches_keras(keras, from_logits):
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 5, (BATCH, 3))
    y_pred = np.abs(_data("onehot_logits", (BATCH, 5, 3))[1])
    kwargs = {"from_logits": from_logits, "axis": 1}
    expected = _np(keras.losses.sparse_categorical_crossentropy(y_true, y_pred, **kwargs))
    result = losses.sparse_categorical_crossentropy(y_true, y_pred, **kwargs)
    np.testing.assert_allclose(_np(result), expected, rtol=1e-5, atol=1e-6)


# Class name, constructor arguments, input kind, shape.
CLASS_CASES = [
    ("MeanSquaredError", {}, "regression", (BATCH, 4)),
    ("MeanAbsoluteError", {}, "regression", (BATCH, 4)),
    ("MeanAbsolutePercentageError", {}, "regression", (BATCH, 4)),
    ("MeanSquaredLogarithmicError", {}, "positive", (BATCH, 4)),
    ("Huber", {}, "regression", (BATCH, 4)),
    ("Huber", {"delta": 0.5}, "regression", (BATCH, 4)),
    ("LogCosh", {}, "regression", (BATCH, 4)),
    ("CosineSimilarity", {}, "regression", (BATCH, 4)),
    ("CosineSimilarity", {"axis": 1}, "regression", (BATCH, 3, 4)),
    ("KLDivergence", {}, "distribution", (BATCH, 4)),
    ("Poisson", {}, "positive", (BATCH, 4)),
    ("Hinge", {}, "binary", (BATCH, 4)),
    ("SquaredHinge", {}, "signs", (BATCH, 4)),
    ("CategoricalHinge", {}, "onehot", (BATCH, 4)),
    ("BinaryCrossentropy", {}, "binary", (BATCH, 4)),
    ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.2}, "binary_logits",
     (BATCH, 4)),
    ("BinaryCrossentropy", {"axis": 1}, "binary", (BATCH, 3, 4)),
    ("BinaryFocalCrossentropy", {}, "binary", (BATCH, 4)),
    ("BinaryFocalCrossentropy", {"apply_class_balancing": True, "from_logits": True, "gamma": 3.0},
     "binary_logits", (BATCH, 4)),
    ("CategoricalCrossentropy", {}, "onehot", (BATCH, 5)),
    ("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "onehot_logits",
     (BATCH, 5)),
    ("CategoricalCrossentropy", {"from_logits": True}, "onehot_logits", (BATCH, 3, 5)),
]


def _sample_weights():
    rng = np.random.default_rng(3)
    weights = rng.uniform(0.0, 2.0, BATCH).astype(np.float32)
    return [None, weights, weights[:, None]]


@pytest.mark.parametrize("name,kwargs,kind,shape", CLASS_CASES)
def test_loss_class_matches_keras(keras, name, kwargs, kind, shape):
    y_true, y_pred = _data(kind, shape)
    for reduction in REDUCTIONS:
        ours = getattr(losses, name)(reduction=reduction, **kwargs)
        theirs = getattr(keras.losses, name)(reduction=reduction, **kwargs)
        for weight in _sample_weights():
            try:
                expected = _np(theirs(y_true, y_pred, sample_weight=weight))
            except RuntimeError:
                # (batch,) weights cannot broadcast to (batch, 3) losses; lamina says so clearly.
                with pytest.raises(ValueError, match="sample_weight of shape"):
                    ours(y_true, y_pred, sample_weight=weight)
                continue
            result = ours(y_true, y_pred, sample_weight=weight)
            assert tuple(result.shape) == expected.shape, (reduction, weight)
            np.testing.assert_allclose(_np(result), expected, rtol=1e-5, atol=1e-6,
                                       err_msg=f"reduction={reduction}, weight={weight}")


@pytest.mark.parametrize("kwargs", [{}, {"from_logits": True}, {"ignore_class": 2},
                                    {"ignore_class": -1, "from_logits": True}])
@pytest.mark.parametrize("label_shape", [(BATCH,), (BATCH, 1)])
def test_sparse_categorical_crossentropy_class_matches_keras(keras, kwargs, label_shape):
    rng = np.random.default_rng(4)
    y_true = rng.integers(0, 5, label_shape)
    y_true.flat[:2] = kwargs.get("ignore_class", 0)
    y_pred = _data("onehot_logits" if kwargs.get("from_logits") else "onehot", (BATCH, 5))[1]
    for reduction in REDUCTIONS:
        ours = losses.SparseCategoricalCrossentropy(reduction=reduction, **kwargs)
        theirs = keras.losses.SparseCategoricalCrossentropy(reduction=reduction, **kwargs)
        for weight in _sample_weights():
            expected = _np(theirs(y_true, y_pred, sample_weight=weight))
            result = ours(y_true, y_pred, sample_weight=weight)
            assert tuple(result.shape) == expected.shape
            np.testing.assert_allclose(_np(result), expected, rtol=1e-5, atol=1e-6,
                                       err_msg=f"reduction={reduction}, weight={weight}")


def test_sparse_categorical_crossentropy_class_keeps_integer_labels():
    # 2**24 + 1 is not representable in float32; the label must reach cross_entropy intact.
    num_classes = 2**24 + 2
    logits = torch.zeros(1, num_classes)
    logits[0, -1] = 30.0
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
    result = loss(torch.tensor([num_classes - 1]), logits)
    assert float(result[0]) < 1e-3


def test_binary_crossentropy_class_expands_rank_1_labels_like_keras(keras):
    y_true, y_pred = _data("binary", (BATCH, 1))
    expected = _np(keras.losses.BinaryCrossentropy()(y_true[:, 0], y_pred))
    np.testing.assert_allclose(_np(losses.BinaryCrossentropy()(y_true[:, 0], y_pred)), expected,
                               rtol=1e-6)


def test_loss_reads_keras_mask_like_keras(keras):
    y_true, y_pred = _data("regression", (BATCH, 4))
    pred = torch.as_tensor(y_pred)
    pred._keras_mask = torch.tensor([True, False, True, True, False, True])
    for reduction in REDUCTIONS:
        expected = _np(keras.losses.MeanSquaredError(reduction=reduction)(y_true, pred))
        result = losses.MeanSquaredError(reduction=reduction)(y_true, pred)
        np.testing.assert_allclose(_np(result), expected, rtol=1e-6)


def test_loss_function_wrapper_matches_keras(keras):
    def scaled_error(y_true, y_pred, scale=1.0):
        return scale * (y_true - y_pred).abs().sum(dim=-1)

    from keras.src.losses import LossFunctionWrapper as keras_wrapper

    def kept_dims_error(y_true, y_pred):
        return (y_true - y_pred).abs().sum(dim=-1, keepdim=True)

    y_true, y_pred = _data("regression", (BATCH, 3))
    for weight in _sample_weights():
        for reduction in ("none", "sum_over_batch_size"):
            ours = losses.LossFunctionWrapper(scaled_error, reduction, scale=2.0)
            theirs = keras_wrapper(scaled_error, reduction, scale=2.0)
            np.testing.assert_allclose(_np(ours(y_true, y_pred, weight)),
                                       _np(theirs(y_true, y_pred, weight)), rtol=1e-6)
            # Per-sample losses of shape (batch, 1) against weights of shape (batch,).
            result = losses.LossFunctionWrapper(kept_dims_error, reduction)(y_true, y_pred, weight)
            expected = keras_wrapper(kept_dims_error, reduction)(y_true, y_pred, weight)
            assert tuple(result.shape) == tuple(expected.shape)
            np.testing.assert_allclose(_np(result), _np(expected), rtol=1e-6)


def test_loss_dtype_float64_matches_keras(keras):
    y_true, y_pred = _data("binary_logits", (BATCH, 4))
    for reduction in ("sum", "sum_over_batch_size"):
        ours = losses.BinaryCrossentropy(from_logits=True, reduction=reduction, dtype="float64")
        theirs = keras.losses.BinaryCrossentropy(from_logits=True, reduction=reduction,
                                                 dtype="float64")
        result = ours(y_true, y_pred)
        assert ours.dtype == "float64" and result.dtype == torch.float64
        # Keras's torch ops.mean and divide_no_nan round float64 through float32; lamina
        # stays in float64, so the two agree to float32 precision only.
        np.testing.assert_allclose(_np(result), _np(theirs(y_true, y_pred)), rtol=1e-6)
    expected = _np(torch.nn.functional.binary_cross_entropy_with_logits(
        torch.as_tensor(y_pred, dtype=torch.float64), torch.as_tensor(y_true, dtype=torch.float64)))
    np.testing.assert_allclose(_np(result), expected, rtol=1e-12)


# ----------------------------------------------------------------------------- closed forms


def test_reduction_divides_by_count_not_weight_sum():
    values_loss = losses.LossFunctionWrapper(lambda y_true, y_pred: y_pred.sum(dim=-1))
    y_pred = torch.tensor([[1.0], [3.0]])
    weight = torch.tensor([1.0, 0.0])
    expected = {"sum_over_batch_size": 0.5, "mean": 0.5, "sum": 1.0, "mean_with_sample_weight": 1.0}
    for reduction, value in expected.items():
        values_loss.reduction = reduction
        assert float(values_loss(torch.zeros(2, 1), y_pred, sample_weight=weight)) == value
    values_loss.reduction = "none"
    assert values_loss(torch.zeros(2, 1), y_pred, sample_weight=weight).tolist() == [1.0, 0.0]


def test_mean_with_sample_weight_all_zero_weights_gives_zero():
    loss = losses.MeanSquaredError(reduction="mean_with_sample_weight")
    assert float(loss([[1.0], [2.0]], [[0.0], [0.0]], sample_weight=[0.0, 0.0])) == 0.0


def test_regression_losses_match_numpy():
    y_true, y_pred = _data("regression", (BATCH, 4))
    error = y_pred - y_true
    abs_error = np.abs(error)
    checks = {
        "mean_squared_error": (error**2).mean(-1),
        "mean_absolute_error": abs_error.mean(-1),
        "mean_absolute_percentage_error": 100 * (abs_error / np.abs(y_true)).mean(-1),
        "huber": np.where(abs_error <= 1.0, 0.5 * error**2, abs_error - 0.5).mean(-1),
        "log_cosh": np.log(np.cosh(error)).mean(-1),
    }
    for name, expected in checks.items():
        np.testing.assert_allclose(_np(getattr(losses, name)(y_true, y_pred)), expected,
                                   rtol=1e-5, atol=1e-6, err_msg=name)


def test_crossentropies_match_numpy():
    eps = config.epsilon()
    y_true, y_pred = _data("binary", (BATCH, 4))
    p = np.clip(y_pred, eps, 1 - eps)
    bce = -(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)).mean(-1)
    np.testing.assert_allclose(_np(losses.binary_crossentropy(y_true, y_pred)), bce, rtol=1e-5)

    y_true, logits = _data("onehot_logits", (BATCH, 5))
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    cce = -(y_true * log_softmax).sum(-1)
    result = losses.categorical_crossentropy(y_true, logits, from_logits=True)
    np.testing.assert_allclose(_np(result), cce, rtol=1e-5)
    labels = y_true.argmax(-1)
    result = losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    np.testing.assert_allclose(_np(result), cce, rtol=1e-5)


def test_binary_crossentropy_from_logits_is_stable():
    logits = torch.tensor([[100.0, -100.0]], requires_grad=True)
    loss = losses.binary_crossentropy([[0.0, 1.0]], logits, from_logits=True)
    loss.sum().backward()
    np.testing.assert_allclose(_np(loss), [100.0], rtol=1e-6)
    assert torch.isfinite(logits.grad).all()


def test_hinge_converts_binary_labels_only_when_all_binary():
    # 0/1 labels become -1/+1; labels already -1/+1 are left as they are.
    assert float(losses.hinge([[0.0]], [[0.5]])) == 1.5
    assert float(losses.hinge([[-1.0, 1.0]], [[0.5, 0.5]])) == 1.0


def test_losses_do_not_sync_with_host():
    # Meta tensors hold no values: any .item() or value-dependent branch would fail.
    meta = torch.device("meta")
    y_true, y_pred = torch.rand(4, 3, device=meta), torch.rand(4, 3, device=meta)
    weight = torch.rand(4, device=meta)
    for name, kwargs, _, _ in CLASS_CASES[:-1]:
        result = getattr(losses, name)(**kwargs)(y_true, y_pred, sample_weight=weight)
        assert result.shape == () and result.device == meta, name
    labels = torch.zeros(4, dtype=torch.long, device=meta)
    for reduction in REDUCTIONS:
        loss = losses.SparseCategoricalCrossentropy(ignore_class=0, reduction=reduction)
        assert loss(labels, y_pred, sample_weight=weight).device == meta


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("label_shape", [(32,), (32, 1)])
def test_categorical_crossentropy_integer_labels_error(label_shape):
    labels = np.zeros(label_shape, dtype=np.int64)
    predictions = np.full((32, 10), 0.1, dtype=np.float32)
    for loss in (losses.categorical_crossentropy, losses.CategoricalCrossentropy()):
        with pytest.raises(ValueError) as info:
            loss(labels, predictions)
        message = str(info.value)
        assert str(label_shape) in message and "(32, 10)" in message
        assert "loss='sparse_categorical_crossentropy'" in message
        assert "to_categorical(y, num_classes)" in message


def test_sparse_categorical_crossentropy_one_hot_labels_error():
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 3\).*categorical_crossentropy"):
        losses.sparse_categorical_crossentropy(np.eye(3)[[0, 1, 2, 0]], np.full((4, 3), 1 / 3))


@pytest.mark.parametrize("name", ["mean_squared_error", "hinge", "kl_divergence", "huber",
                                  "cosine_similarity", "binary_crossentropy"])
def test_mismatched_shapes_error_names_both_shapes(name):
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 5\)"):
        getattr(losses, name)(np.zeros((4, 3), np.float32), np.full((4, 5), 0.5, np.float32))


def test_sample_weight_shape_error():
    with pytest.raises(ValueError, match=r"sample_weight of shape \(5,\).*\(4,\)"):
        losses.MeanSquaredError()(np.zeros((4, 3)), np.zeros((4, 3)), sample_weight=np.ones(5))


def test_invalid_reduction_error():
    with pytest.raises(ValueError, match="reduction='avg'"):
        losses.MeanSquaredError(reduction="avg")


def test_categorical_crossentropy_bool_axis_error():
    with pytest.raises(ValueError, match="axis=True"):
        losses.categorical_crossentropy([[0.0, 1.0]], [[0.5, 0.5]], axis=True)


# ----------------------------------------------------------------------------- configs and registry


def _registered_classes():
    seen = {}
    for name in registry.names("loss"):
        obj = registry.lookup_class("loss", name)
        if inspect.isclass(obj):
            seen[obj.__name__] = obj
    return sorted(seen.items())


def _instance(cls):
    if cls is losses.LossFunctionWrapper:
        return cls(losses.huber, reduction="sum", name="wrapped", delta=0.5)
    return cls(reduction="sum", name="custom_name")


@pytest.mark.parametrize("name,cls", _registered_classes())
def test_loss_config_round_trip(name, cls):
    loss = _instance(cls)
    config_dict = loss.get_config()
    json.dumps(config_dict)
    restored = cls.from_config(json.loads(json.dumps(config_dict)))
    assert type(restored) is cls
    assert restored.get_config() == config_dict
    assert registry.get("loss", registry.serialize("loss", loss)).get_config() == config_dict


@pytest.mark.parametrize("name,kwargs,kind,shape", CLASS_CASES)
def test_loss_config_round_trip_keeps_outputs(name, kwargs, kind, shape):
    y_true, y_pred = _data(kind, shape)
    loss = getattr(losses, name)(**kwargs)
    restored = losses.deserialize(losses.serialize(loss))
    torch.testing.assert_close(restored(y_true, y_pred), loss(y_true, y_pred))


@pytest.mark.parametrize("name", [name for name, _ in _registered_classes()
                                  if name not in ("Loss", "LossFunctionWrapper")])
def test_loss_class_defaults_and_config_match_keras(keras, name):
    ours, theirs = getattr(losses, name)(), getattr(keras.losses, name)()
    assert ours.name == theirs.name
    ours_config, theirs_config = ours.get_config(), theirs.get_config()
    # Keras drops Huber's delta and the axis of CosineSimilarity and
    # SparseCategoricalCrossentropy from its configs; lamina keeps them.
    assert {k: ours_config[k] for k in theirs_config} == theirs_config
    assert set(ours_config) - set(theirs_config) <= {"delta", "axis"}
    ours_params = list(inspect.signature(type(ours)).parameters)
    assert ours_params == list(inspect.signature(type(theirs)).parameters)


@pytest.mark.parametrize("alias,function", [
    ("mse", "mean_squared_error"), ("MSE", "mean_squared_error"),
    ("mae", "mean_absolute_error"), ("MAE", "mean_absolute_error"),
    ("mape", "mean_absolute_percentage_error"), ("MAPE", "mean_absolute_percentage_error"),
    ("msle", "mean_squared_logarithmic_error"), ("MSLE", "mean_squared_logarithmic_error"),
    ("kld", "kl_divergence"), ("KLD", "kl_divergence"),
    ("kullback_leibler_divergence", "kl_divergence"), ("logcosh", "log_cosh"),
    ("huber_loss", "huber"), ("bce", "binary_crossentropy"), ("BCE", "binary_crossentropy"),
    ("sparse_categorical_crossentropy", "sparse_categorical_crossentropy"),
])
def test_loss_registry_aliases(alias, function):
    assert losses.get(alias) is getattr(losses, function)
    assert registry.get("loss", alias) is getattr(losses, function)
    assert losses.serialize(losses.get(alias)) == function


def test_loss_get_matches_keras_lookup(keras):
    from keras.src.losses import ALL_OBJECTS_DICT

    not_ported = {"CTC", "Circle", "Dice", "Tversky", "CategoricalFocalCrossentropy",
                  "ctc", "circle", "dice", "tversky", "categorical_focal_crossentropy"}
    for name, obj in ALL_OBJECTS_DICT.items():
        if name in not_ported:
            continue
        ours = registry.lookup_class("loss", name)
        assert ours.__name__ == obj.__name__, name


def test_loss_get_forms():
    assert isinstance(losses.get("CategoricalCrossentropy"), losses.CategoricalCrossentropy)
    assert losses.get(None) is None
    loss = losses.get({"class_name": "BinaryCrossentropy", "config": {"from_logits": True}})
    assert loss.from_logits is True and loss.name == "binary_crossentropy"
    assert losses.get(losses.hinge) is losses.hinge
    assert isinstance(losses.get(losses.Huber), losses.Huber)
    with pytest.raises(ValueError, match="Unknown loss: 'msee'.*'mse'"):
        losses.get("msee")


def test_loss_function_wrapper_config_round_trip():
    wrapper = losses.LossFunctionWrapper(losses.binary_crossentropy, from_logits=True)
    config_dict = wrapper.get_config()
    assert config_dict["fn"] == "binary_crossentropy" and config_dict["from_logits"] is True
    restored = losses.LossFunctionWrapper.from_config(config_dict)
    assert restored.fn is losses.binary_crossentropy
    y_true, y_pred = _data("binary_logits", (BATCH, 2))
    torch.testing.assert_close(restored(y_true, y_pred), wrapper(y_true, y_pred))


def test_loss_default_names_are_unique():
    first, second = losses.Loss(), losses.Loss()
    assert first.name.startswith("loss") and first.name != second.name
