"""``edgesmith inspect``: what a model file is and what each stage would do with it.

Nothing from the file runs unless the user says so: the config is read first
(:func:`~edgesmith.zoo.safe_load.inspect_model_file`) and the model is loaded (safe mode)
only when nothing in it is refused, or with ``--trust-model`` / ``--custom-objects``.
A Keras 3 model is rebuilt as tf-keras (checked on random samples) and each technique's
layer plan (``compress.prune.plan`` and its peers) is asked about the tf-keras model.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from edgesmith.commands import command, emit_json, store_option, trust_options

TECHNIQUES = ("prune", "qat", "cluster")
REBUILD_FIX = "replace the layer with supported ones, or keep the model in Keras 3 tools"
_NOT_PLANNED = "not planned: the model was not loaded"


def register(commands: Any) -> None:
    sub = command(
        commands,
        "inspect",
        _inspect,
        "show what a model file holds and what compress/convert would do with each layer",
        "Inspect a model file of your own (Keras 3 or tf-keras .keras/.h5, SavedModel), a "
        "model folder (zoo or `edgesmith compress` output) or a trained zoo model, without "
        "running any code from the file: the config is read first, and the model is loaded "
        "(in Keras' safe mode) only when nothing in it would run code, or when you pass "
        "--trust-model or --custom-objects. Shows the format, the Keras version, the family, "
        "the parameters, the input and output shapes and the output kind; per layer its "
        "class and parameters, whether prune, qat and cluster act on it (or why not), and "
        "how a Keras 3 layer is rebuilt as tf-keras for tfmot. Everything that would be "
        "refused (a Lambda layer, an unknown custom object, a layer with no rebuild, a layer "
        "a technique cannot handle) is listed with its fix. Exit status: 0 when the model "
        "can go through every stage, 2 when something is refused (one line per reason on "
        "stderr).",
        "edgesmith inspect my.keras",
        "edgesmith inspect my.h5 --json my-inspect.json",
        "edgesmith inspect my.keras --json -            # JSON on stdout only",
        "edgesmith inspect lambda.keras --trust-model   # you trust the file's author",
        "edgesmith inspect custom.keras --custom-objects my_layers.py",
        "edgesmith inspect out/cnn-pruned",
        "edgesmith inspect cnn-digits",
    )
    sub.add_argument(
        "model",
        metavar="MODEL",
        help="your .keras/.h5 file or SavedModel folder, a model folder, or a zoo name",
    )
    sub.add_argument(
        "--json",
        metavar="OUT",
        help="write everything as JSON to OUT and print it ('-': stdout only); "
        "the tables are then left out",
    )
    trust_options(sub)
    store_option(sub)


def _inspect(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from edgesmith.console import err, out

    report = inspect_model(
        args.model, trust=args.trust_model, custom_objects=args.custom_objects, store=args.store
    )
    if args.json:
        emit_json(report, args.json)
    else:
        for renderable in render(report):
            out.print(renderable)
    for item in report["refused"]:
        where = f"{item['layer']} ({item['class']})" if item["layer"] else args.model
        err.print(
            f"[bold red]refused[/] at {item['stage']}: {escape(where)}: {escape(item['why'])}; "
            f"{escape(item['fix'])}",
            highlight=False,
            soft_wrap=True,
        )
    return 2 if report["refused"] else 0


# --- the report ----------------------------------------------------------------------------


def inspect_model(
    model: str | os.PathLike[str],
    *,
    trust: bool = False,
    custom_objects: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Everything ``edgesmith inspect`` shows, as a JSON-able dict (see ``--help``).

    Example:
        >>> report = inspect_model("my.keras")  # doctest: +SKIP
        >>> [layer["prune"]["applies"] for layer in report["layers"]]  # doctest: +SKIP
        [True, False, True]
    """
    from edgesmith.zoo.safe_load import REFUSED_FIX, inspect_model_file, load_model_file

    file, folder = _resolve(model, store)
    objects = None
    if custom_objects is not None:
        from edgesmith.zoo.safe_load import load_custom_objects

        objects = load_custom_objects(custom_objects)
    info = inspect_model_file(file, custom_objects=objects)
    report: dict[str, Any] = {
        "file": str(file),
        "folder": str(folder) if folder is not None else None,
        "format": info.format,
        "keras_version": info.keras_version,
        "keras3": info.keras3,
        "family": None,
        "params": None,
        "inputs": [],
        "outputs": [],
        "output_kind": None,
        "layers": [_unloaded_row(name, cls) for name, cls in info.layers if cls != "InputLayer"],
        "refused": [],
        "rebuild_check": None,
    }
    refused = report["refused"]
    if not info.has_keras_model:
        why = "a SavedModel without Keras metadata holds a TensorFlow graph, no Keras model"
        fix = "convert the folder as it is (edgesmith convert); to compress, save a Keras model"
        refused.append(_refusal("", "", why, "load", fix))
        return report
    if info.refused and not trust:
        for name, cls, why in info.refused:
            refused.append(_refusal(name, cls, why, "load", REFUSED_FIX))
        return report  # nothing is loaded: loading would run the file's code
    loaded, _ = load_model_file(file, trust=trust, custom_objects=objects)
    tf_model = loaded
    rows: list[dict[str, Any]]
    if info.keras3:
        tf_model, rows = _keras3_rows(loaded, report)
    else:
        rows = [
            _row(layer.name, type(layer).__name__, layer.count_params()) for layer in loaded.layers
        ]
        rows = [r for r in rows if r["class"] != "InputLayer"]
    _fill_header(report, loaded, tf_model)
    if tf_model is not None:
        statuses = _technique_statuses(tf_model)
        _attach(rows, statuses, keras3=info.keras3)
        for technique in TECHNIQUES:
            for row in rows:
                status = row[technique]
                if status.get("unsupported"):
                    pattern = status.get("exclude") or f"^{re.escape(row['name'])}$"
                    refused.append(
                        _refusal(
                            row["name"],
                            row["class"],
                            f"{technique}: {status['why']}",
                            technique,
                            f"leave it out of the step with exclude='{pattern}'",
                        )
                    )
    report["layers"] = rows
    return report


