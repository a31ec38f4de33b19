"""lamina.metrics against keras.metrics (the oracle), plus resolve, config, device and dtype checks."""

import inspect
import json
import warnings

import numpy as np
import pytest
import torch

from lamina import metrics, registry

N = 16  # samples per batch
C = 4  # classes / outputs
BATCHES = 3


# ----------------------------------------------------------------------------- data


def _weights(rng, index):
    if index == 1:
        return None  # one batch without weights
    weights = rng.uniform(0.1, 2.0, size=N).astype("float32")
    weights[:3] = 0.0
    return weights


def _binary(rng, index, column=True):
    shape = (N, 1) if column else (N,)
    y_true = rng.integers(0, 2, size=shape).astype("float32")
    y_pred = rng.uniform(size=shape).astype("float32")
    y_pred[:2] = [0.0, 1.0] if not column else [[0.0], [1.0]]  # exact end points
    return y_true, y_pred, _weights(rng, index)


def _scores(rng):
    scores = rng.uniform(size=(N, C)).astype("float32")
    scores[0, :2] = scores[0, 2]  # a tie
    return scores


def _categorical(rng, index):
    labels = rng.integers(0, C, size=N)
    return np.eye(C, dtype="float32")[labels], _scores(rng), _weights(rng, index)


def _sparse(rng, index, column=False):
    labels = rng.integers(0, C, size=(N, 1) if column else N).astype("float32")
    return labels, _scores(rng), _weights(rng, index)


def _sorted_ids(rng, index):
    labels = rng.integers(0, 8, size=N).astype("int32")
    ids = np.stack([rng.permutation(8)[:3] for _ in range(N)]).astype("int32")
    return labels, ids, _weights(rng, index)


def _multilabel(rng, index):
    y_true = rng.integers(0, 2, size=(N, C)).astype("float32")
    return y_true, rng.uniform(size=(N, C)).astype("float32"), _weights(rng, index)


def _logits(rng, index):
    y_true, _, weights = _multilabel(rng, index)
    return y_true, rng.normal(size=(N, C)).astype("float32"), weights


def _zero_rows(rng, index):
    y_true, y_pred, weights = _multilabel(rng, index)
    y_pred[:3] = 0.0  # rows without any positive score predict nothing
    return y_true, y_pred, weights


def _regression(rng, index):
    y_true = rng.normal(size=(N, C)).astype("float32")
    return y_true, (y_true + rng.normal(scale=0.5, size=(N, C))).astype("float32"), _weights(rng, index)


def _positive(rng, index):
    y_true = rng.uniform(0.5, 3.0, size=(N, C)).astype("float32")
    return y_true, rng.uniform(0.0, 3.0, size=(N, C)).astype("float32"), _weights(rng, index)


def _exact(rng, index):
    y_true = rng.integers(0, 3, size=(N, 1)).astype("float32")
    return y_true, rng.integers(0, 3, size=(N, 1)).astype("float32"), _weights(rng, index)


def _to_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


