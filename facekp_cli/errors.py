"""User-facing errors and the exit codes they map to (the one place codes are defined)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # the command ran and found problems (e.g. validate found errors, verification failed)
    USAGE = 2  # bad flags, bad settings, unknown keys
    DATA = 3  # a dataset, image or label file is unusable
    PARTIAL = 4  # the command finished but some inputs failed (listed in its output)
    EXTERNAL = 5  # DVC remote, MLflow server or another service is unreachable or failed
    MODEL = 6  # a checkpoint or exported model is missing, corrupt or not facekp's
    INTERRUPTED = 130


class FacekpError(Exception):
    """An error a user can act on; the CLI prints its message in one line, no traceback."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class SettingsError(FacekpError):
    exit_code = ExitCode.USAGE


class UsageError(FacekpError):
    exit_code = ExitCode.USAGE


class DataError(FacekpError):
    exit_code = ExitCode.DATA


class ImageDecodeError(DataError):
    pass


class ModelFileError(FacekpError):
    exit_code = ExitCode.MODEL


class ExternalServiceError(FacekpError):
    exit_code = ExitCode.EXTERNAL


class VerificationError(FacekpError):
    exit_code = ExitCode.FAILURE


class TrainingDiverged(FacekpError):
    """A NaN or infinite loss: the run stops, and no checkpoint of it replaces a good best.ckpt."""

    exit_code = ExitCode.FAILURE
