"""Config audit: objects that would run or import code from a model file are found."""

from __future__ import annotations

import base64
import marshal
from typing import Any

import pytest

from edgesmith.zoo.config_audit import audit_config, known_objects


def _layer(cls: str, name: str, module: str | None = "keras.layers", **config: Any) -> dict:
    layer: dict[str, Any] = {"class_name": cls, "config": {"name": name, **config}}
    if module is not None:
        layer["module"] = module
    return layer


def _model(*layers: dict[str, Any], cls: str = "Sequential") -> dict[str, Any]:
    return {"class_name": cls, "module": "keras", "config": {"name": "m", "layers": list(layers)}}


def _bytecode() -> str:
    return base64.b64encode(marshal.dumps((lambda x: x).__code__)).decode()


@pytest.mark.parametrize("keras3", [True, False])
def test_built_in_layers_pass_and_are_listed_in_order(keras3: bool) -> None:
    dense = _layer("Dense", "d", units=2, activation="relu")
    bi = _layer("Bidirectional", "bi", layer=_layer("LSTM", "rnn", recurrent_activation="sigmoid"))
    audit = audit_config(_model(dense, bi), keras3=keras3)
    assert audit.layers == (("d", "Dense"), ("bi", "Bidirectional"), ("rnn", "LSTM"))
    assert audit.refused == ()


def test_known_objects_come_from_the_installed_versions() -> None:
    k3, k2 = known_objects(True), known_objects(False)
    assert {"Dense", "Functional", "Sequential", "Lambda"} <= k3.classes
    assert {"Dense", "Functional", "TFOpLambda"} <= k2.classes
    assert "TFOpLambda" not in k3.classes  # Keras 3 dropped it: asked, not listed by hand
    assert {"PositionEmbedding", "QuantizeWrapperV2", "PruneLowMagnitude"} <= k2.edgesmith
    assert "relu" in k3.activations and "get" not in k3.activations


@pytest.mark.parametrize(
    ("layer", "why"),
    [
        (_layer("Scale", "s", module="__main__"), "not built into"),
        (_layer("Dense", "s", module="__main__"), "module '__main__' outside Keras"),
        (_layer("Dense", "s", module="os"), "module 'os' outside Keras"),
        (_layer("Dense", "s", activation="no_such_act"), "activation 'no_such_act'"),
        (
            _layer(
                "Dense",
                "s",
                activation={
                    "module": "keras.utils",
                    "class_name": "function",
                    "config": "get_file",
                },
            ),
            "function 'get_file'",
        ),
        (
            _layer(
                "Dense",
                "s",
                kernel_initializer={"module": "mypkg", "class_name": "MyInit", "config": {}},
            ),
            "class 'MyInit'",
        ),
        (
            _layer("Dense", "s", activation={"class_name": "__lambda__", "config": {"code": "x"}}),
            "bytecode",
        ),
        (_layer("Dense", "s", activation={"value": [_bytecode(), None, None]}), "'activation'"),
        (_layer("TorchModuleWrapper", "s", module="keras.layers"), "unpickles"),
    ],
)
def test_code_from_the_file_is_refused_in_keras3_configs(layer: dict[str, Any], why: str) -> None:
    audit = audit_config(_model(_layer("Dense", "ok", units=1), layer), keras3=True)
    assert len(audit.refused) == 1
    name, _, reason = audit.refused[0]
    assert name == "s" and why in reason


def test_users_classes_and_functions_are_accepted_by_name() -> None:
    custom = _layer("Scale", "s", module="__main__", activation="my_act")
    custom["registered_name"] = "mine>Scale"
    assert audit_config(_model(custom), keras3=True).refused != ()
    assert audit_config(_model(custom), keras3=True, user={"Scale", "my_act"}).refused == ()
    assert audit_config(_model(custom), keras3=True, user={"mine>Scale", "my_act"}).refused == ()


def test_lambda_user_override_does_not_hide_bytecode() -> None:
    lam = _layer("Lambda", "f", function=[_bytecode(), None, None], function_type="lambda")
    assert [r[:2] for r in audit_config(_model(lam), keras3=False).refused] == [("f", "Lambda")]
    refused = audit_config(_model(lam), keras3=False, user={"Lambda"}).refused
    assert refused and all(name == "f" for name, _, _ in refused)


@pytest.mark.parametrize(
    ("function", "refused"),
    [
        ("math.add", False),
        ("__operators__.getitem", False),
        ("reshape", False),
        ("io.write_file", True),
        ("compat.v1.io.write_file", True),
        ("print", True),
    ],
)
def test_tf_op_layers_only_call_pure_tensor_functions(function: str, refused: bool) -> None:
    op = _layer("TFOpLambda", "op", module=None, function=function)
    assert bool(audit_config(_model(op, cls="Functional"), keras3=False).refused) is refused


def test_ordinary_strings_are_not_mistaken_for_bytecode() -> None:
    dense = _layer("Dense", "averylongnamewithoutpunctuation", units=1)
    dense["config"]["comment"] = "YWJjZGVmZ2hpamtsbW5vcA=="  # base64, but not of code
    assert audit_config(_model(dense), keras3=True).refused == ()


def test_deep_nesting_raises_recursion_error() -> None:
    nested: Any = 1
    for _ in range(500):
        nested = [nested]
    with pytest.raises(RecursionError):
        audit_config(_model(_layer("Dense", "d", extra=nested)), keras3=True)
