"""Data sets of the zoo: real data, deterministic splits, preprocessing kept with the model.

Each loader returns a :class:`DatasetSplits`: train / validation / test arrays, the class
names, and ``preprocessing``, a JSON-able description of every step that turned files
into model inputs. Statistics that are fitted (feature normalisation, the text
vocabulary) are fitted on the training split only; pass a stored ``preprocessing`` back
in to reuse them unchanged on new data.

Example:
    >>> from edgesmith.zoo.datasets import load_dataset
    >>> data = load_dataset("digits")
    >>> data.x_train.shape[1:], len(data.class_names)
    ((8, 8), 10)
"""

from __future__ import annotations

import os
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.core.errors import ConfigError, DataError, UnknownNameError

SPLITS = ("train", "val", "test", "all")
DATA_ENV = "EDGESMITH_DATA"
SPLIT_SEED = 20240607  # fixed: the split never depends on the training seed

DIGIT_NAMES = tuple(str(d) for d in range(10))

# Where each set comes from when no local copy is given (a user's machine is online).
PUBLIC_SOURCES = {
    "mnist": [
        f"https://storage.googleapis.com/cvdf-datasets/mnist/{part}.gz"
        for part in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    ],
    "fsdd": [
        "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.zip"
    ],
    "sms-spam": ["https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"],
}