def _resolve(
    model: str | os.PathLike[str], store: str | os.PathLike[str] | None
) -> tuple[Path, Path | None]:
    """(the model file to read, the model folder it belongs to or None)."""
    from edgesmith.zoo.store import MODEL_FILE, ModelStore
    from edgesmith.zoo.user_model import check_model_path, is_model_folder, is_user_model

    if is_user_model(model):
        return Path(model), None
    if is_model_folder(model):
        return Path(model) / MODEL_FILE, Path(model)
    check_model_path(model)  # a path that does not exist: a clear error, not a zoo lookup
    from edgesmith.zoo.registry import get_spec

    get_spec(str(model))  # an unknown name lists the known ones
    models = ModelStore(store)
    models.card(str(model))  # not trained yet: says how to train it
    return models.path(str(model)) / MODEL_FILE, models.path(str(model))


def _fill_header(report: dict[str, Any], loaded: Any, tf_model: Any) -> None:
    from edgesmith.zoo.train import output_kind
    from edgesmith.zoo.user_model import detect_family

    described = tf_model if tf_model is not None else loaded
    report["family"] = detect_family(described)
    report["params"] = int(loaded.count_params())
    report["inputs"] = [_tensor(t) for t in loaded.inputs]
    report["outputs"] = [_tensor(t) for t in loaded.outputs]
    try:
        report["output_kind"] = output_kind(described)
    except Exception:  # a graph output_kind cannot read is described as unknown
        report["output_kind"] = None


def _tensor(tensor: Any) -> dict[str, Any]:
    """Name (of the layer that makes it), shape and dtype of a model's input or output."""
    shape = [None if d is None else int(d) for d in tuple(tensor.shape)]
    dtype = getattr(tensor.dtype, "name", tensor.dtype)
    history = getattr(tensor, "_keras_history", None)
    layer = getattr(history, "operation", None) or getattr(history, "layer", None)
    name = getattr(layer, "name", None) or str(getattr(tensor, "name", "")).split(":")[0]
    return {"name": name, "shape": shape, "dtype": str(dtype)}


def _row(name: str, cls: str, params: int | None) -> dict[str, Any]:
    return {"name": name, "class": cls, "params": params, "rebuild": None}


def _unloaded_row(name: str, cls: str) -> dict[str, Any]:
    row = _row(name, cls, None)
    row.update({t: {"applies": False, "why": _NOT_PLANNED} for t in TECHNIQUES})
    return row


def _refusal(layer: str, cls: str, why: str, stage: str, fix: str) -> dict[str, str]:
    return {"layer": layer, "class": cls, "why": why, "stage": stage, "fix": fix}


# --- Keras 3: the rebuild ------------------------------------------------------------------