# (id, lamina factory, keras factory, data). Factories take the metrics module.
CASES = [
    ("accuracy", lambda m: m.Accuracy(), _exact),
    ("binary_accuracy", lambda m: m.BinaryAccuracy(), _binary),
    ("binary_accuracy_threshold", lambda m: m.BinaryAccuracy(threshold=0.3), lambda r, i: _binary(r, i, False)),
    ("categorical_accuracy", lambda m: m.CategoricalAccuracy(), _categorical),
    ("sparse_categorical_accuracy", lambda m: m.SparseCategoricalAccuracy(), _sparse),
    ("sparse_categorical_accuracy_column", lambda m: m.SparseCategoricalAccuracy(), lambda r, i: _sparse(r, i, True)),
    ("top_k", lambda m: m.TopKCategoricalAccuracy(k=2), _categorical),
    ("sparse_top_k", lambda m: m.SparseTopKCategoricalAccuracy(k=2), _sparse),
    ("sparse_top_k_column", lambda m: m.SparseTopKCategoricalAccuracy(k=1), lambda r, i: _sparse(r, i, True)),
    ("sparse_top_k_sorted", lambda m: m.SparseTopKCategoricalAccuracy(k=2, from_sorted_ids=True), _sorted_ids),
    ("mse", lambda m: m.MeanSquaredError(), _regression),
    ("mae", lambda m: m.MeanAbsoluteError(), _regression),
    ("mape", lambda m: m.MeanAbsolutePercentageError(), _positive),
    ("msle", lambda m: m.MeanSquaredLogarithmicError(), _positive),
    ("rmse", lambda m: m.RootMeanSquaredError(), _regression),
    ("r2", lambda m: m.R2Score(), _regression),
    ("r2_variance_weighted", lambda m: m.R2Score(class_aggregation="variance_weighted_average"), _regression),
    ("r2_raw", lambda m: m.R2Score(class_aggregation=None), _regression),
    ("r2_adjusted", lambda m: m.R2Score(num_regressors=3), _regression),
    ("r2_adjusted_fallback", lambda m: m.R2Score(num_regressors=500), _regression),
    ("true_positives", lambda m: m.TruePositives(), _binary),
    ("false_positives", lambda m: m.FalsePositives(thresholds=[0.3, 0.5, 0.7]), _binary),
    ("true_negatives", lambda m: m.TrueNegatives(thresholds=[0.0, 0.5, 1.0]), _multilabel),
    ("false_negatives", lambda m: m.FalseNegatives(thresholds=0.7), _binary),
    ("precision", lambda m: m.Precision(), _binary),
    ("precision_thresholds", lambda m: m.Precision(thresholds=[0.2, 0.5, 0.9]), _multilabel),
    ("precision_even_thresholds", lambda m: m.Precision(thresholds=[0.0, 0.25, 0.5, 0.75, 1.0]), _binary),
    ("precision_top_k", lambda m: m.Precision(top_k=2), _multilabel),
    ("precision_class_id", lambda m: m.Precision(class_id=1), _multilabel),
    ("precision_top_k_class_id", lambda m: m.Precision(top_k=1, class_id=2, thresholds=0.3), _multilabel),
    ("recall", lambda m: m.Recall(), _binary),
    ("recall_thresholds", lambda m: m.Recall(thresholds=[0.2, 0.5, 0.9]), _multilabel),
    ("recall_top_k", lambda m: m.Recall(top_k=2), _multilabel),
    ("recall_class_id", lambda m: m.Recall(class_id=3), _multilabel),
    ("auc_roc", lambda m: m.AUC(), _binary),
    ("auc_roc_flat", lambda m: m.AUC(num_thresholds=7), lambda r, i: _binary(r, i, False)),
    ("auc_pr", lambda m: m.AUC(curve="PR"), _binary),
    ("auc_pr_minoring", lambda m: m.AUC(curve="PR", summation_method="minoring"), _binary),
    ("auc_roc_majoring", lambda m: m.AUC(summation_method="majoring", num_thresholds=11), _binary),
    ("auc_prgain", lambda m: m.AUC(curve="PRGAIN"), _binary),
    ("auc_uneven_thresholds", lambda m: m.AUC(thresholds=[0.3, 0.1, 0.8, 0.55]), _binary),
    ("auc_uneven_pr", lambda m: m.AUC(curve="PR", thresholds=[0.3, 0.1, 0.8]), _multilabel),
    ("auc_flattened_2d", lambda m: m.AUC(), _multilabel),
    ("auc_multi_label", lambda m: m.AUC(multi_label=True), _multilabel),
    ("auc_multi_label_pr", lambda m: m.AUC(multi_label=True, curve="PR", num_labels=C), _multilabel),
    ("auc_multi_label_uneven", lambda m: m.AUC(multi_label=True, thresholds=[0.2, 0.4, 0.9]), _multilabel),
    ("auc_multi_label_weights", lambda m: m.AUC(multi_label=True, label_weights=[0.1, 0.2, 0.3, 0.4]), _multilabel),
    ("auc_label_weights", lambda m: m.AUC(label_weights=[0.1, 0.2, 0.3, 0.4]), _multilabel),
    ("auc_from_logits", lambda m: m.AUC(from_logits=True, curve="PR"), _logits),
    ("f1_none", lambda m: m.F1Score(), _multilabel),
    ("f1_zero_rows", lambda m: m.F1Score(average="macro"), _zero_rows),
    ("f1_micro", lambda m: m.F1Score(average="micro", threshold=0.5), _multilabel),
    ("f1_macro", lambda m: m.F1Score(average="macro", threshold=0.4), _multilabel),
    ("f1_weighted", lambda m: m.F1Score(average="weighted"), _categorical),
    ("fbeta", lambda m: m.FBetaScore(beta=2.0, threshold=0.6), _multilabel),
    ("fbeta_micro", lambda m: m.FBetaScore(average="micro", beta=0.5), _categorical),
    ("wrapper", lambda m: m.MeanMetricWrapper(m.binary_accuracy, threshold=0.3), _binary),
    ("wrapper_top_k", lambda m: m.MeanMetricWrapper(m.sparse_top_k_categorical_accuracy, k=3), _sparse),
]