@dataclass
class DatasetSplits:
    """Train / validation / test arrays of one data set, ready for a model."""

    name: str
    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    preprocessing: dict[str, Any]
    source: str = ""
    notes: list[str] = field(default_factory=list)
    # Source files left out as unreadable, each "PATH: why" (FSDD skips bad recordings).
    skipped: list[str] = field(default_factory=list)
    # Positions of each split's samples in the source (file or set order): disjoint.
    indices: dict[str, np.ndarray] = field(default_factory=dict)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and labels of ``train``, ``val``, ``test`` or ``all`` (every sample)."""
        if name == "all":
            return (
                np.concatenate([self.x_train, self.x_val, self.x_test]),
                np.concatenate([self.y_train, self.y_val, self.y_test]),
            )
        if name not in SPLITS:
            raise ConfigError(f"split {name!r}", expected=f"one of {', '.join(SPLITS)}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def with_layout(self, layout: str) -> DatasetSplits:
        """The same data shaped for a model: ``image`` adds a channel axis to 2-D samples."""
        if layout not in ("image", "sequence", "tokens"):
            raise ConfigError(f"layout {layout!r}", expected="image, sequence or tokens")
        if layout != "image" or self.x_train.ndim != 3:
            return self
        arrays = {
            f"x_{s}": getattr(self, f"x_{s}")[..., np.newaxis] for s in ("train", "val", "test")
        }
        return DatasetSplits(**{**self.__dict__, **arrays})


DATASETS = {
    "digits": "scikit-learn's bundled 8x8 digits (1,797 images; needs no files)",
    "mnist": "MNIST handwritten digits, IDX files (28x28)",
    "fsdd": "Free Spoken Digit Dataset, WAV recordings -> MFCC / log-mel frames",
    "sms-spam": "UCI SMS Spam Collection, TSV -> token ids",
}


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    preprocessing: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> DatasetSplits:
    """Load data set ``name`` with a deterministic train / val / test split.

    Args:
        name: ``digits``, ``mnist``, ``fsdd`` or ``sms-spam``; or the path of a user's
            .npz file or image folder.
        data_dir: the folder holding ``mnist/``, ``fsdd/``, ``sms-spam/`` (or the data
            set's own folder). Defaults to ``$EDGESMITH_DATA``; with neither, the public
            copy is downloaded into the cache.
        preprocessing: a stored preprocessing description (from a trained model) to
            reuse instead of fitting statistics on the training split.
        options: data-set specific settings (for FSDD the feature settings, for SMS the
            vocabulary size and sequence length); ignored when ``preprocessing`` is given.

    A ``name`` that is not a zoo set but a user's .npz file or image folder (or a stored
    ``preprocessing`` whose ``source`` is ``npz``/``images``) is read by
    :func:`edgesmith.zoo.userdata.load_user_data`; ``options`` may then give
    ``input_shape``, ``input_dtype``, ``image_scale`` and ``seed``, and a relative path is
    also looked for under ``data_dir``.
    """
    loaders = {"digits": _load_digits, "mnist": _load_mnist, "fsdd": _load_fsdd}
    loaders["sms-spam"] = _load_sms
    if name not in loaders:
        user = _user_data(name, data_dir, preprocessing, options)
        if user is not None:
            return user
        raise UnknownNameError(
            f"data set {name!r}", expected=f"one of {', '.join(sorted(loaders))}"
        )
    if preprocessing is not None and preprocessing.get("dataset") != name:
        raise ConfigError(
            f"stored preprocessing is for {preprocessing.get('dataset')!r}, not {name!r}",
            expected="the preprocessing saved with a model trained on this data set",
        )
    return loaders[name](data_dir, preprocessing, dict(options or {}))


USER_DATA_OPTIONS = ("input_shape", "input_dtype", "image_scale", "seed")


def _user_data(
    name: str,
    data_dir: str | os.PathLike[str] | None,
    preprocessing: dict[str, Any] | None,
    options: dict[str, Any] | None,
) -> DatasetSplits | None:
    """``name`` read as a user's data when it is one (else None: an unknown zoo name)."""
    from edgesmith.zoo.userdata import SOURCES, is_user_data, load_user_data

    name = os.fspath(name)
    path: str | Path = name
    if not is_user_data(path) and data_dir is not None and not Path(name).is_absolute():
        path = Path(data_dir).expanduser() / name
    stored = preprocessing is not None and preprocessing.get("source") in SOURCES
    # A name that looks like a path is read as one, so a missing file says "not found".
    looks_like_path = Path(name).suffix.lower() == ".npz" or os.sep in name or "/" in name
    if not (stored or looks_like_path or is_user_data(path)):
        return None
    settings = dict(options or {})
    unknown = set(settings) - set(USER_DATA_OPTIONS)
    if unknown:
        raise ConfigError(
            f"options {sorted(unknown)} for the data in {name}",
            expected=f"some of {', '.join(USER_DATA_OPTIONS)}",
        )
    if "input_shape" not in settings and preprocessing is not None:
        settings["input_shape"] = preprocessing.get("input_shape")
    return load_user_data(path, preprocessing=preprocessing, **settings)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """``data_dir`` if given, else ``$EDGESMITH_DATA``, else None (download)."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_ENV) or None
    if chosen is None:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        where = "--data-dir" if data_dir is not None else f"${DATA_ENV}"
        raise DataError(
            f"{path}: data folder not found (from {where})",
            expected="a folder holding mnist/, fsdd/ and/or sms-spam/",
            fix=f"pass --data-dir with an existing folder or fix ${DATA_ENV}",
        )
    return path


def _dataset_folder(name: str, data_dir: str | os.PathLike[str] | None, marker: str) -> Path:
    """The folder of one data set: ``DATA/<name>``, ``DATA`` itself, or a fresh download."""
    base = resolve_data_dir(data_dir)
    if base is None:
        return _download_public(name)
    for candidate in (base / name, base):
        if any(candidate.glob(marker)):
            return candidate
    raise DataError(
        f"{base}: no {name} files found (looked for {marker} in {base / name} and {base})",
        expected=f"the {DATASETS[name]}",
        fix=f"put the files in {base / name} or pass --data-dir pointing at them",
    )


def _cache_root() -> Path:
    from edgesmith.zoo.store import cache_root

    return cache_root() / "data"


def _download_public(name: str) -> Path:
    """Fetch the public copy of ``name`` into the cache (once) and return its folder."""
    from edgesmith.zoo.download import download

    folder = _cache_root() / name
    folder.mkdir(parents=True, exist_ok=True)
    for url in PUBLIC_SOURCES[name]:
        file = download(url, folder / url.rsplit("/", 1)[-1].replace("+", "_"))
        if file.suffix == ".zip":
            done = folder / f".{file.name}.extracted"
            if not done.exists():
                try:
                    with zipfile.ZipFile(file) as archive:
                        archive.extractall(folder)
                except zipfile.BadZipFile as exc:
                    file.unlink()
                    raise DataError(f"{file}: broken download ({exc})", fix="run again") from None
                done.touch()
    return folder


def _stratified_split(
    y: np.ndarray, fractions: tuple[float, float], seed: int = SPLIT_SEED, where: str = "data set"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train / val / test, stratified by label, for val and test ``fractions``."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    val_frac, test_frac = fractions
    try:
        rest, test = train_test_split(index, test_size=test_frac, stratify=y, random_state=seed)
        train, val = train_test_split(
            rest, test_size=val_frac / (1 - test_frac), stratify=y[rest], random_state=seed + 1
        )
    except ValueError as exc:  # too few samples, or a class with fewer than two
        raise _too_small(where, y, exc) from exc
    return np.sort(train), np.sort(val), np.sort(test)


def _too_small(where: str, y: np.ndarray, exc: Exception) -> DataError:
    counts = ", ".join(f"{c}: {n}" for c, n in zip(*np.unique(y, return_counts=True), strict=True))
    return DataError(
        f"{where}: {len(y)} samples (per class {counts or 'none'}) cannot be split into "
        f"stratified train / val / test sets ({exc})",
        expected="enough samples of every class for each split (a few dozen per class)",
        fix="use the complete data set, or point --data-dir at a larger copy",
    )


def _splits_from_index(
    name: str,
    task: str,
    x: np.ndarray,
    y: np.ndarray,
    index: tuple[np.ndarray, np.ndarray, np.ndarray],
    class_names: tuple[str, ...],
    preprocessing: dict[str, Any],
    source: str,
) -> DatasetSplits:
    train, val, test = index
    return DatasetSplits(
        name=name,
        task=task,
        x_train=x[train],
        y_train=y[train],
        x_val=x[val],
        y_val=y[val],
        x_test=x[test],
        y_test=y[test],
        class_names=class_names,
        preprocessing=preprocessing,
        source=source,
        indices={"train": train, "val": val, "test": test},
    )


# --- digits --------------------------------------------------------------------------


def _load_digits(_data_dir: Any, preprocessing: dict | None, _options: dict) -> DatasetSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    prep = preprocessing or {"dataset": "digits", "scale": 1 / 16.0, "split_seed": SPLIT_SEED}
    x = (bunch.images * prep["scale"]).astype(np.float32)
    y = bunch.target.astype(np.int64)
    index = _stratified_split(y, (0.15, 0.15), prep["split_seed"])
    return _splits_from_index(
        "digits",
        "image-classification",
        x,
        y,
        index,
        DIGIT_NAMES,
        prep,
        "sklearn.datasets.load_digits",
    )


# --- MNIST ---------------------------------------------------------------------------


def _load_mnist(data_dir: Any, preprocessing: dict | None, _options: dict) -> DatasetSplits:
    from edgesmith.zoo.idx import find_idx_pairs, load_idx_pair

    folder = _dataset_folder("mnist", data_dir, "*images*idx3-ubyte*")
    prep = preprocessing or {"dataset": "mnist", "scale": 1 / 255.0, "split_seed": SPLIT_SEED}
    pairs = find_idx_pairs(folder)
    if not pairs:
        raise DataError(
            f"{folder}: no IDX images file with a usable name",
            expected="PREFIX-images-idx3-ubyte[.gz] and PREFIX-labels-idx1-ubyte[.gz] files",
            fix="rename the files as MNIST ships them (e.g. train-images-idx3-ubyte.gz)",
        )
    train_pairs = [p for p in pairs if p[0].name.startswith("train")]
    test_pairs = [p for p in pairs if p[0].name.startswith("t10k")]
    if train_pairs and test_pairs:
        # The official split: train files for training (10% held out), t10k for test.
        x_tr, y_tr = load_idx_pair(*train_pairs[0])
        x_te, y_te = load_idx_pair(*test_pairs[0])
        x = np.concatenate([x_tr, x_te])
        y = np.concatenate([y_tr, y_te])
        from sklearn.model_selection import train_test_split

        try:
            tr, va = train_test_split(
                np.arange(len(y_tr)), test_size=0.1, stratify=y_tr, random_state=prep["split_seed"]
            )
        except ValueError as exc:
            raise _too_small(str(train_pairs[0][0]), y_tr, exc) from exc
        index = (np.sort(tr), np.sort(va), np.arange(len(y_tr), len(y)))
        source = f"{train_pairs[0][0].name} + {test_pairs[0][0].name}"
    else:
        # One file pair (such as the 8k subset): a fixed stratified 80 / 10 / 10 split.
        xs, ys = zip(*(load_idx_pair(*p) for p in pairs), strict=True)
        x, y = np.concatenate(xs), np.concatenate(ys)
        source = ", ".join(p[0].name for p in pairs)
        index = _stratified_split(y, (0.1, 0.1), prep["split_seed"], f"{folder}: {source}")
    x = (x.astype(np.float32) * prep["scale"]).astype(np.float32)
    return _splits_from_index(
        "mnist",
        "image-classification",
        x,
        y,
        index,
        DIGIT_NAMES,
        prep,
        f"{folder}: {source}",
    )


# --- FSDD ----------------------------------------------------------------------------

FSDD_DEFAULTS = {
    "sample_rate": 8000,
    "clip_seconds": 1.0,
    "frame_ms": 30.0,
    "step_ms": 20.0,
    "fft_length": 256,
    "n_mels": 40,
    "features": "mfcc",  # or "logmel"
    "n_mfcc": 10,
    "test_takes": [0, 4],  # the official FSDD test split: takes 0-4
    "val_takes": [5, 9],
}


def _load_fsdd(data_dir: Any, preprocessing: dict | None, options: dict) -> DatasetSplits:
    from edgesmith.zoo.wav import parse_fsdd_name, read_wav

    unknown = set(options) - set(FSDD_DEFAULTS)
    if unknown:
        raise ConfigError(
            f"FSDD options {sorted(unknown)}", expected=f"some of {sorted(FSDD_DEFAULTS)}"
        )
    folder = _dataset_folder("fsdd", data_dir, "**/*.wav")
    files = sorted(folder.glob("*.wav")) or sorted(folder.glob("**/recordings/*.wav"))
    if not files:
        files = sorted(folder.glob("**/*.wav"))
    settings = {**FSDD_DEFAULTS, **options}
    if preprocessing:
        settings = {k: preprocessing[k] for k in FSDD_DEFAULTS}
    clip = int(settings["sample_rate"] * settings["clip_seconds"])
    audio, labels, takes, skipped = [], [], [], []
    for path in files:
        digit, _speaker, take = parse_fsdd_name(path)
        try:
            samples, rate = read_wav(path)
        except DataError as exc:
            skipped.append(str(exc))
            continue
        if rate != settings["sample_rate"]:
            skipped.append(f"{path}: sample rate {rate} Hz, expected {settings['sample_rate']}")
            continue
        audio.append(_fit_clip(samples, clip))
        labels.append(digit)
        takes.append(take)
    if not audio:
        raise DataError(
            f"{folder}: no readable FSDD recordings ({len(skipped)} of {len(files)} WAV files "
            f"skipped; first: {skipped[0] if skipped else 'none'})",
            expected=f"16-bit PCM WAV recordings at {settings['sample_rate']} Hz",
            fix="download the data set again, or point --data-dir at an intact copy",
        )
    features = _audio_features(np.stack(audio), settings)
    y = np.asarray(labels, dtype=np.int64)
    takes_arr = np.asarray(takes)
    lo, hi = settings["test_takes"]
    test = (takes_arr >= lo) & (takes_arr <= hi)
    lo, hi = settings["val_takes"]
    val = (takes_arr >= lo) & (takes_arr <= hi) & ~test
    train = ~(test | val)
    if preprocessing:
        mean = np.asarray(preprocessing["mean"], dtype=np.float32)
        std = np.asarray(preprocessing["std"], dtype=np.float32)
    else:
        mean = features[train].mean(axis=(0, 1))
        std = features[train].std(axis=(0, 1)) + 1e-6
    x = ((features - mean) / std).astype(np.float32)
    prep = {
        "dataset": "fsdd",
        **settings,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
    }
    data = _splits_from_index(
        "fsdd",
        "keyword-spotting",
        x,
        y,
        (np.flatnonzero(train), np.flatnonzero(val), np.flatnonzero(test)),
        DIGIT_NAMES,
        prep,
        f"{folder}: {len(audio)} of {len(files)} WAV files",
    )
    if skipped:  # counted and named; the commands show the notes
        message = f"skipped {len(skipped)} unreadable WAV file(s) in {folder}: {skipped[0]}"
        data.notes.append(message)
        data.skipped.extend(skipped)
    return data


def _fit_clip(samples: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad a recording to ``length`` samples, or keep its loudest window of that length."""
    if len(samples) <= length:
        return np.pad(samples, (0, length - len(samples))).astype(np.float32)
    energy = np.convolve(samples.astype(np.float64) ** 2, np.ones(length), mode="valid")
    start = int(np.argmax(energy))
    return samples[start : start + length].astype(np.float32)


