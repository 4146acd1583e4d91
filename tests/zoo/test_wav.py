"""Tests for edgesmith.zoo.wav: WAV reading and FSDD file names."""

from __future__ import annotations

import os
import struct
import tracemalloc
import wave
from pathlib import Path

import numpy as np
import pytest

from edgesmith.core.errors import DataError
from edgesmith.zoo.wav import parse_fsdd_name, read_wav, write_wav
from tests.mutate import mutants

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


def _riff(fmt: bytes, data_size: int, payload: bytes) -> bytes:
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", data_size) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_huge_declared_data_size_reads_only_what_is_there(tmp_path: Path) -> None:
    """A header declaring ~4 GiB of frames must not make the reader ask for 4 GiB."""
    path = tmp_path / "liar.wav"
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    path.write_bytes(_riff(fmt, 0xFFFFFFF0, np.arange(50, dtype="<i2").tobytes()))
    tracemalloc.start()
    try:
        back, rate = read_wav(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rate == 8000 and back.shape == (50,)
    assert peak < 1 << 20


def test_fmt_chunk_cut_short_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "shortfmt.wav"
    path.write_bytes(_riff(b"\x01\x00\x01", 2, b"\x00\x00"))
    with pytest.raises(DataError, match=r"shortfmt\.wav"):
        read_wav(path)


def test_float_wav_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "float.wav"
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)  # IEEE float
    path.write_bytes(_riff(fmt, 8, bytes(8)))
    with pytest.raises(DataError, match=r"float\.wav: cannot read as WAV.*16-bit PCM"):
        read_wav(path)


def test_wrong_extension_still_read_by_content(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp3"
    write_wav(path, np.zeros(10, dtype=np.float32), 8000)
    assert read_wav(path)[0].shape == (10,)
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(DataError, match=r"notes\.wav"):
        read_wav(text)


def test_mutated_wav_files_give_data_error_or_audio(tmp_path: Path) -> None:
    """Fuzz: every mutant of a valid WAV reads as audio or raises DataError naming the file."""
    valid = tmp_path / "valid.wav"
    t = np.arange(400) / 8000
    write_wav(valid, 0.3 * np.sin(2 * np.pi * 300 * t), 8000)
    data = valid.read_bytes()
    outcomes: dict[str, int] = {}
    for i, (kind, blob) in enumerate(mutants(data, 300, seed=11)):
        path = tmp_path / f"m{i}_{kind}.wav"
        path.write_bytes(blob)
        try:
            samples, rate = read_wav(path)
        except DataError as exc:
            assert path.name in str(exc)
            outcomes["error"] = outcomes.get("error", 0) + 1
        else:
            assert samples.dtype == np.float32 and samples.ndim == 1 and len(samples) > 0
            assert np.isfinite(samples).all() and rate > 0
            outcomes["read"] = outcomes.get("read", 0) + 1
    assert sum(outcomes.values()) == 300 and outcomes.get("error", 0) > 0