def _assert_close(ours, theirs, case):
    # float32 sums of weighted counts carry an absolute error of about eps * magnitude.
    theirs = _to_numpy(theirs)
    atol = 1e-6 * max(1.0, float(np.abs(theirs).max(initial=0.0)))
    np.testing.assert_allclose(_to_numpy(ours), theirs, rtol=1e-6, atol=atol, err_msg=case)


@pytest.mark.parametrize("case, factory, data", CASES, ids=[c[0] for c in CASES])
def test_metric_matches_keras_over_batches_and_reset(keras, case, factory, data):
    ours, theirs = factory(metrics), factory(keras.metrics)
    rng = np.random.default_rng(len(case))
    for index in range(BATCHES):
        y_true, y_pred, weights = data(rng, index)
        # lamina gets torch tensors for y_pred and numpy elsewhere, as training loops pass them.
        ours.update_state(y_true, torch.from_numpy(y_pred), sample_weight=weights)
        theirs.update_state(y_true, y_pred, sample_weight=weights)
        with warnings.catch_warnings():  # Keras's adjusted-R2 fallback warns; lamina stays sync-free
            warnings.simplefilter("ignore", UserWarning)
            expected = theirs.result()
        _assert_close(ours.result(), expected, f"{case} after batch {index}")
    ours.reset_state()
    theirs.reset_state()
    for variable in ours.variables:
        assert not variable.any()
    y_true, y_pred, weights = data(rng, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = theirs(y_true, y_pred, sample_weight=weights)
    _assert_close(ours(y_true, y_pred, sample_weight=weights), expected, case)


@pytest.mark.parametrize("shape, weight_shape", [
    ((N,), None), ((N, 3), (N,)), ((N, 3), (N, 3)), ((N, 2, 3), (N, 2)), ((N,), ()), ((N, 3), "int"), ((), "int"),
])
@pytest.mark.parametrize("name", ["Mean", "Sum"])
def test_reduction_matches_keras(keras, name, shape, weight_shape):
    ours, theirs = getattr(metrics, name)(), getattr(keras.metrics, name)()
    rng = np.random.default_rng(1)
    for step in range(BATCHES):
        values = rng.normal(size=shape).astype("float32")
        if weight_shape == "int":  # the trainer's loss tracker passes the batch size
            weights = step + 2
        else:
            weights = None if weight_shape is None else rng.uniform(size=weight_shape).astype("float32")
        ours.update_state(torch.from_numpy(values), sample_weight=weights)
        theirs.update_state(values, sample_weight=weights)
        _assert_close(ours.result(), theirs.result(), name)


def test_categorical_accuracy_with_extra_label_axis_matches_keras(keras):
    rng = np.random.default_rng(2)
    y_true, y_pred, _ = _categorical(rng, 0)
    ours = metrics.categorical_accuracy(y_true[:, None, :], torch.from_numpy(y_pred))
    theirs = keras.metrics.categorical_accuracy(y_true[:, None, :], y_pred)
    assert tuple(ours.shape) == tuple(theirs.shape) == (N, 1)
    _assert_close(ours, theirs, "categorical_accuracy")


def test_top_k_larger_than_num_classes_counts_every_sample():
    # Keras's torch backend raises here; TensorFlow (and lamina) count every label as in the top k.
    m = metrics.TopKCategoricalAccuracy()
    assert m([[0, 1, 0], [1, 0, 0]], [[0.5, 0.2, 0.3], [0.1, 0.2, 0.7]]).item() == 1.0


def test_mean_matches_closed_form():
    m = metrics.Mean()
    m.update_state([1.0, 3.0, 5.0, 7.0], sample_weight=[1.0, 1.0, 0.0, 0.0])
    m.update_state([[2.0, 4.0]], sample_weight=[2.0])
    # (1 + 3 + 2 * 3) / (1 + 1 + 2)
    assert m.result().item() == pytest.approx(2.5)
    assert m.result().shape == ()


@pytest.mark.parametrize("metric", [metrics.Mean(), metrics.AUC(multi_label=True), metrics.F1Score(average="macro"),
                                    metrics.R2Score(), metrics.Precision()])
def test_result_is_zero_before_any_update(metric):
    assert metric.result().item() == 0.0


def test_auc_matches_sklearn_with_many_thresholds():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 2, size=400)
    y_pred = np.clip(y_true * 0.3 + rng.uniform(size=400) * 0.7, 0, 1).astype("float32")
    m = metrics.AUC(num_thresholds=4000)
    m.update_state(y_true, y_pred)
    assert m.result().item() == pytest.approx(sklearn_metrics.roc_auc_score(y_true, y_pred), abs=1e-3)


