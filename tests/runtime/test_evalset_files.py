"""Eval set files (.npz) that are broken, hostile or wrong: a DataError naming the file, never a crash."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgesmith.cli import main
from edgesmith.core.errors import DataError, EdgesmithError, ModelFileError
from edgesmith.core.npzfile import read_npz
from edgesmith.runtime.evalset import load_eval_set, match_eval_set
from edgesmith.runtime.modelfile import ModelInfo, TensorInfo
from tests.mutate import mutants


def _save(path: Path, **arrays: object) -> Path:
    np.savez(path, **arrays)
    return path


def _valid(path: Path, compressed: bool = False) -> Path:
    rng = np.random.default_rng(0)
    save = np.savez_compressed if compressed else np.savez
    save(path, x=rng.random((6, 8, 8, 1), dtype=np.float32), y=np.arange(6) % 10)
    return path


def _digits_info(classes: int = 10) -> ModelInfo:
    return ModelInfo(
        path=Path("digits.tflite"),
        format="tflite",
        size_bytes=1,
        inputs=[TensorInfo("image", (-1, 8, 8, 1), "float32")],
        outputs=[TensorInfo("probs", (-1, classes), "float32")],
    )


def test_valid_eval_set_loads(tmp_path):
    evalset = load_eval_set(_valid(tmp_path / "ok.npz", compressed=True))
    assert len(evalset) == 6 and evalset.y.dtype == np.int64
    assert evalset.arrays["x"].shape == (6, 8, 8, 1)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"file is empty \(0 bytes\)"),
        (b"\x93NUMPY\x01\x00", r"not a readable \.npz file \(not a zip archive"),
        (b"hello, I am a CSV\n1,2,3\n", "not a zip archive"),
        (b"PK\x03\x04" + bytes(40), "not a readable .npz file"),
    ],
)
def test_files_that_are_not_npz_archives(tmp_path, content, message):
    path = tmp_path / "eval.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        load_eval_set(path)
    assert str(path) in str(err.value) and "export-eval" in str(err.value)


def test_npy_and_pickle_files_are_never_loaded(tmp_path):
    """An .npy or a pickle under an .npz name is refused before numpy looks at it."""
    npy = tmp_path / "x.npz"
    np.save(npy.with_suffix(".npy"), np.zeros(3))
    npy.with_suffix(".npy").rename(npy)
    with pytest.raises(DataError, match="not a zip archive"):
        load_eval_set(npy)
    pickled = tmp_path / "p.npz"
    pickled.write_bytes(b"\x80\x04\x95" + bytes(20))
    with pytest.raises(DataError, match="not a zip archive"):
        load_eval_set(pickled)


def test_object_arrays_are_refused_not_unpickled(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2, np.int64))
    with pytest.raises(DataError, match=r"obj\.npz: array 'x' holds Python objects"):
        load_eval_set(path)


def test_member_that_is_not_an_array(tmp_path):
    path = _valid(tmp_path / "extra.npz")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(DataError, match=r"member 'readme.txt' is not a \.npy array"):
        load_eval_set(path)


def test_member_declaring_a_huge_array_is_refused_before_reading(tmp_path):
    """A .npy header may declare terabytes; the archive's own sizes show it cannot hold them."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 8, 8, 1)}
    )
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(64))
        archive.writestr("y.npy", _npy(np.zeros(2, np.int64)))
    with pytest.raises(
        DataError, match=r"huge\.npz: array 'x' declares shape .*truncated or corrupt"
    ):
        load_eval_set(path)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_truncated_archive(tmp_path):
    path = _valid(tmp_path / "cut.npz")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=r"cut\.npz: not a readable \.npz file"):
        load_eval_set(path)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((3, 2)), "y": np.array([0.0, 1.0, 1.0])}, "float64 values, not integer"),
        ({"x": np.zeros((3, 2)), "y": np.array(["a", "b", "c"])}, "<U1 values, not integer"),
        ({"x": np.zeros((3, 2)), "y": np.array([0, -1, 2])}, "negative labels"),
        ({"x": np.zeros((0, 2)), "y": np.zeros(0, np.int64)}, "y holds no labels"),
        ({"x": np.zeros((3, 2)), "y": np.zeros((3, 0), np.int64)}, "y holds no labels"),
        ({"x": np.zeros((3, 2)), "y": np.array(4)}, "y holds no labels"),
        ({"x": np.zeros((3, 2)), "y": np.zeros(2, np.int64)}, "one label per sample"),
        ({"x": np.float32(1.0), "y": np.zeros(1, np.int64)}, "one label per sample"),
        ({"x": np.array(["a", "b"]), "y": np.zeros(2, np.int64)}, "x holds <U1 values"),
        ({"x": np.zeros((2, 2), complex), "y": np.zeros(2, np.int64)}, "x holds complex128"),
        (
            {"x": np.array([[0.0, np.nan], [1.0, 1.0]]), "y": np.zeros(2, np.int64)},
            r"x holds NaN or inf in 1 of 2 samples \(first: sample 0\)",
        ),
        (
            {"x": np.array([[0.0, 1.0], [np.inf, 1.0]]), "y": np.zeros(2, np.int64)},
            r"first: sample 1",
        ),
        (
            {"x": np.zeros((2, 2)), "y": np.array([[1.0, np.nan], [0.0, 1.0]])},
            "y holds 1 NaN/inf",
        ),
    ],
)
def test_arrays_of_the_wrong_kind(tmp_path, arrays, message):
    path = _save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message) as err:
        load_eval_set(path)
    assert str(path) in str(err.value)


