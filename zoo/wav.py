"""WAV reading for the Free Spoken Digit Dataset, with the stdlib ``wave`` module.

numpy-only; FSDD files are named ``{digit}_{speaker}_{take}.wav``.
"""

from __future__ import annotations

import re
import struct
import wave
from pathlib import Path

import numpy as np

from edgesmith.core.errors import DataError

__all__ = ["parse_fsdd_name", "read_wav", "write_wav"]

_FSDD_NAME = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[A-Za-z0-9-]+)_(?P<take>[0-9]+)\.wav$")
_FSDD_PATTERN = "{digit}_{speaker}_{take}.wav, e.g. 7_jackson_32.wav (digit 0-9, take >= 0)"
_PCM = "PCM WAV, 8-bit unsigned or 16/32-bit signed"
_FIX_CONVERT = "convert it to 16-bit PCM WAV (e.g. sox in.wav -b 16 out.wav)"


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Read a PCM WAV file as mono float32 samples in [-1, 1] and its sample rate.

    Multi-channel audio is averaged to mono. A file that is not a PCM WAV, or holds no
    audio frames, raises DataError naming the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with wave.open(str(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            declared = wav.getnframes()
            # Never ask for more than the file can hold: a corrupt header may declare gigabytes.
            data = wav.readframes(min(declared, size // max(width * channels, 1)))
    except FileNotFoundError as exc:
        raise DataError(
            f"{path}: file does not exist",
            expected="a WAV file",
            fix="check the path, or pass --data-dir with the FSDD folder",
        ) from exc
    except EOFError as exc:
        # wave raises EOFError for empty files and files cut off inside the header.
        raise DataError(
            f"{path}: file is empty or its WAV header is cut off",
            expected=_PCM,
            fix="download the file again",
        ) from exc
    except (wave.Error, OSError, ValueError, RuntimeError, struct.error) as exc:
        # RuntimeError: wave's chunk reader, when a chunk size points past the RIFF chunk.
        detail = str(exc) or "a chunk size points past the end of its container"
        raise DataError(
            f"{path}: cannot read as WAV ({detail})",
            expected=_PCM,
            fix=_FIX_CONVERT,
        ) from exc

    if channels < 1 or rate <= 0:
        raise DataError(
            f"{path}: WAV header declares {channels} channels at {rate} Hz",
            expected="at least one channel and a positive sample rate",
            fix="download the file again",
        )
    if width not in (1, 2, 4):
        raise DataError(
            f"{path}: WAV samples are {8 * width}-bit",
            expected=_PCM,
            fix=_FIX_CONVERT,
        )
    frame_bytes = width * channels
    # A truncated file yields fewer frames than the header declares; keep whole frames.
    frames = len(data) // frame_bytes
    if frames == 0:
        raise DataError(
            f"{path}: WAV file holds no audio frames (header declares {declared})",
            expected="at least one audio frame",
            fix="download the file again, or drop this recording",
        )
    data = data[: frames * frame_bytes]

    if width == 1:
        samples = (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0
    else:
        samples = np.frombuffer(data, dtype="<i4").astype(np.float64) / 2147483648.0
    if channels > 1:
        samples = samples.reshape(frames, channels).mean(axis=1)
    return samples.astype(np.float32), rate


def parse_fsdd_name(path: Path) -> tuple[int, str, int]:
    """Split an FSDD file name ``{digit}_{speaker}_{take}.wav`` into (digit, speaker, take)."""
    path = Path(path)
    match = _FSDD_NAME.match(path.name)
    if match is None:
        raise DataError(
            f"{path}: file name does not follow the FSDD pattern",
            expected=_FSDD_PATTERN,
            fix="rename the file, or keep only FSDD recordings in the folder",
        )
    return int(match["digit"]), match["speaker"], int(match["take"])


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write 1-D samples as a 16-bit PCM mono WAV file.

    Float samples are clipped to [-1, 1] and scaled; int16 samples are written as they are.
    """
    path = Path(path)
    samples = np.asarray(samples)
    if samples.ndim != 1 or sample_rate <= 0:
        raise DataError(
            f"{path}: cannot write {samples.ndim}-D samples at {sample_rate} Hz",
            expected="1-D mono samples and a positive sample rate",
        )
    if samples.dtype == np.int16:
        pcm = samples
    elif samples.dtype.kind == "f":
        pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    else:
        raise DataError(
            f"{path}: cannot write {samples.dtype} samples",
            expected="float samples in [-1, 1] or int16 samples",
            fix="convert the samples with .astype(np.float32) first",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(int(sample_rate))
            wav.writeframes(pcm.astype("<i2").tobytes())
    except OSError as exc:
        raise DataError(
            f"{path}: cannot write the file ({exc.strerror or exc})",
            fix="check that the folder exists and is writable",
        ) from exc