@pytest.mark.parametrize("name", ["binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
                                  "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
                                  "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
                                  "mean_squared_logarithmic_error"])
def test_function_forms_match_keras(keras, name):
    rng = np.random.default_rng(5)
    if name.startswith("sparse"):
        y_true, y_pred, _ = _sparse(rng, 0)
    elif "categorical" in name:
        y_true, y_pred, _ = _categorical(rng, 0)
    elif name == "binary_accuracy":
        y_true, y_pred, _ = _binary(rng, 0)
    else:
        y_true, y_pred, _ = _positive(rng, 0)
    kwargs = {"k": 2} if "top_k" in name else {}
    ours = getattr(metrics, name)(y_true, torch.from_numpy(y_pred), **kwargs)
    theirs = getattr(keras.metrics, name)(y_true, y_pred, **kwargs)
    assert tuple(ours.shape) == tuple(theirs.shape)
    _assert_close(ours, theirs, name)


# ----------------------------------------------------------------------------- resolve


@pytest.mark.parametrize("identifier", ["accuracy", "acc", "Accuracy", "ACC"])
@pytest.mark.parametrize("true_shape, pred_shape", [
    ((8, 1), (8, 1)), ((8,), (8, 1)), ((8,), (8, 5)), ((8, 1), (8, 5)),
    ((8, 5), (8, 5)), ((8, 3, 1), (8, 3, 5)), ((8, 3), (8, 3, 5)), ((8,), (8,)),
])
def test_resolve_accuracy_follows_keras_compile(keras, identifier, true_shape, pred_shape):
    from keras.src.trainers import compile_utils

    theirs = compile_utils.get_metric(identifier, np.zeros(true_shape), np.zeros(pred_shape))
    ours = metrics.resolve(identifier, torch.zeros(true_shape), torch.zeros(pred_shape))
    assert type(ours).__name__ == type(theirs).__name__
    assert ours.name == theirs.name == identifier


@pytest.mark.parametrize("identifier", ["mse", "MAE", "mape", "auc", "precision", "recall", "binary_accuracy",
                                        "categorical_accuracy", "sparse_categorical_accuracy",
                                        "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
                                        "mean_squared_error", "root_mean_squared_error", "r2_score", "f1_score",
                                        "RootMeanSquaredError", "AUC"])
