"""Distillation of models of one's own: their logits, a width-scaled copy as the student."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgesmith.compress import distill
from edgesmith.compress.step import StepContext
from edgesmith.compress.student import scaled_architecture, scaled_width
from edgesmith.core.errors import ConfigError


def _k() -> Any:
    from edgesmith.zoo.tfkeras import keras

    return keras()


def _easy_data(shape: tuple[int, ...], classes: int, n: int = 480, seed: int = 0) -> Any:
    """One random prototype per class plus noise: learnable in an epoch or two."""
    from edgesmith.zoo.userdata import data_from_arrays

    rng = np.random.default_rng(seed)
    prototypes = rng.normal(0.0, 1.0, (classes, *shape)).astype(np.float32)
    y = np.arange(n) % classes
    rng.shuffle(y)
    x = prototypes[y] + rng.normal(0.0, 0.5, (n, *shape)).astype(np.float32)
    return data_from_arrays(x, y, seed=seed)


def _residual_cnn(classes: int = 10) -> Any:
    k = _k()
    inputs = k.Input((8, 8, 1))
    a = k.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_a")(inputs)
    b = k.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_b")(a)
    x = k.layers.Add(name="residual")([a, b])
    x = k.layers.Flatten()(x)
    x = k.layers.Dense(32, activation="relu", name="hidden")(x)
    outputs = k.layers.Dense(classes, activation="softmax", name="classes")(x)
    return k.Model(inputs, outputs, name="my_cnn")


def _bigru(classes: int = 4) -> Any:
    k = _k()
    inputs = k.Input((6, 4))
    x = k.layers.Bidirectional(k.layers.GRU(16), name="bigru")(inputs)
    outputs = k.layers.Dense(classes, activation="softmax", name="classes")(x)
    return k.Model(inputs, outputs, name="my_gru")


def _logits_mlp(classes: int = 5) -> Any:
    k = _k()
    return k.Sequential(
        [
            k.Input((12,)),
            k.layers.Dense(32, activation="relu", name="hidden"),
            k.layers.Dense(classes, name="scores"),
        ],
        name="my_mlp",
    )


def _binary_cnn() -> Any:
    k = _k()
    inputs = k.Input((8, 8, 1))
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = k.layers.Flatten()(x)
    x = k.layers.Dense(16, activation="relu", name="hidden")(x)
    outputs = k.layers.Dense(1, activation="sigmoid", name="spam")(x)
    return k.Model(inputs, outputs, name="my_binary")


def _zoo_transformer() -> Any:
    from edgesmith.zoo.builders import build_model

    return build_model("transformer", input_shape=(8, 8), num_classes=4, depth=1, heads=2)


def _train(model: Any, data: Any, epochs: int = 4) -> Any:
    from edgesmith.zoo.tfkeras import set_seed
    from edgesmith.zoo.train import train_loop

    set_seed(0)
    train_loop(model, data, epochs=epochs, learning_rate=3e-3, batch_size=32)
    return model


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


# -- the teacher's logits ---------------------------------------------------------------


def test_a_softmax_dense_is_read_through_a_linear_twin_of_it():
    model = _residual_cnn()
    head = distill.teacher_head(model)
    x = np.random.default_rng(1).normal(size=(6, 8, 8, 1)).astype(np.float32)
    logits = head.model.predict(x, verbose=0)
    assert head.how == "linear twin" and not head.binary
    np.testing.assert_allclose(_softmax(logits), model.predict(x, verbose=0), atol=1e-6)
    # The exact pre-activation: the last layer's kernel on what feeds it.
    hidden = _k().Model(model.inputs, model.get_layer("hidden").output).predict(x, verbose=0)
    kernel, bias = model.get_layer("classes").get_weights()
    np.testing.assert_allclose(logits, hidden @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_a_softmax_layer_after_anything_and_the_zoo_logits_layer_are_read_before_it():
    k = _k()
    inputs = k.Input((4,))
    a, b = k.layers.Dense(3, name="a")(inputs), k.layers.Dense(3, name="b")(inputs)
    summed = k.layers.Add(name="sum")([a, b])
    model = k.Model(inputs, k.layers.Activation("softmax")(summed))
    head = distill.teacher_head(model)
    x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    expected = k.Model(inputs, summed).predict(x, verbose=0)
    assert head.how == "layer input"
    np.testing.assert_allclose(head.model.predict(x, verbose=0), expected, atol=1e-6)
    zoo = _zoo_transformer()
    logits = k.Model(zoo.inputs, zoo.get_layer("logits").output)
    frames = np.random.default_rng(3).normal(size=(3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(
        distill.logits_model(zoo).predict(frames, verbose=0), logits.predict(frames, verbose=0)
    )


def test_logits_outputs_and_a_sigmoid_unit():
    model = _logits_mlp()
    head = distill.teacher_head(model)
    assert head.model is model and head.how == "output" and not head.binary
    binary = _binary_cnn()
    head = distill.teacher_head(binary)
    x = np.random.default_rng(4).normal(size=(5, 8, 8, 1)).astype(np.float32)
    assert head.binary and head.model.output_shape == (None, 1)
    np.testing.assert_allclose(
        _sigmoid(head.model.predict(x, verbose=0)), binary.predict(x, verbose=0), atol=1e-6
    )


def test_a_softmax_conv_with_a_flatten_after_it_keeps_the_flatten():
    k = _k()
    inputs = k.Input((1, 1, 6))
    conv = k.layers.Conv2D(3, 1, activation="softmax", name="head")(inputs)
    model = k.Model(inputs, k.layers.Flatten()(conv))
    head = distill.teacher_head(model)
    x = np.random.default_rng(5).normal(size=(4, 1, 1, 6)).astype(np.float32)
    assert head.model.output_shape == (None, 3)
    np.testing.assert_allclose(
        _softmax(head.model.predict(x, verbose=0)), model.predict(x, verbose=0), atol=1e-6
    )


def test_a_wrapped_last_layer_gives_log_probabilities_of_the_same_softening():
    """A softmax inside a tfmot wrapper has no exact twin: log p softens the same way."""
    from edgesmith.zoo.tfkeras import tfmot

    k = _k()
    inputs = k.Input((4,))
    dense = k.layers.Dense(3, activation="softmax", name="probs")
    wrapped = tfmot().sparsity.keras.prune_low_magnitude(dense)
    model = k.Model(inputs, wrapped(inputs))
    head = distill.teacher_head(model)
    x = np.random.default_rng(6).normal(size=(5, 4)).astype(np.float32)
    assert head.how == "log-probabilities"
    kernel, bias = dense.kernel.numpy(), dense.bias.numpy()
    for temperature in (1.0, 3.0):
        z = head.model.predict(x, verbose=0) / temperature
        np.testing.assert_allclose(_softmax(z), _softmax((x @ kernel + bias) / temperature), 1e-5)


def test_a_model_read_twice_gives_the_same_exact_logits():
    """Reading the head calls the layers after the activation again; a second read is exact."""
    k = _k()
    inputs = k.Input((1, 1, 6))
    conv = k.layers.Conv2D(3, 1, activation="softmax", name="head")(inputs)
    model = k.Model(inputs, k.layers.Dropout(0.1)(k.layers.Flatten()(conv)))
    x = np.random.default_rng(7).normal(size=(4, 1, 1, 6)).astype(np.float32)
    first, second = distill.teacher_head(model), distill.teacher_head(model)
    assert first.how == second.how == "linear twin"
    np.testing.assert_allclose(
        first.model.predict(x, verbose=0), second.model.predict(x, verbose=0), atol=1e-6
    )


def test_several_sigmoid_units_are_refused():
    k = _k()
    inputs = k.Input((4,))
    model = k.Model(inputs, k.layers.Dense(3, activation="sigmoid")(inputs))
    with pytest.raises(ConfigError, match="multi-label"):
        distill.teacher_head(model)


def test_the_binary_loss_is_bce_on_labels_plus_the_softened_teacher_term():
    from edgesmith.zoo.tfkeras import tf

    t = tf()
    teacher = np.array([[2.0], [-1.0]], dtype=np.float32)
    y = np.concatenate([[[1.0], [0.0]], teacher], axis=1).astype(np.float32)
    soft_only = distill.distillation_loss(temperature=2.0, alpha=0.0, binary=True)
    assert np.allclose(soft_only(y, t.constant(teacher)).numpy(), 0.0, atol=1e-6)
    assert float(t.reduce_mean(soft_only(y, t.constant(-teacher)))) > 0.05
    hard_only = distill.distillation_loss(temperature=2.0, alpha=1.0, binary=True)
    student = np.array([[0.5], [0.3]], dtype=np.float32)
    p = _sigmoid(student[:, 0])
    expected = -np.array([np.log(p[0]), np.log(1 - p[1])])
    np.testing.assert_allclose(hard_only(y, t.constant(student)).numpy(), expected, rtol=1e-5)
    # The soft term's gradient is that of BCE(sigmoid(zt/T), sigmoid(zs/T)), times T^2.
    zs = t.Variable(student)
    with t.GradientTape() as tape:
        value = t.reduce_sum(soft_only(y, zs))
    grad = tape.gradient(value, zs).numpy()[:, 0]
    expected_grad = 2.0 * (_sigmoid(student[:, 0] / 2) - _sigmoid(teacher[:, 0] / 2))
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5)


# -- the student's architecture ---------------------------------------------------------


def test_a_residual_cnn_scales_both_branches_together_and_keeps_its_classes():
    model = _residual_cnn()
    plan = scaled_architecture(model, 0.5)
    assert plan.widths["conv_a"] == (16, 8) and plan.widths["conv_b"] == (16, 8)
    assert plan.widths["hidden"] == (32, 16) and plan.widths["classes"] == (10, 10)
    assert plan.unscaled == {"classes": "output"}
    student = plan.build()
    assert student.input_shape == model.input_shape and student.output_shape == (None, 10)
    assert plan.params == (model.count_params(), student.count_params())
    assert student.count_params() < model.count_params()


def test_a_width_bound_to_the_input_or_a_fixed_shape_is_kept():
    k = _k()
    inputs = k.Input((16,))
    x = k.layers.Add()([inputs, k.layers.Dense(16, name="residual")(inputs)])
    x = k.layers.Dense(24, name="to_grid")(x)
    x = k.layers.Reshape((4, 6))(x)
    x = k.layers.Flatten()(x)
    x = k.layers.Dense(32, activation="relu", name="hidden")(x)
    model = k.Model(inputs, k.layers.Dense(3, activation="softmax", name="out")(x))
    plan = scaled_architecture(model, 0.5)
    assert plan.unscaled == {"residual": "input", "to_grid": "fixed shape", "out": "output"}
    assert plan.widths["hidden"] == (32, 16)
    assert plan.build().output_shape == (None, 3)


def test_a_group_that_breaks_the_build_is_left_as_it_is():
    """A slice the graph reading cannot see: found by building, that group alone kept."""
    k = _k()
    inputs = k.Input((16,))
    wide = k.layers.Dense(16, name="wide")(inputs)
    sliced = k.layers.Lambda(lambda t: t[:, :8])(wide)
    x = k.layers.Add()([sliced, k.layers.Dense(8, name="narrow")(inputs)])
    x = k.layers.Dense(32, activation="relu", name="hidden")(x)
    model = k.Model(inputs, k.layers.Dense(3, activation="softmax", name="out")(x))
    plan = scaled_architecture(model, 0.5)
    assert plan.unscaled["wide"] == "build" and plan.unscaled["narrow"] == "build"
    assert plan.widths["hidden"] == (32, 16)
    assert plan.build().output_shape == (None, 3)


def test_recurrent_and_embedding_widths_scale():
    k = _k()
    inputs = k.Input((10,), dtype="int32")
    x = k.layers.Embedding(50, 32, name="embed")(inputs)
    x = k.layers.Bidirectional(k.layers.LSTM(16, return_sequences=True), name="bi")(x)
    x = k.layers.SimpleRNN(12, name="rnn")(x)
    model = k.Model(inputs, k.layers.Dense(2, activation="softmax", name="out")(x))
    plan = scaled_architecture(model, 0.5)
    assert plan.widths["embed"] == (32, 16) and plan.widths["bi"] == (16, 8)
    assert plan.widths["rnn"] == (12, 8)  # 6 rounds to a multiple of 4
    student = plan.build()
    assert student.get_layer("bi").forward_layer.units == 8
    assert student.inputs[0].dtype == model.inputs[0].dtype


def test_attention_keeps_its_heads_and_narrows_each_head():
    from edgesmith.zoo.builders import build_model

    model = build_model("transformer", input_shape=(8, 8), num_classes=4, depth=1, heads=4)
    plan = scaled_architecture(model, 0.5)
    student = plan.build()
    core = student.get_layer("block0_attention")
    assert core.num_heads == 4
    for part in ("query", "key", "value"):
        before, after = plan.widths[f"block0_{part}"]
        assert after < before and after % (2 * core.num_heads) == 0
    # The residual stream (embedding, attention output, MLP output) scales as one width.
    stream = {plan.widths[n][1] for n in ("embed", "block0_attn_out", "block0_mlp_out")}
    assert stream == {32}
    assert student.output_shape == model.output_shape


def test_scaled_width_rounds_to_a_multiple_and_never_below_it():
    assert scaled_width(64, 0.5) == 32 and scaled_width(6, 0.5) == 4
    assert scaled_width(48, 0.5, multiple=16) == 32  # 24 rounds to 32 (banker's: 1.5 -> 2)
    assert scaled_width(64, 2.0) == 128


def test_depth_is_refused_for_a_model_without_a_zoo_builder():
    model, data = _residual_cnn(), _easy_data((8, 8, 1), 10, n=60)
    with pytest.raises(ConfigError, match="depth= only with a zoo architecture"):
        distill.run(model, data, distill.DistillConfig(depth=2, epochs=1), StepContext())


# -- distilling models of one's own -----------------------------------------------------


def _distil(teacher: Any, data: Any, epochs: int = 2, **options: Any) -> Any:
    config = distill.DistillConfig(
        width=0.5, epochs=epochs, learning_rate=3e-3, baseline=False, **options
    )
    return distill.run(teacher, data, config, StepContext(builder={"layout": "image"}))


def _check_student(result: Any, teacher: Any, data: Any, chance: float) -> None:
    from edgesmith.zoo.train import evaluate_model, output_kind

    student = result.model
    assert student.count_params() < teacher.count_params()
    assert student.input_shape == teacher.input_shape
    assert student.output_shape == teacher.output_shape
    assert output_kind(student) == output_kind(teacher) == result.details["output"]
    assert result.details["student"] == f"{teacher.name} x0.5"
    assert result.details["student_params"] == student.count_params()
    assert result.details["teacher_params"] == teacher.count_params()
    assert result.architecture.family is None and "arch" not in result.architecture.builder
    # The accuracy of the student as it will be evaluated and converted (its own output).
    assert evaluate_model(student, data)["accuracy"] > chance + 0.15


@pytest.mark.slow
def test_a_residual_cnn_with_a_softmax_dense_distils_into_its_half_width_copy():
    data = _easy_data((8, 8, 1), 10)
    teacher = _train(_residual_cnn(), data, epochs=3)
    result = _distil(teacher, data)
    _check_student(result, teacher, data, chance=0.1)
    assert result.details["teacher_logits"] == "linear twin"
    assert result.details["widths"]["conv_a"] == {"before": 16, "after": 8}
    assert result.details["unscaled"] == {"classes": "output"}
    assert result.history["soft_loss"][-1] < result.history["soft_loss"][0]


@pytest.mark.slow
def test_a_bidirectional_gru_classifier_distils_with_a_gradient_cap():
    data = _easy_data((6, 4), 4, n=320)
    teacher = _train(_bigru(), data, epochs=3)
    result = _distil(teacher, data)
    _check_student(result, teacher, data, chance=0.25)
    assert result.details["budget"]["clipnorm"] == 1.0
    assert result.details["widths"]["bigru"] == {"before": 16, "after": 8}


@pytest.mark.slow
def test_a_model_that_outputs_logits_gives_a_student_that_outputs_logits():
    data = _easy_data((12,), 5)
    teacher = _train(_logits_mlp(), data, epochs=3)
    config = distill.DistillConfig(width=0.5, epochs=2, learning_rate=3e-3, baseline=True)
    result = distill.run(teacher, data, config, StepContext(builder={"layout": "sequence"}))
    _check_student(result, teacher, data, chance=0.2)
    assert result.details["teacher_logits"] == "output"
    assert type(result.model).__name__ == "Sequential"
    assert result.details["scratch_accuracy"] > 0.35  # the baseline trains on logits too


@pytest.mark.slow
def test_a_binary_sigmoid_model_distils_in_binary_form():
    data = _easy_data((8, 8, 1), 2)
    teacher = _train(_binary_cnn(), data, epochs=4)
    result = _distil(teacher, data, epochs=3)
    _check_student(result, teacher, data, chance=0.5)
    assert result.model.output_shape == (None, 1)
    assert "soft_loss" in result.history


@pytest.mark.slow
def test_the_zoo_transformer_without_its_builder_distils_into_a_copy():
    data = _easy_data((8, 8), 4, n=320)
    teacher = _train(_zoo_transformer(), data, epochs=3)
    result = distill.run(
        teacher,
        data,
        distill.DistillConfig(width=0.5, epochs=2, learning_rate=3e-3, baseline=False),
        StepContext(builder={"layout": "sequence"}),
    )
    _check_student(result, teacher, data, chance=0.25)
    heads = result.model.get_layer("block0_attention").num_heads
    assert result.details["widths"]["block0_query"]["after"] % heads == 0


@pytest.mark.slow
def test_a_zoo_student_still_learns_from_a_model_of_ones_own():
    """student=NAME: the zoo architecture reads the same images; a binary teacher's logit
    becomes two class logits for the zoo's two-class softmax student."""
    from edgesmith.zoo.train import evaluate_model

    data = _easy_data((8, 8, 1), 2)
    teacher = _train(_binary_cnn(), data, epochs=4)
    config = distill.DistillConfig(student="cnn-digits", width=0.5, epochs=3, baseline=False)
    result = distill.run(teacher, data, config, StepContext(builder={"layout": "image"}))
    assert result.details["student"] == "cnn-digits" and result.architecture.family == "cnn"
    assert result.model.output_shape == (None, 2)
    assert evaluate_model(result.model, result.data)["accuracy"] > 0.65


@pytest.mark.slow
def test_a_zoo_teacher_with_its_builder_keeps_the_zoo_path():
    from edgesmith.zoo.builders import build_model

    data = _easy_data((8, 8, 1), 4)
    options = {"width": 0.5, "depth": 1}
    teacher = _train(build_model("cnn", input_shape=(8, 8, 1), num_classes=4, **options), data)
    builder = {"arch": "cnn", "layout": "image", **options}
    config = distill.DistillConfig(width=0.5, epochs=2, baseline=False)
    result = distill.run(teacher, data, config, StepContext(builder=builder))
    assert result.architecture.builder["arch"] == "cnn"
    assert result.architecture.builder["width"] == 0.25
    assert result.details["student"] == "cnn x0.5" and "widths" not in result.details
    assert result.model.count_params() < teacher.count_params()