def test_one_hot_and_column_labels_become_class_indices(tmp_path):
    onehot = np.eye(3, dtype=np.float32)[[2, 0, 1]]
    assert load_eval_set(_save(tmp_path / "a.npz", x=np.zeros((3, 2)), y=onehot)).y.tolist() == [
        2,
        0,
        1,
    ]
    column = np.array([[1], [0], [1]], np.uint8)
    assert load_eval_set(_save(tmp_path / "b.npz", x=np.zeros((3, 2)), y=column)).y.tolist() == [
        1,
        0,
        1,
    ]


def test_labels_out_of_the_models_class_range(tmp_path):
    path = _save(tmp_path / "ten.npz", x=np.zeros((3, 8, 8, 1), np.float32), y=np.array([0, 9, 12]))
    evalset = load_eval_set(path)
    with pytest.raises(ModelFileError, match=r"ten\.npz: label 12 is out of range .*10 classes"):
        match_eval_set(_digits_info(), evalset, set())
    # A one-column output is a probability of class 1: labels 0 and 1.
    binary = _save(tmp_path / "bin.npz", x=np.zeros((2, 8, 8, 1), np.float32), y=np.array([1, 2]))
    with pytest.raises(ModelFileError, match=r"labels 0\.\.1"):
        match_eval_set(_digits_info(1), load_eval_set(binary), set())
    ok = _save(tmp_path / "ok.npz", x=np.zeros((2, 8, 8, 1), np.float32), y=np.array([1, 9]))
    match_eval_set(_digits_info(), load_eval_set(ok), set())


def test_read_npz_names_a_folder(tmp_path):
    with pytest.raises(DataError, match="not a file"):
        read_npz(tmp_path, expected="an .npz", fix="pass a file")


def _fuzz_cases(tmp_path: Path, count: int, seed: int):
    """Mutants of whole archives (mostly caught by zip CRCs) and of the .npy members inside
    archives that are otherwise intact (these reach numpy's header and data parsing)."""
    sources = [_valid(tmp_path / "plain.npz"), _valid(tmp_path / "small.npz", compressed=True)]
    for s, source in enumerate(sources):
        for i, (kind, blob) in enumerate(mutants(source.read_bytes(), count, seed + s)):
            path = tmp_path / f"m{s}_{i}_{kind}.npz"
            path.write_bytes(blob)
            yield path
    rng = np.random.default_rng(seed)
    members = {"x": _npy(rng.random((6, 8, 8, 1), dtype=np.float32)), "y": _npy(np.arange(6))}
    for i, (kind, blob) in enumerate(mutants(members["x"] + members["y"], count, seed + 2)):
        path = tmp_path / f"inner_{i}_{kind}.npz"
        with zipfile.ZipFile(path, "w") as archive:
            target = "x" if i % 2 else "y"
            other = "y" if target == "x" else "x"
            cut = len(members["x"])
            mutated = blob[:cut] if target == "x" else blob[cut:]
            archive.writestr(f"{target}.npy", mutated if mutated else blob[:8])
            archive.writestr(f"{other}.npy", members[other])
        yield path


def test_mutated_eval_sets_give_data_errors_or_load(tmp_path):
    """Fuzz: 600 mutants of valid eval sets load or raise DataError naming the file."""
    outcomes: dict[str, int] = {}
    for path in _fuzz_cases(tmp_path, 200, seed=3):
        try:
            evalset = load_eval_set(path)
            match_eval_set(_digits_info(), evalset, set())
        except DataError as exc:
            assert str(path) in str(exc)
            outcomes["data error"] = outcomes.get("data error", 0) + 1
        except ModelFileError as exc:
            assert path.name in str(exc)
            outcomes["model file error"] = outcomes.get("model file error", 0) + 1
        else:
            outcomes["loaded"] = outcomes.get("loaded", 0) + 1
    assert sum(outcomes.values()) == 600 and outcomes.get("data error", 0) > 100


def test_bench_with_mutated_eval_sets_exits_cleanly(digits_models, tmp_path, capsys):
    """A handful of mutants through `edgesmith bench --eval`: exit 0 or 2, never a traceback."""
    model = str(digits_models["f32"])
    codes = []
    for path in list(_fuzz_cases(tmp_path, 4, seed=5)):
        code = main(["bench", model, "-b", "litert", "--runs", "2", "--eval", str(path)])
        err = capsys.readouterr().err
        assert code in (0, 2), err
        assert code == 0 or path.name in err
        codes.append(code)
    assert 2 in codes


def test_library_errors_derive_from_the_one_hierarchy():
    assert issubclass(DataError, EdgesmithError) and issubclass(ModelFileError, EdgesmithError)