def test_resolve_string_keeps_user_spelling_as_name(keras, identifier):
    from keras.src.trainers import compile_utils

    theirs = compile_utils.get_metric(identifier, np.zeros((4, 3)), np.zeros((4, 3)))
    ours = metrics.resolve(identifier, torch.zeros(4, 3), torch.zeros(4, 3))
    assert type(ours).__name__ == type(theirs).__name__
    assert ours.name == theirs.name == identifier


def test_resolve_wraps_plain_function_under_its_snake_case_name():
    def myCustomMetric(y_true, y_pred):  # noqa: N802
        return torch.abs(y_true - y_pred)

    m = metrics.resolve(myCustomMetric, torch.zeros(4, 1), torch.zeros(4, 1))
    assert isinstance(m, metrics.MeanMetricWrapper)
    assert m.name == "my_custom_metric"
    m.update_state(torch.zeros(2, 1), torch.tensor([[1.0], [3.0]]))
    assert m.result().item() == pytest.approx(2.0)


def test_resolve_wraps_builtin_function_forms():
    m = metrics.resolve(metrics.sparse_categorical_accuracy, torch.zeros(4), torch.zeros(4, 3))
    assert type(m) is metrics.MeanMetricWrapper and m.name == "sparse_categorical_accuracy"


def test_resolve_returns_metric_instance_unchanged():
    metric = metrics.Precision(name="p")
    assert metrics.resolve(metric, torch.zeros(4, 1), torch.zeros(4, 1)) is metric
    assert metric.name == "p"


def test_resolve_instantiates_class_and_config_dict():
    m = metrics.resolve(metrics.Recall, torch.zeros(4, 1), torch.zeros(4, 1))
    assert type(m) is metrics.Recall and m.name == "recall"
    m = metrics.resolve({"class_name": "BinaryAccuracy", "config": {"threshold": 0.2, "name": "b"}},
                        torch.zeros(4, 1), torch.zeros(4, 1))
    assert type(m) is metrics.BinaryAccuracy and m.threshold == 0.2 and m.name == "b"


@pytest.mark.parametrize("identifier, error", [(None, ValueError), ("no_such_metric", ValueError)])
def test_resolve_rejects_bad_identifiers(identifier, error):
    with pytest.raises(error):
        metrics.resolve(identifier, torch.zeros(4, 1), torch.zeros(4, 1))


# ----------------------------------------------------------------------------- registry and config

# Non-default constructor arguments, so that round trips test something.
CONFIG_ARGS = {
    "Metric": {"name": "base"},
    "MeanMetricWrapper": {"fn": metrics.binary_accuracy, "threshold": 0.3, "name": "w"},
    "BinaryAccuracy": {"threshold": 0.7},
    "TopKCategoricalAccuracy": {"k": 2},
    "SparseTopKCategoricalAccuracy": {"k": 3, "from_sorted_ids": True},
    "R2Score": {"class_aggregation": None, "num_regressors": 2},
    "TruePositives": {"thresholds": [0.2, 0.4]},
    "FalsePositives": {"thresholds": 0.3},
    "Precision": {"thresholds": [0.1, 0.9], "top_k": 2, "class_id": 1},
    "Recall": {"top_k": 1},
    "AUC": {"num_thresholds": 50, "curve": "PR", "summation_method": "minoring", "multi_label": True,
            "num_labels": 3, "label_weights": [0.5, 1.0, 2.0], "from_logits": True},
    "FBetaScore": {"average": "macro", "beta": 0.5, "threshold": 0.4},
    "F1Score": {"average": "weighted"},
}


def _registered_classes():
    table = {}
    for name in registry.names("metric"):
        obj = registry.lookup_class("metric", name)
        if inspect.isclass(obj):
            table[registry.registered_name("metric", obj)] = obj
    return table


