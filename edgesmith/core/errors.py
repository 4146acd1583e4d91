"""One error hierarchy for the whole toolkit.

Every error a user can cause derives from :class:`EdgesmithError` and carries three
parts: what was given, what was expected, and how to fix it. The CLI prints the
message and exits with status 2 instead of showing a traceback.

This module is TF-free: the runtime imports it on boards without TensorFlow.
"""

from __future__ import annotations


class EdgesmithError(Exception):
    """Base class of every error edgesmith raises on purpose.

    Example:
        >>> err = EdgesmithError("sparsity=1.5", expected="a value in [0, 1)", fix="use sparsity=0.8")
        >>> print(err)
        sparsity=1.5: expected a value in [0, 1); use sparsity=0.8
    """

    exit_code = 2

    def __init__(
        self, problem: str, *, expected: str | None = None, fix: str | None = None
    ) -> None:
        self.problem = problem
        self.expected = expected
        self.fix = fix
        super().__init__(self._render())

    def _render(self) -> str:
        text = self.problem
        if self.expected:
            text += f": expected {self.expected}"
        if self.fix:
            text += f"; {self.fix}"
        return text


class ConfigError(EdgesmithError, ValueError):
    """A config, recipe or command-line value is out of range or unknown."""


class UnknownNameError(ConfigError, KeyError):
    """A model, dataset, step or backend name is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return self.args[0]


class DataError(EdgesmithError):
    """A data folder or file is missing, unreadable or malformed."""


class ModelFileError(EdgesmithError):
    """A model file is missing, malformed, or does not match what it is used with."""


class StoreError(EdgesmithError):
    """The model store has no trained copy of a model, or a stored copy is broken."""


class BackendUnavailableError(EdgesmithError):
    """A runtime backend's library or device is not present on this machine."""


class DeviceError(EdgesmithError):
    """A device (a board reached over SSH) cannot be reached, used or trusted.

    ``device`` names the device so that a plan's report says which one failed; the other
    devices of the plan go on.
    """

    def __init__(
        self,
        problem: str,
        *,
        device: str = "",
        expected: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.device = device
        super().__init__(
            f"device {device}: {problem}" if device else problem, expected=expected, fix=fix
        )
