"""``Model``: a Layer that can be compiled, trained, evaluated, summarized and saved.

The methods here are thin: training runs in ``lamina.training.trainer``, files are
written by ``lamina.saving``, the summary table by ``lamina.models.summary``.
``Model(inputs, outputs)`` builds a functional model (``lamina.models.functional``).
"""

from __future__ import annotations

import torch

from lamina.layers.base import Layer

__all__ = ["Model"]


class Model(Layer):
    """A trainable model: subclass it with layers and a ``call``, or build it from tensors.

    ``Model(inputs, outputs)`` builds a functional model from ``lamina.Input``
    tensors. Subclassing works as in Keras: create layers in ``__init__`` and
    write ``call(self, inputs, training=None)``.

    Args:
        name: model name (default ``"functional"``/the snake-cased class name).
        trainable: whether the weights are trained. Default True.

    Example:
    >>> import numpy as np
    >>> from lamina.layers import Dense
    >>> class TwoLayer(Model):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.hidden = Dense(8, activation="relu")
    ...         self.out = Dense(1)
    ...     def call(self, inputs):
    ...         return self.out(self.hidden(inputs))
    >>> model = TwoLayer()
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> history = model.fit(np.zeros((8, 3)), np.zeros((8, 1)), epochs=2, verbose=0)
    >>> sorted(history.history)
    ['loss']
    """

    def __new__(cls, *args, **kwargs):
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            from lamina.models.functional import Functional

            return super().__new__(Functional)
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        if args or "inputs" in kwargs or "outputs" in kwargs:
            raise TypeError(
                f"{type(self).__name__}.__init__ received positional arguments or inputs/outputs; "
                f"a subclassed model takes only keyword arguments such as name=..."
            )
        allowed = {k: kwargs.pop(k) for k in ("name", "trainable", "dtype") if k in kwargs}
        super().__init__(**allowed, **kwargs)
        self.stop_training = False
        self.history = None
        self._trainer = None
        self._compile_config = None

    # ------------------------------------------------------------------ compile & train
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True):
        """Configure the model for training.

        Args:
            optimizer: name or optimizer instance. Default ``"rmsprop"``, as Keras.
            loss: name, function or ``lamina.losses.Loss``.
            loss_weights: float scaling the loss.
            metrics: list of metrics (names such as ``"accuracy"``, functions or
                ``lamina.metrics.Metric`` objects), computed without sample weights.
            weighted_metrics: metrics that take ``sample_weight`` / ``class_weight`` into account.
            run_eagerly: run the steps as plain Python (no ``torch.compile``); with
                ``jit_compile=True`` it disables compiling, with a warning, as Keras.
            steps_per_execution: accepted for Keras compatibility; lamina runs one
                step per batch.
            jit_compile: True compiles the steps with ``torch.compile``: a train step's
                forward pass, loss and gradients as one graph (``torch.func.grad``), then
                the optimizer's fused update; the test and predict steps' forward pass and
                loss. A model that cannot be traced as one graph (recurrent layers, whose
                fused kernels ``torch.func.grad`` cannot differentiate, or ``add_loss``
                losses) compiles its train step's forward pass and loss instead. The first
                step runs eagerly to build the model and metrics. As with Keras's compiled
                functions, a train step is traced once: a later change to a layer attribute
                (``trainable``, a dropout rate) takes effect after ``compile()`` is called
                again; new shapes, dtypes, devices or sample weights retrace it. On the CPU
                the whole-step graph is then called without Dynamo's per-call checks for
                batches like those it has seen; weights and buffers replaced by tensors of
                another dtype, device or shape are seen as the next ``fit``, ``evaluate`` or
                ``predict`` begins. If compiling fails, lamina warns
                with the reason and runs eagerly. ``"auto"`` (default) means False, as in
                Keras with the torch backend. The time spent compiling is in
                ``model.compile_time``; inductor caches compiled code on disk
                (``TORCHINDUCTOR_CACHE_DIR``), so a second run of the same model
                compiles much faster. ``LAMINA_COMPILE_BACKEND`` (environment variable)
                picks another ``torch.compile`` backend, e.g. ``"aot_eager"``. A
                ``torch.compile`` mode name (a lamina extension) compiles in that mode:
                ``"reduce-overhead"`` replays the compiled steps as CUDA graphs, which
                removes the per-kernel launch cost of small batches on a GPU (outputs
                of the predict step are copied out of the graph's memory);
                ``"max-autotune"`` searches kernel configurations (long compiles).
            auto_scale_loss: under the ``"mixed_float16"`` policy
                (``lamina.mixed_precision.set_global_policy``), wrap the optimizer in a
                ``LossScaleOptimizer``. Default True. A mixed policy set before
                ``compile`` runs the steps under ``torch.autocast`` in its compute dtype,
                with float32 weights and float32 model outputs.

        >>> from lamina import Sequential, Input
        >>> from lamina.layers import Dense
        >>> model = Sequential([Input((4,)), Dense(2, activation="softmax")])
        >>> model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        >>> type(model.optimizer).__name__
        'Adam'
        """
        import warnings

        from lamina.training.trainer import JIT_MODES, Trainer

        if jit_compile not in ("auto", True, False, None) and jit_compile not in JIT_MODES:
            raise ValueError(
                f"compile(jit_compile={jit_compile!r}) is not supported: use True (torch.compile), "
                f"False, 'auto' (eager on the torch backend, as in Keras), or a torch.compile "
                f"mode: {', '.join(repr(m) for m in JIT_MODES)}."
            )
        jit_mode = jit_compile if isinstance(jit_compile, str) and jit_compile in JIT_MODES else None
        jit_compile = jit_compile is True or jit_mode is not None
        if jit_compile and run_eagerly:
            warnings.warn("If `run_eagerly` is True, then `jit_compile` cannot also be True. "
                          "Disabling `jit_compile`.", stacklevel=2)
            jit_compile = False
        self._trainer = Trainer(self, optimizer, loss, metrics, weighted_metrics, loss_weights,
                                jit_compile=jit_compile, auto_scale_loss=auto_scale_loss,
                                jit_mode=jit_mode if jit_compile else None)
        self._compile_config = {
            "optimizer": optimizer, "loss": loss, "loss_weights": loss_weights,
            "metrics": metrics, "weighted_metrics": weighted_metrics,
        }

    @property
    def compiled(self) -> bool:
        """Whether ``compile()`` has been called."""
        return self._trainer is not None

    @property
    def jit_compile(self) -> bool:
        """Whether the steps run through ``torch.compile`` (``compile(jit_compile=True)``)."""
        return self._trainer is not None and self._trainer.jit_compile

    @property
    def compile_time(self) -> float:
        """Seconds spent in ``torch.compile`` so far (0.0 when running eagerly)."""
        return 0.0 if self._trainer is None else self._trainer.compile_time

    @property
    def optimizer(self):
        """The compiled optimizer (None before ``compile``)."""
        return None if self._trainer is None else self._trainer.optimizer

    @property
    def loss(self):
        """The loss given to ``compile`` (as given: a name, function or Loss)."""
        return None if self._trainer is None else self._trainer.loss_identifier

    @property
    def metrics(self) -> list:
        """The loss tracker and the compiled metrics, as ``Metric`` objects."""
        return [] if self._trainer is None else self._trainer.all_metrics()

    @property
    def metrics_names(self) -> list[str]:
        """``["loss"]``, plus ``"compile_metrics"`` once metrics are compiled (as Keras 3)."""
        if self._trainer is None:
            return []
        if _as_list_any(self._trainer.metric_identifiers) or _as_list_any(self._trainer.weighted_metric_identifiers):
            return ["loss", "compile_metrics"]
        return ["loss"]

    def get_metrics_result(self) -> dict:
        """The current values of the loss tracker and the metrics, as python floats (Keras's API).

        >>> import numpy as np
        >>> from lamina import Sequential, Input
        >>> from lamina.layers import Dense
        >>> model = Sequential([Input((2,)), Dense(1)])
        >>> model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
        >>> _ = model.evaluate(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
        >>> sorted(model.get_metrics_result())
        ['loss', 'mae']
        """
        from lamina.training.trainer import _logs_floats

        logs = None if self._trainer is None else self._trainer.logs
        return {} if logs is None else _logs_floats(logs)

    def reset_metrics(self) -> None:
        """Reset the state of every metric."""
        if self._trainer is not None:
            self._trainer.reset_metrics()

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss plus regularization and ``add_loss`` losses, as a 0-d tensor."""
        return self._require_trainer().compute_loss(x, y, y_pred, sample_weight)

    def train_step(self, data):
        """One optimisation step on ``data = (x, y, sample_weight)``; returns the logs.

        Override it to customise training, as in Keras.
        """
        return self._trainer.train_step(data)

    def test_step(self, data):
        """One evaluation step on ``data = (x, y, sample_weight)``; returns the logs."""
        return self._trainer.test_step(data)

    def predict_step(self, data):
        """The model's output for ``data = (x, y, sample_weight)`` (y is ignored).

        A compiled model runs it under its mixed precision policy and ``jit_compile``.
        """
        if self._trainer is not None:
            return self._trainer.predict_step(data)
        return self(data[0], training=False)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Train the model for ``epochs`` passes over the data; returns a ``History``.

        Args:
            x: inputs: a NumPy array / tensor / DataFrame, a list or dict of them
                (multi-input models), a generator or ``torch.utils.data`` Dataset /
                DataLoader yielding ``(x, y)`` or ``(x, y, sample_weight)``.
            y: targets, same kinds as ``x`` (omit when ``x`` yields them).
            batch_size: samples per step. Default 32.
            epochs: index of the last epoch to train (with ``initial_epoch``).
            verbose: 0 silent, 1 progress bar, 2 one line per epoch, ``"auto"`` = 1.
            callbacks: list of ``lamina.callbacks.Callback``.
            validation_split: fraction of the data (the last samples, before
                shuffling) held out for validation.
            validation_data: ``(x_val, y_val)`` / ``(x_val, y_val, sample_weight)`` or a dataset.
            shuffle: shuffle the training data each epoch (``"batch"``: batch order only).
            class_weight: dict ``{class_index: weight}`` scaling the loss per sample.
            sample_weight: per-sample loss weights, shape ``(num_samples,)``.
            initial_epoch: epoch to start from (to resume training).
            steps_per_epoch: batches per epoch (default: the whole data).
            validation_steps, validation_batch_size, validation_freq: as Keras.

        Returns:
            A ``History`` whose ``.history`` maps ``"loss"``, each metric name and
            their ``"val_"`` versions to per-epoch values.

        A plain ``Sequential`` trained eagerly runs its layers' ``call`` methods back to back
        after a first full call of each batch shape (the checks of ``Layer.__call__`` passed
        once); torch forward hooks registered on it during ``fit`` take effect in the next.
        """
        from lamina.training import trainer

        return trainer.fit(self, x, y, batch_size, epochs, verbose, callbacks, validation_split,
                           validation_data, shuffle, class_weight, sample_weight, initial_epoch,
                           steps_per_epoch, validation_steps, validation_batch_size, validation_freq)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False, **kwargs):
        """Loss and metrics on the given data.

        Returns the loss as a float when no metrics were compiled, else the list
        ``[loss, metric_1, ...]`` in compile order, or a dict with ``return_dict=True``.
        """
        from lamina.training import trainer

        if kwargs:
            raise TypeError(f"evaluate got unexpected keyword argument(s) {sorted(kwargs)}.")
        return trainer.evaluate(self, x, y, batch_size, verbose, sample_weight, steps, callbacks, return_dict)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Predictions as NumPy arrays, computed in batches in inference mode.

        The result is preallocated and filled batch by batch, so memory stays at
        the size of the output plus one batch.
        """
        from lamina.training import trainer

        return trainer.predict(self, x, batch_size, verbose, steps, callbacks)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One training step on a single batch; returns the loss (and metrics), as Keras."""
        from lamina.training import data, trainer

        trainer_ = self._require_trainer()
        if class_weight is not None and sample_weight is not None:
            raise ValueError(
                "train_on_batch received both class_weight and sample_weight; pass one of them "
                "(fold the class weights into sample_weight if you need both)."
            )
        device = self._device_for_batch()
        batch = tuple(data.to_tensor(v, device) for v in (x, y, sample_weight))
        trainer_.reset_metrics()  # each call reports its own batch, as Keras does
        trainer._set_class_weight(trainer_, class_weight, device)
        try:
            logs = self.train_step(batch)
        finally:
            trainer._set_class_weight(trainer_, None, device)
        return self._batch_result(trainer_, logs, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Loss (and metrics) on a single batch, without updating the weights."""
        from lamina.training import data

        trainer_ = self._require_trainer()
        trainer_.reset_metrics()
        batch = tuple(data.to_tensor(v, self._device_for_batch()) for v in (x, y, sample_weight))
        with torch.no_grad():
            logs = self.test_step(batch)
        return self._batch_result(trainer_, logs, return_dict)

    def predict_on_batch(self, x):
        """Predictions for a single batch, as NumPy arrays."""
        from lamina.training import data, trainer

        with torch.inference_mode():
            y_pred = self.predict_step((data.to_tensor(x, self._device_for_batch()), None, None))
        return trainer._to_numpy_structure(y_pred)

    def _device_for_batch(self):
        from lamina import config
        from lamina.training.trainer import _move_to_device

        device = config.get_device()
        _move_to_device(self, self._trainer, device)
        return device

    @staticmethod
    def _batch_result(trainer_, logs, return_dict):
        from lamina.training import trainer

        result = trainer._logs_floats(logs)
        return result if return_dict else trainer._flatten_in_order(trainer_, result)

    def _require_trainer(self):
        from lamina.training.trainer import _require_compiled

        return _require_compiled(self, "training")

    # ------------------------------------------------------------------ inspection
    @property
    def layers(self) -> list[Layer]:
        """The model's direct sub-layers, in order."""
        return self._sublayers()

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by ``name`` or by ``index`` in ``layers``.

        >>> from lamina import Sequential, Input
        >>> from lamina.layers import Dense
        >>> Sequential([Input((2,)), Dense(1, name="out")]).get_layer("out").units
        1
        """
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(
            f"No such layer: {name!r}. Existing layers are: {[l.name for l in self.layers]}."
        )

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """Print Keras's summary table: layers, output shapes and parameter counts.

        Args:
            line_length: total width (default 88, or the terminal width - 4).
            positions: relative column end positions.
            print_fn: called with the summary text instead of printing it.
            expand_nested: also list the layers of nested models.
            show_trainable: add a column telling whether each layer is trainable.
            layer_range: ``[first_name, last_name]`` to show only part of the model.
        """
        from lamina.models.summary import print_summary

        print_summary(self, line_length, positions, print_fn, expand_nested, show_trainable, layer_range)

    def build(self, input_shape=None):
        """Build a subclassed model by calling it once on zeros of ``input_shape``."""
        self.built = True
        if input_shape is not None and type(self).call is not Model.call:
            from lamina import config

            self._build_shape = tuple(input_shape)
            shape = tuple(1 if s is None else int(s) for s in input_shape)
            with torch.no_grad():
                self(torch.zeros(shape, dtype=config.torch_dtype()), training=False)

    def _maybe_build(self, inputs, args=(), kwargs=None) -> None:
        # A subclassed model builds its layers during its first real call; no dummy pass.
        if type(self).build is Model.build:
            from lamina.layers.base import _shape_of

            self._build_shape = _shape_of(inputs)
            self.built = True
            return
        super()._maybe_build(inputs, args, kwargs)

    # ------------------------------------------------------------------ saving
    def save(self, filepath, overwrite=True, **kwargs):
        """Save architecture, weights, optimizer state and compile settings to one file.

        See ``lamina.saving.save_model``.
        """
        from lamina import saving

        saving.save_model(self, filepath, overwrite=overwrite, **kwargs)

    def save_weights(self, filepath, overwrite=True):
        """Save only the weights (safetensors). See ``lamina.saving.save_weights``."""
        from lamina import saving

        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False):
        """Load weights saved by ``save_weights`` or ``save``."""
        from lamina import saving

        saving.load_weights(self, filepath, skip_mismatch=skip_mismatch)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Create a model from ``get_config()``: a functional config gives a functional model."""
        if "input_layers" in config and "output_layers" in config:
            from lamina.models.functional import Functional

            return Functional.from_config(config, custom_objects)
        return cls(**config)

    def export(self, filepath, format="", verbose=None, input_signature=None, **kwargs):
        """Export for inference: ``format="onnx"`` (``.onnx``) or ``"torch"`` (``.pt2``).

        The batch axis stays dynamic. See ``lamina.export.export_model`` and docs/deploy.md.
        """
        from lamina.export import export_model

        return export_model(self, filepath, format=format or None, verbose=verbose,
                            input_signature=input_signature, **kwargs)

    def get_compile_config(self) -> dict | None:
        """The arguments given to ``compile``, serialized (None if not compiled)."""
        from lamina.saving.serialize import serialize_compile_config

        if self._trainer is None:
            return None
        return serialize_compile_config(self)

    def compile_from_config(self, config_: dict) -> None:
        """Compile with settings produced by ``get_compile_config``."""
        from lamina.saving.serialize import deserialize_compile_config

        self.compile(**deserialize_compile_config(config_))


def _as_list_any(value) -> bool:
    if isinstance(value, dict):
        return any(_as_list_any(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(v is not None and (not isinstance(v, (list, tuple)) or _as_list_any(v)) for v in value)
    return value is not None