REGISTERED = _registered_classes()


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_config_round_trip_every_registered_class(name):
    cls = REGISTERED[name]
    metric = cls(**CONFIG_ARGS.get(name, {}))
    config = metric.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = cls.from_config(config)
    assert type(clone) is cls
    assert clone.get_config() == config
    assert metrics.deserialize(metrics.serialize(metric)).get_config() == config


@pytest.mark.parametrize("name", sorted(set(REGISTERED) - {"Metric", "MeanMetricWrapper"}))
def test_config_matches_keras(keras, name):
    args = dict(CONFIG_ARGS.get(name, {}), name="m")
    ours = REGISTERED[name](**args).get_config()
    theirs = getattr(keras.metrics, name)(**args).get_config()
    if "label_weights" in theirs and theirs["label_weights"] is not None:
        theirs["label_weights"] = _to_numpy(theirs["label_weights"]).tolist()
    assert ours == theirs


def test_auc_config_keeps_explicit_thresholds(keras):
    ours = metrics.AUC(thresholds=[0.5, 0.25], name="a").get_config()
    theirs = keras.metrics.AUC(thresholds=[0.5, 0.25], name="a").get_config()
    assert ours == {**theirs, "thresholds": [float(t) for t in theirs["thresholds"]]}
    assert ours["num_thresholds"] == 4


def test_registry_knows_every_keras_name_for_implemented_classes(keras):
    from keras.src.metrics import ALL_OBJECTS_DICT

    implemented = {key: cls for key, cls in ALL_OBJECTS_DICT.items() if cls.__name__ in REGISTERED}
    assert len(implemented) > 50
    for key, cls in implemented.items():
        assert registry.lookup_class("metric", key).__name__ == cls.__name__, key
    assert type(registry.get("metric", "acc")) is metrics.Accuracy


def test_get_serialize_deserialize_function_forms():
    config = metrics.serialize(metrics.top_k_categorical_accuracy)
    assert config == {"class_name": "function", "config": "top_k_categorical_accuracy"}
    assert metrics.deserialize(config) is metrics.top_k_categorical_accuracy
    assert metrics.get(config) is metrics.top_k_categorical_accuracy
    assert metrics.get(metrics.mean_squared_error) is metrics.mean_squared_error
    assert metrics.get(None) is None
    assert type(metrics.get("MSE")) is metrics.MeanSquaredError


@pytest.mark.parametrize("name", registry.names("metric_function"))
def test_function_forms_serialize_to_the_equivalent_class_name(name):
    fn = getattr(metrics, name)
    assert registry.serialize("metric", fn) == name
    metric = registry.get("metric", name)
    assert isinstance(metric, metrics.Metric) and metric.name == name
    assert metrics.deserialize(metrics.serialize(fn)) is fn


def test_mean_metric_wrapper_config_round_trip_keeps_function_and_kwargs():
    m = metrics.MeanMetricWrapper(metrics.binary_accuracy, name="b", threshold=0.9)
    clone = metrics.MeanMetricWrapper.from_config(m.get_config())
    assert clone._fn is metrics.binary_accuracy and clone._fn_kwargs == {"threshold": 0.9}
    assert clone([1.0], [0.8]).item() == 0.0


def test_mean_metric_wrapper_unregistered_function_cannot_serialize():
    m = metrics.MeanMetricWrapper(lambda y_true, y_pred: y_pred)
    with pytest.raises(ValueError, match="not registered"):
        m.get_config()


# ----------------------------------------------------------------------------- state, device, dtype


def _sample_batch(name):
    rng = np.random.default_rng(0)
    if name in ("CategoricalAccuracy", "TopKCategoricalAccuracy", "F1Score", "FBetaScore"):
        return _categorical(rng, 0)
    if name in ("SparseCategoricalAccuracy", "SparseTopKCategoricalAccuracy"):
        return _sparse(rng, 0)
    if name in ("R2Score", "MeanSquaredError", "MeanAbsoluteError", "RootMeanSquaredError"):
        return _regression(rng, 0)
    if name in ("MeanAbsolutePercentageError", "MeanSquaredLogarithmicError"):
        return _positive(rng, 0)
    return _binary(rng, 0)