def _keras3_rows(model3: Any, report: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """(the tf-keras rebuild or None, one row per Keras 3 layer/operation with its rebuild)."""
    from edgesmith.core.errors import ModelFileError
    from edgesmith.zoo.keras3 import rebuild_supported, to_tf_keras, unsupported_layers

    supported = rebuild_supported()
    operations = _keras3_operations(model3)
    bad = {name for name, _ in unsupported_layers(model3)}
    rows = []
    for op in operations:
        cls = type(op).__name__
        params = int(op.count_params()) if getattr(op, "built", False) else 0
        row = _row(op.name, cls, params)
        if op.name in bad:
            problem = _rebuild_problem(op)
            row["rebuild"] = f"none: {problem}"
            report["refused"].append(_refusal(op.name, cls, problem, "rebuild", REBUILD_FIX))
        else:
            how = supported.get(cls) or supported.get(f"ops.{cls}") or "tf-keras"
            row["rebuild"] = how.split(";")[0]  # the activation note is in rewrites if it applies
        rows.append(row)
    if bad:
        report["rebuild_check"] = {"passed": False, "error": "layers with no rebuild"}
        _no_plan(rows, "not planned: the model has no tf-keras rebuild")
        return None, rows
    try:
        tf_model, check = to_tf_keras(model3)
    except ModelFileError as exc:
        report["rebuild_check"] = {"passed": False, "error": str(exc)}
        report["refused"].append(_refusal("", "", str(exc), "rebuild", REBUILD_FIX))
        _no_plan(rows, "not planned: the tf-keras rebuild failed its check")
        return None, rows
    report["rebuild_check"] = check
    for line in check.get("rewrites", []):
        name, _, how = line.partition(": ")
        for row in rows:
            if row["name"] == name:
                row["rebuild"] = how
    return tf_model, rows


def _keras3_operations(model3: Any) -> list[Any]:
    """Every layer and operation of a Keras 3 model, nested models flattened, inputs left out."""
    found: list[Any] = []
    seen: set[int] = set()

    def visit(model: Any) -> None:
        for op in getattr(model, "operations", getattr(model, "layers", [])):
            if id(op) in seen or type(op).__name__ == "InputLayer":
                continue
            seen.add(id(op))
            if hasattr(op, "operations") and hasattr(op, "inputs"):
                visit(op)
            else:
                found.append(op)

    visit(model3)
    return found


def _rebuild_problem(op: Any) -> str:
    """Why a Keras 3 layer has no tf-keras rebuild, in the rebuild's own words."""
    from edgesmith.zoo.keras3 import rebuild_problem

    try:
        why = rebuild_problem(op)
    except Exception:  # a diagnosis only: never let it hide the refusal itself
        why = None
    return why or f"class {type(op).__name__} has no tf-keras rebuild"


def _no_plan(rows: list[dict[str, Any]], why: str) -> None:
    for row in rows:
        row.update({t: {"applies": False, "why": why} for t in TECHNIQUES})


# --- the techniques' layer plans -----------------------------------------------------------


def _technique_statuses(tf_model: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """technique -> tf-keras layer name -> {applies, why[, unsupported]}."""
    from edgesmith.compress import cluster, prune, qat

    names = [layer.name for layer in tf_model.layers if type(layer).__name__ != "InputLayer"]
    if any(type(layer).__name__.startswith("Quantize") for layer in tf_model.layers):
        why = "already quantization-aware: compress the model it came from"
        return {t: {n: {"applies": False, "why": why} for n in names} for t in TECHNIQUES}
    modules = {"prune": (prune, prune.PruneConfig), "qat": (qat, qat.QATConfig)}
    modules["cluster"] = (cluster, cluster.ClusterConfig)
    return {t: _plan_statuses(tf_model, names, *modules[t]) for t in TECHNIQUES}


def _plan_statuses(
    tf_model: Any, names: list[str], module: Any, config: type
) -> dict[str, dict[str, Any]]:
    from edgesmith.core.errors import ConfigError

    try:
        return _from_plan(module.plan(tf_model, config()), names)
    except ConfigError:
        pass
    # The plan stops at the layers it cannot handle: ask about each layer alone (every
    # other one excluded) to say which they are and why.
    statuses = {}
    for name in names:
        try:
            alone = module.plan(tf_model, config(exclude=f"^(?!{re.escape(name)}$)"))
        except ConfigError as exc:
            statuses[name] = {"applies": False, "why": _cannot(exc), "unsupported": True}
            continue
        except Exception as exc:  # a diagnosis: whatever the technique hit on this layer
            why = f"cannot be planned ({type(exc).__name__}: {' '.join(str(exc).split())})"
            statuses[name] = {"applies": False, "why": why[:300], "unsupported": True}
            continue
        statuses[name] = _from_plan(alone, [name])[name]
    return statuses


def _cannot(exc: Any) -> str:
    problem = getattr(exc, "problem", str(exc))
    expected = getattr(exc, "expected", None)
    text = f"{problem.split(': ', 1)[-1]}"
    return f"{text} (handles {expected})" if expected else text


def _from_plan(plan: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    statuses: dict[str, dict[str, Any]] = {}
    for name in names:
        if name in plan.targets:
            statuses[name] = {"applies": True, "why": ""}
        elif name in plan.left:
            statuses[name] = {"applies": False, "why": plan.left[name]}
        elif name in plan.unsupported:
            cls = plan.unsupported[name]
            statuses[name] = {"applies": False, "why": f"cannot handle {cls}", "unsupported": True}
        else:
            statuses[name] = {"applies": False, "why": "no weights"}
    return statuses


def _attach(
    rows: list[dict[str, Any]], statuses: dict[str, dict[str, dict[str, Any]]], *, keras3: bool
) -> None:
    """Each row's status per technique; a Keras 3 row gathers the tf-keras layers made of it."""
    names = [row["name"] for row in rows]
    parts: dict[str, list[str]] = {name: [] for name in names}
    tf_names = list(statuses[TECHNIQUES[0]])
    for tf_name in tf_names:
        owner = _owner(tf_name, names) if keras3 else (tf_name if tf_name in parts else None)
        if owner is not None:
            parts[owner].append(tf_name)
    for row in rows:
        for technique in TECHNIQUES:
            found = [(n, statuses[technique][n]) for n in parts[row["name"]]]
            row[technique] = _combined(found)


def _owner(tf_name: str, names: list[str]) -> str | None:
    """The Keras 3 layer a rebuilt layer comes from: its name, or the longest ``name_`` prefix."""
    if tf_name in names:
        return tf_name
    prefixes = [n for n in names if tf_name.startswith(f"{n}_")]
    return max(prefixes, key=len) if prefixes else None


def _combined(found: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    if not found:
        return {"applies": False, "why": "no tf-keras layer of its own"}
    unsupported = [n for n, s in found if s.get("unsupported")]
    exclude = "|".join(f"^{re.escape(n)}$" for n in unsupported)
    if len(found) > 1:  # an activation split off, a weightless attention core: not news
        found = [(n, s) for n, s in found if s["why"] != "no weights"] or found[:1]
    if len(found) == 1:
        return {**found[0][1], **({"exclude": exclude} if unsupported else {})}
    targets = [n for n, s in found if s["applies"]]
    others = [f"{n}: {s['why']}" for n, s in found if not s["applies"]]
    why = "; ".join(([f"applies to {', '.join(targets)}"] if targets else []) + others)
    status: dict[str, Any] = {"applies": bool(targets), "why": why}
    if unsupported:
        status.update(unsupported=True, exclude=exclude)
    return status


# --- rendering -----------------------------------------------------------------------------


def render(report: dict[str, Any]) -> list[Any]:
    """The rich tables of a report: the file, its layers, what would be refused."""
    from edgesmith.console import table

    def shapes(tensors: list[dict[str, Any]]) -> str:
        return ", ".join(f"{t['shape']} {t['dtype']}" for t in tensors) or "-"

    facts = [
        ("file", report["file"]),
        ("format", report["format"]),
        ("Keras version", report["keras_version"] or "(not recorded)"),
        ("Keras 3", "yes" if report["keras3"] else "no"),
        ("family", report["family"]),
        ("parameters", f"{report['params']:,}" if report["params"] is not None else None),
        ("inputs", shapes(report["inputs"])),
        ("outputs", shapes(report["outputs"])),
        ("output kind", report["output_kind"]),
    ]
    check = report["rebuild_check"]
    if check is not None:
        verdict = "passed" if check.get("passed") else "failed"
        detail = check.get("error") or (
            f"max |diff| {check['max_abs_diff']:.3g} on {check['samples']} random samples"
        )
        facts.append(("tf-keras rebuild", f"{verdict}: {detail}"))
    grid = table("model", ["name", "value"], facts)
    grid.columns[1].justify = "left"
    columns = ["name", "class", "params", *TECHNIQUES]
    if report["keras3"]:
        columns.append("tf-keras rebuild")
    rows = []
    for layer in report["layers"]:
        cells = [layer["name"], layer["class"], layer["params"]]
        cells += [_cell(layer[t]) for t in TECHNIQUES]
        if report["keras3"]:
            cells.append(layer["rebuild"])
        rows.append(cells)
    loaded = report["params"] is not None
    title = "layers: what each technique does, or why not"
    if not loaded:
        title = "layers (read from the config; not loaded, so no technique was asked)"
    layers = table(title, columns, rows)
    for column in layers.columns[3:]:
        column.justify = "left"
    out = [grid, layers] if rows else [grid]
    if report["refused"]:
        refused = [
            (r["layer"] or "-", r["class"] or "-", r["stage"], r["why"], r["fix"])
            for r in report["refused"]
        ]
        grid = table("refused", ["name", "class", "stage", "why", "fix"], refused)
        for column in grid.columns[1:]:
            column.justify = "left"
        out.append(grid)
    return out


def _cell(status: dict[str, Any]) -> str:
    if status["why"] == _NOT_PLANNED:
        return "-"
    if status["applies"]:
        return "yes" + (f" ({status['why']})" if status["why"] else "")
    mark = "REFUSED: " if status.get("unsupported") else "no: "
    return mark + status["why"]
