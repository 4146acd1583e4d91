"""Tests for edgesmith.zoo.wav: WAV reading and FSDD file names."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest

from edgesmith.core.errors import DataError
from edgesmith.zoo.wav import parse_fsdd_name, read_wav, write_wav

REPO_ROOT = Path(__file__).resolve().parents[2]


def _data_root() -> Path:
    env = os.environ.get("EDGESMITH_DATA")
    root = Path(env) if env else Path("../shared/data")
    return root if root.is_absolute() else (REPO_ROOT / root).resolve()


FSDD_DIR = _data_root() / "fsdd" / "recordings"


def _write_raw(path: Path, frames: bytes, *, width: int, channels: int, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(frames)


def test_round_trip_16bit(tmp_path: Path) -> None:
    path = tmp_path / "3_theo_7.wav"
    t = np.arange(800) / 8000
    samples = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    write_wav(path, samples, 8000)
    back, rate = read_wav(path)
    assert rate == 8000
    assert back.dtype == np.float32 and back.shape == (800,)
    np.testing.assert_allclose(back, samples, atol=1 / 32767)


def test_16bit_extremes_and_int16_input(tmp_path: Path) -> None:
    path = tmp_path / "ext.wav"
    write_wav(path, np.array([-32768, 0, 32767], dtype=np.int16), 16000)
    back, rate = read_wav(path)
    assert rate == 16000
    np.testing.assert_allclose(back, [-1.0, 0.0, 32767 / 32768])
    assert back.min() >= -1.0 and back.max() <= 1.0


def test_float_input_is_clipped(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    write_wav(path, np.array([-3.0, 3.0]), 8000)
    back, _ = read_wav(path)
    np.testing.assert_allclose(back, [-32767 / 32768, 32767 / 32768])


def test_8bit_unsigned(tmp_path: Path) -> None:
    path = tmp_path / "eight.wav"
    _write_raw(path, bytes([0, 128, 255]), width=1, channels=1, rate=11025)
    back, rate = read_wav(path)
    assert rate == 11025
    np.testing.assert_allclose(back, [-1.0, 0.0, 127 / 128])


def test_32bit_signed(tmp_path: Path) -> None:
    path = tmp_path / "wide.wav"
    values = np.array([-(2**31), 0, 2**30], dtype="<i4")
    _write_raw(path, values.tobytes(), width=4, channels=1)
    back, _ = read_wav(path)
    np.testing.assert_allclose(back, [-1.0, 0.0, 0.5])


def test_stereo_averaged_to_mono(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    # Frames (L, R): (16384, 0), (-16384, -16384), (32767, -32767)
    frames = np.array([16384, 0, -16384, -16384, 32767, -32767], dtype="<i2")
    _write_raw(path, frames.tobytes(), width=2, channels=2)
    back, _ = read_wav(path)
    assert back.shape == (3,)
    np.testing.assert_allclose(back, [0.25, -0.5, 0.0])


def test_truncated_data_keeps_whole_frames(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    write_wav(path, np.zeros(100, dtype=np.float32), 8000)
    path.write_bytes(path.read_bytes()[:-51])  # header still declares 100 frames
    back, _ = read_wav(path)
    assert back.shape == (74,)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "1_noise_0.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes())
    with pytest.raises(DataError) as err:
        read_wav(path)
    assert path.name in str(err.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty") as err:
        read_wav(path)
    assert path.name in str(err.value)


def test_header_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "head.wav"
    write_wav(path, np.zeros(10, dtype=np.float32), 8000)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError) as err:
        read_wav(path)
    assert path.name in str(err.value)


def test_zero_frames(tmp_path: Path) -> None:
    path = tmp_path / "silent.wav"
    _write_raw(path, b"", width=2, channels=1)
    with pytest.raises(DataError, match="no audio frames") as err:
        read_wav(path)
    assert path.name in str(err.value)


def test_24bit_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "studio.wav"
    _write_raw(path, bytes(6), width=3, channels=1)
    with pytest.raises(DataError, match="24-bit") as err:
        read_wav(path)
    assert path.name in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "gone.wav"
    with pytest.raises(DataError, match="does not exist") as err:
        read_wav(path)
    assert path.name in str(err.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("0_george_0.wav", (0, "george", 0)),
        ("7_jackson_32.wav", (7, "jackson", 32)),
        ("9_yweweler_49.wav", (9, "yweweler", 49)),
    ],
)
def test_parse_fsdd_name(tmp_path: Path, name: str, expected: tuple[int, str, int]) -> None:
    assert parse_fsdd_name(tmp_path / "recordings" / name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "10_george_0.wav",  # digit out of range
        "a_george_0.wav",
        "3_george_-1.wav",  # negative take
        "3_george.wav",
        "3__0.wav",  # no speaker
        "3_george_0.mp3",
        "3_george_0_extra.wav",
        "readme.txt",
    ],
)
def test_parse_fsdd_name_bad(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataError, match="digit") as err:
        parse_fsdd_name(tmp_path / name)
    assert name in str(err.value)


def test_write_wav_rejects_2d(tmp_path: Path) -> None:
    path = tmp_path / "two.wav"
    with pytest.raises(DataError) as err:
        write_wav(path, np.zeros((2, 10), dtype=np.float32), 8000)
    assert path.name in str(err.value)


@pytest.mark.skipif(
    not FSDD_DIR.is_dir(),
    reason=f"real FSDD recordings not found at {FSDD_DIR} (set EDGESMITH_DATA to the shared data)",
)
def test_real_fsdd_file() -> None:
    path = FSDD_DIR / "0_george_0.wav"
    samples, rate = read_wav(path)
    assert rate == 8000
    assert samples.dtype == np.float32 and samples.ndim == 1 and samples.size > 1000
    assert np.abs(samples).max() <= 1.0
    assert parse_fsdd_name(path) == (0, "george", 0)