STATEFUL = sorted(set(REGISTERED) - {"Metric", "MeanMetricWrapper", "Mean", "Sum"})


SYNC_FREE_CASES = [(name, REGISTERED[name], {}) for name in STATEFUL] + [
    ("Precision", metrics.Precision, {"top_k": 2, "class_id": 1}),
    ("Recall", metrics.Recall, {"thresholds": [0.0, 0.5, 1.0]}),
    ("R2Score", metrics.R2Score, {"num_regressors": 2}),
    ("AUC", metrics.AUC, {"multi_label": True, "curve": "PR"}),
    ("AUC", metrics.AUC, {"curve": "PRGAIN", "label_weights": [1.0, 2.0, 1.0, 1.0]}),
    ("AUC", metrics.AUC, {"thresholds": [0.2, 0.9], "from_logits": True}),
    ("F1Score", metrics.F1Score, {"average": "weighted"}),
]


@pytest.mark.parametrize(
    "name, cls, kwargs", SYNC_FREE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(SYNC_FREE_CASES)]
)
def test_update_state_follows_input_device_without_host_sync(name, cls, kwargs):
    # Meta tensors have no data: any .item(), bool(tensor) or .cpu() in update/result raises.
    metric = cls(**kwargs)
    batch = _multilabel(np.random.default_rng(0), 0) if kwargs else _sample_batch(name)
    y_true, y_pred, weights = (torch.from_numpy(x).to("meta") for x in batch)
    metric.update_state(y_true, y_pred, sample_weight=weights)
    assert metric.variables and all(v.device.type == "meta" for v in metric.variables)
    assert metric.result().device.type == "meta"
    metric.reset_state()


@pytest.mark.parametrize("name", STATEFUL)
def test_update_state_keeps_metric_dtype_and_moves_with_inputs(name):
    metric = REGISTERED[name]()
    held = list(metric.variables)
    y_true, y_pred, weights = (torch.from_numpy(x) for x in _sample_batch(name))
    metric.update_state(y_true.double(), y_pred.double(), sample_weight=weights.double())
    assert all(v.device.type == "cpu" and v.dtype == torch.float32 for v in metric.variables)
    assert metric.result().dtype == torch.float32
    metric.update_state(y_true.to("meta"), y_pred.to("meta"))
    assert all(v.device.type == "meta" and v.dtype == torch.float32 for v in metric.variables)
    assert all(a is b for a, b in zip(held, metric.variables))  # moved in place, references stay valid


@pytest.mark.parametrize("name", ["Mean", "Precision", "AUC", "BinaryAccuracy", "F1Score", "R2Score"])
def test_float64_metric_keeps_float64_state(name):
    metric = REGISTERED[name](dtype="float64")
    y_true, y_pred, weights = (torch.from_numpy(x) for x in _sample_batch(name))
    if name == "Mean":
        metric.update_state(y_pred, sample_weight=weights)
    else:
        metric.update_state(y_true, y_pred, sample_weight=weights)
    assert metric.dtype == "float64"
    assert all(v.dtype == torch.float64 for v in metric.variables)
    assert metric.result().dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", STATEFUL)
def test_update_state_on_cuda_matches_cpu(name):
    cpu, gpu = REGISTERED[name](), REGISTERED[name]()
    batch = [torch.from_numpy(x) for x in _sample_batch(name)]
    cpu.update_state(*batch[:2], sample_weight=batch[2])
    gpu.update_state(*(x.cuda() for x in batch[:2]), sample_weight=batch[2].cuda())
    assert all(v.is_cuda for v in gpu.variables)
    torch.testing.assert_close(gpu.result().cpu(), cpu.result(), rtol=1e-6, atol=1e-5)
    gpu.update_state(*batch[:2])  # back to the CPU with the inputs, keeping the counts
    cpu.update_state(*batch[:2])
    assert all(v.device.type == "cpu" for v in gpu.variables)
    torch.testing.assert_close(gpu.result(), cpu.result(), rtol=1e-6, atol=1e-5)


