"""Errors raised by the engine.

Each error says what is wrong, with which value, and how to fix it. ``retryable`` tells
an orchestrator whether running the same step again could succeed: a missing column will
not appear on a retry, a cluster that did not answer in time might.
"""

from __future__ import annotations

from typing import Any


class H2OTasksError(Exception):
    """Base class of every error the engine raises on purpose."""

    retryable: bool = False


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


class FieldError(H2OTasksError):
    """A named field holds a bad value. The message names the field, the value and the fix."""

    def __init__(self, field: str, value: Any, problem: str, fix: str, *, file: str = ""):
        self.field = field
        self.value = value
        self.problem = problem
        self.fix = fix
        self.file = file
        super().__init__(f"{file + ': ' if file else ''}{field} = {_fmt(value)}: {problem}. Fix: {fix}")

    def in_file(self, file: str) -> FieldError:
        """The same error, naming the file it was found in."""
        if self.file:
            return self
        return type(self)(self.field, self.value, self.problem, self.fix, file=file)


class ConfigError(FieldError):
    """A pipeline configuration (YAML) is invalid."""


class ConfigErrors(ConfigError):
    """Several problems in one pipeline file; it reads as the first, and its message lists them all."""

    def __init__(self, errors: list[ConfigError], *, file: str = ""):
        self.errors = [e.in_file(file) if file else e for e in errors]
        first = self.errors[0]
        super().__init__(first.field, first.value, first.problem, first.fix, file=file or first.file)
        self.args = (f"{len(self.errors)} problems in {self.file or 'the pipeline'}:\n"
                     + "\n".join(f"- {e.field} = {_fmt(e.value)}: {e.problem}. Fix: {e.fix}" for e in self.errors),)

    def in_file(self, file: str) -> ConfigErrors:
        return self if self.file else ConfigErrors(self.errors, file=file)


class InputDataError(FieldError):
    """Input data breaks the pipeline's contract (missing column, empty, one class, ...)."""


class SourceNotFoundError(FieldError):
    """An S3 key or prefix, or a Hive table or partition, does not exist."""


class ClusterError(H2OTasksError):
    """The H2O cluster could not be created, failed while forming, or was lost."""

    def __init__(self, message: str, *, retryable: bool = False, reason: str = ""):
        self.reason = reason
        self.retryable = retryable
        super().__init__(message)


class ClusterNotReadyError(ClusterError):
    """The cluster did not become ready within its timeout."""

    def __init__(self, message: str, *, reason: str = "Timeout"):
        super().__init__(message, retryable=True, reason=reason)


class PreconditionError(H2OTasksError):
    """A conditional write lost: the object exists already (create) or changed since it was read (swap)."""

    retryable = True

    def __init__(self, uri: str, condition: str):
        self.uri = uri
        self.condition = condition
        super().__init__(f"{uri}: the conditional write ({condition}) lost to another writer")


class RegistryError(FieldError):
    """The model registry holds something a step cannot use (an incomplete version, a bad digest)."""


class CommitError(FieldError):
    """A commit found its output not as written (gone, changed, or still moving): running it again can succeed."""

    retryable = True