def _audio_features(audio: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """Log-mel or MFCC frames ``(clips, frames, coefficients)`` with ``tf.signal``."""
    from edgesmith.zoo.tfkeras import tf

    t = tf()
    rate = settings["sample_rate"]
    frame = int(rate * settings["frame_ms"] / 1000)
    step = int(rate * settings["step_ms"] / 1000)
    stft = t.signal.stft(
        t.constant(audio), frame_length=frame, frame_step=step, fft_length=settings["fft_length"]
    )
    power = t.abs(stft) ** 2
    mel_matrix = t.signal.linear_to_mel_weight_matrix(
        num_mel_bins=settings["n_mels"],
        num_spectrogram_bins=settings["fft_length"] // 2 + 1,
        sample_rate=rate,
        lower_edge_hertz=20.0,
        upper_edge_hertz=rate / 2,
    )
    log_mel = t.math.log(t.tensordot(power, mel_matrix, 1) + 1e-6)
    if settings["features"] == "logmel":
        return log_mel.numpy().astype(np.float32)
    if settings["features"] != "mfcc":
        raise ConfigError(f"features={settings['features']!r}", expected="'mfcc' or 'logmel'")
    mfcc = t.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., : settings["n_mfcc"]]
    return mfcc.numpy().astype(np.float32)