def test_update_state_does_not_track_gradients():
    y_pred = torch.rand(8, 3, requires_grad=True)
    for metric in (metrics.MeanSquaredError(), metrics.AUC(), metrics.F1Score(), metrics.R2Score()):
        metric.update_state(torch.rand(8, 3).round(), y_pred)
        assert not any(v.requires_grad for v in metric.variables)
        assert not metric.result().requires_grad


def test_reset_state_zeroes_in_place():
    m = metrics.Precision(thresholds=[0.3, 0.6])
    before = [v.data_ptr() for v in m.variables]
    m.update_state([1, 0, 1], [0.9, 0.8, 0.1])
    m.reset_state()
    assert [v.data_ptr() for v in m.variables] == before
    assert all(not v.any() for v in m.variables)


def test_call_updates_then_returns_result():
    m = metrics.BinaryAccuracy()
    assert m([1, 0], [0.9, 0.9]).item() == 0.5
    assert m([1, 1], [0.9, 0.9]).item() == 0.75


def test_keras_style_custom_metric_with_assign():
    class BinaryTruePositives(metrics.Metric):
        def __init__(self, name="binary_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_variable(shape=(), initializer="zeros", name="true_positives")

        def update_state(self, y_true, y_pred, sample_weight=None):
            values = torch.logical_and(torch.as_tensor(y_true).bool(), torch.as_tensor(y_pred).bool())
            self.true_positives.assign(self.true_positives + values.float().sum())

        def result(self):
            return self.true_positives

    m = BinaryTruePositives()
    m.update_state([1, 1, 0], [1, 0, 0])
    m.update_state([1, 1], [1, 1])
    assert m.result().item() == 3.0 and m.variables == [m.true_positives]
    m.reset_state()
    assert m.result().item() == 0.0
    assert m.get_config() == {"name": "binary_true_positives", "dtype": "float32"}


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_signature_and_default_name_match_keras(keras, name):
    from keras.src.utils.naming import to_snake_case

    ours = inspect.signature(REGISTERED[name])
    theirs = inspect.signature(getattr(keras.metrics, name))
    assert list(ours.parameters) == list(theirs.parameters)
    assert [p.default for p in ours.parameters.values()] == [p.default for p in theirs.parameters.values()]
    if name not in ("Metric", "MeanMetricWrapper"):
        default_name = theirs.parameters["name"].default or to_snake_case(name)
        assert REGISTERED[name]().name == default_name


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("factory", [
    lambda: metrics.AUC(curve="area"),
    lambda: metrics.AUC(summation_method="trapezoid"),
    lambda: metrics.AUC(num_thresholds=1),
    lambda: metrics.AUC(num_labels=3),
    lambda: metrics.Precision(thresholds=[0.5, 1.5]),
    lambda: metrics.Recall(thresholds=-0.1),
    lambda: metrics.FBetaScore(beta=2),
    lambda: metrics.FBetaScore(average="samples"),
    lambda: metrics.F1Score(threshold=0.0),
    lambda: metrics.R2Score(class_aggregation="mean"),
    lambda: metrics.R2Score(num_regressors=-1),
    lambda: metrics.Mean(dtype="float8"),
])
def test_invalid_arguments_raise_value_error(factory):
    with pytest.raises(ValueError):
        factory()


@pytest.mark.parametrize("metric", [metrics.F1Score(), metrics.R2Score(), metrics.AUC(multi_label=True)])
def test_shape_checked_metrics_reject_non_2d_inputs(metric):
    with pytest.raises(ValueError, match="2"):
        metric.update_state(torch.zeros(4), torch.zeros(4))


def test_class_id_needs_2d_predictions():
    with pytest.raises(ValueError, match="class_id"):
        metrics.Precision(class_id=1).update_state(torch.zeros(4), torch.zeros(4))


def test_mean_metric_wrapper_rejects_non_callable():
    with pytest.raises(TypeError, match="callable"):
        metrics.MeanMetricWrapper("mse")