# --- SMS spam ------------------------------------------------------------------------

SMS_DEFAULTS = {"max_tokens": 5000, "max_length": 64, "min_count": 2}
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[£$€!?%&]")


def tokenize(text: str) -> list[str]:
    """Lower-cased word and symbol tokens of an SMS (currency signs and '!' carry signal)."""
    return _TOKEN.findall(text.lower())


def _load_sms(data_dir: Any, preprocessing: dict | None, options: dict) -> DatasetSplits:
    unknown = set(options) - set(SMS_DEFAULTS)
    if unknown:
        raise ConfigError(
            f"SMS options {sorted(unknown)}", expected=f"some of {sorted(SMS_DEFAULTS)}"
        )
    folder = _dataset_folder("sms-spam", data_dir, "SMSSpamCollection")
    path = folder / "SMSSpamCollection"
    texts, labels = read_sms_collection(path)
    y = np.asarray(labels, dtype=np.int64)
    index = _stratified_split(y, (0.15, 0.15), SPLIT_SEED, str(path))
    if preprocessing:
        settings = {k: preprocessing[k] for k in SMS_DEFAULTS}
        vocab = list(preprocessing["vocabulary"])
    else:
        settings = {**SMS_DEFAULTS, **options}
        counts = Counter(tok for i in index[0] for tok in tokenize(texts[i]))
        common = [t for t, c in counts.most_common() if c >= settings["min_count"]]
        vocab = common[: settings["max_tokens"] - 2]
    ids = {tok: i + 2 for i, tok in enumerate(vocab)}  # 0 = padding, 1 = unknown word
    x = np.zeros((len(texts), settings["max_length"]), dtype=np.int32)
    for row, text in enumerate(texts):
        tokens = [ids.get(t, 1) for t in tokenize(text)][: settings["max_length"]]
        x[row, : len(tokens)] = tokens
    prep = {"dataset": "sms-spam", **settings, "split_seed": SPLIT_SEED, "vocabulary": vocab}
    return _splits_from_index(
        "sms-spam", "text-classification", x, y, index, ("ham", "spam"), prep, str(path)
    )


def read_sms_collection(path: Path) -> tuple[list[str], list[int]]:
    """Read the ``label<TAB>text`` file; labels ``ham`` -> 0, ``spam`` -> 1."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})", expected="a UTF-8 text file") from exc
    texts, labels = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        label, sep, text = line.partition("\t")
        if not sep or label not in ("ham", "spam"):
            raise DataError(
                f"{path}, line {number}: {line[:40]!r}",
                expected="'ham' or 'spam', a tab, then the message",
            )
        texts.append(text)
        labels.append(int(label == "spam"))
    if not texts:
        raise DataError(f"{path}: no messages", expected="one 'label<TAB>text' line per message")
    return texts, labels
