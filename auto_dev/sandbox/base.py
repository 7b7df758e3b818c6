"""Sandbox job and result types shared by every backend.

The wire protocol between a backend and the harness (``sandbox/_harness.py``, stdlib only):

* Frames in both directions are a 4-byte big-endian unsigned length followed by that many bytes of
  UTF-8 JSON. Never pickle.
* The backend writes one *job frame* per job::

      {"code": str, "entrypoint": str,
       "cases": [{"args": [...], "kwargs": {...}, "expected": <json>, "has_expected": bool}],
       "limits": {"timeout_s", "cpu_s", "memory_mb", "output_bytes", "max_processes",
                  "file_size_mb"},
       "stop_on_first_failure": bool, "float_tolerance": float}

* The harness answers with one *result frame* per job::

      {"cases": [{"index": int, "status": str, "output": <json or null>, "error": str|null,
                  "stdout": str, "duration_s": float, "peak_memory_kb": int}],
       "error": str|null}

  ``status`` is one of :class:`CaseStatus`. A job-level ``error`` (e.g. the frame itself was
  malformed) means no case ran. Cases skipped by ``stop_on_first_failure`` are simply absent.
* The harness forks a fresh child for every case; the parent never compiles or executes candidate
  code. The harness compares ``output`` with ``expected`` itself (see
  :func:`auto_dev.sandbox._harness.outputs_match`) so that ``wrong_answer`` is decided next to the
  data.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from auto_dev._exceptions import ValidationError


class CaseStatus(enum.StrEnum):
    """Outcome of one test case."""

    OK = "ok"
    WRONG_ANSWER = "wrong_answer"
    ERROR = "error"
    TIMEOUT = "timeout"
    MEMORY_EXCEEDED = "memory_exceeded"
    OUTPUT_EXCEEDED = "output_exceeded"
    CRASHED = "crashed"


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-case resource limits. Every backend enforces all of them."""

    timeout_s: float = 2.0
    cpu_s: float | None = None  # defaults to ceil(timeout_s) + 1 inside the harness
    memory_mb: int = 256
    output_bytes: int = 65_536
    max_processes: int = 16
    file_size_mb: int = 16

    def __post_init__(self) -> None:
        if not (isinstance(self.timeout_s, int | float) and 0 < self.timeout_s <= 3600):
            raise ValidationError("limits.timeout_s", "must be a number in (0, 3600]")
        if self.cpu_s is not None and not (0 < self.cpu_s <= 3600):
            raise ValidationError("limits.cpu_s", "must be in (0, 3600] or None")
        if not (16 <= self.memory_mb <= 65_536):
            raise ValidationError("limits.memory_mb", "must be between 16 and 65536")
        if not (64 <= self.output_bytes <= 64 * 1024 * 1024):
            raise ValidationError("limits.output_bytes", "must be between 64 B and 64 MiB")
        if not (1 <= self.max_processes <= 4096):
            raise ValidationError("limits.max_processes", "must be between 1 and 4096")
        if not (1 <= self.file_size_mb <= 4096):
            raise ValidationError("limits.file_size_mb", "must be between 1 and 4096")

    def to_wire(self) -> dict[str, Any]:
        return {
            "timeout_s": float(self.timeout_s),
            "cpu_s": float(self.cpu_s) if self.cpu_s is not None else float(
                math.ceil(self.timeout_s) + 1
            ),
            "memory_mb": self.memory_mb,
            "output_bytes": self.output_bytes,
            "max_processes": self.max_processes,
            "file_size_mb": self.file_size_mb,
        }


_MISSING = object()


@dataclass(frozen=True, slots=True)
class Case:
    """One test case: call ``entrypoint(*args, **kwargs)`` and compare with ``expected``.

    With ``has_expected=False`` the case passes whenever the call returns (a smoke case).
    """

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    expected: Any = None
    has_expected: bool = True
    name: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "expected": self.expected,
            "has_expected": self.has_expected,
        }

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "case") -> Case:
        """Build a case from ``{"args": [...], "kwargs": {...}, "expected": ...}``.

        Raises :class:`ValidationError` naming the offending field.
        """
        if not isinstance(data, dict):
            raise ValidationError(where, f"must be an object, got {type(data).__name__}")
        unknown = set(data) - {"args", "kwargs", "expected", "name"}
        if unknown:
            raise ValidationError(f"{where}.{sorted(unknown)[0]}", "unknown field")
        args = data.get("args", [])
        if not isinstance(args, list):
            raise ValidationError(f"{where}.args", f"must be a list, got {type(args).__name__}")
        kwargs = data.get("kwargs", {})
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise ValidationError(f"{where}.kwargs", "must be an object with string keys")
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise ValidationError(f"{where}.name", "must be a string")
        return cls(
            args=tuple(args),
            kwargs=dict(kwargs),
            expected=data.get("expected"),
            has_expected="expected" in data,
            name=name,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"args": list(self.args), "kwargs": dict(self.kwargs)}
        if self.has_expected:
            out["expected"] = self.expected
        if self.name:
            out["name"] = self.name
        return out


@dataclass(frozen=True, slots=True)
class SandboxJob:
    """Run ``entrypoint`` from ``code`` against ``cases`` under ``limits``."""

    code: str
    entrypoint: str
    cases: tuple[Case, ...]
    limits: Limits = field(default_factory=Limits)
    stop_on_first_failure: bool = False
    float_tolerance: float = 1e-6

    def __post_init__(self) -> None:
        if not isinstance(self.code, str):
            raise ValidationError("job.code", "must be a string")
        if not isinstance(self.entrypoint, str) or not self.entrypoint.isidentifier():
            raise ValidationError("job.entrypoint", "must be a Python identifier")
        if not isinstance(self.cases, tuple):
            object.__setattr__(self, "cases", tuple(self.cases))

    def to_wire(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "entrypoint": self.entrypoint,
            "cases": [c.to_wire() for c in self.cases],
            "limits": self.limits.to_wire(),
            "stop_on_first_failure": self.stop_on_first_failure,
            "float_tolerance": self.float_tolerance,
        }


@dataclass(frozen=True, slots=True)
class CaseResult:
    """What happened to one case."""

    index: int
    status: CaseStatus
    output: Any = None
    error: str | None = None
    stdout: str = ""
    duration_s: float = 0.0
    peak_memory_kb: int = 0

    @property
    def passed(self) -> bool:
        return self.status is CaseStatus.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "status": self.status.value,
            "output": self.output,
            "error": self.error,
            "stdout": self.stdout,
            "duration_s": self.duration_s,
            "peak_memory_kb": self.peak_memory_kb,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> CaseResult:
        return cls(
            index=int(data["index"]),
            status=CaseStatus(data["status"]),
            output=data.get("output"),
            error=data.get("error"),
            stdout=str(data.get("stdout") or ""),
            duration_s=float(data.get("duration_s") or 0.0),
            peak_memory_kb=int(data.get("peak_memory_kb") or 0),
        )


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """The outcome of one job. ``total`` counts the job's cases, run or skipped."""

    backend: str
    cases: tuple[CaseResult, ...]
    total: int
    duration_s: float = 0.0
    error: str | None = None

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cases if c.status is CaseStatus.OK)

    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def all_passed(self) -> bool:
        return self.error is None and self.total > 0 and self.passed == self.total

    @property
    def peak_memory_kb(self) -> int:
        return max((c.peak_memory_kb for c in self.cases), default=0)

    @property
    def case_seconds(self) -> float:
        return sum(c.duration_s for c in self.cases)

    def passed_indices(self) -> frozenset[int]:
        return frozenset(c.index for c in self.cases if c.status is CaseStatus.OK)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "total": self.total,
            "passed": self.passed,
            "duration_s": self.duration_s,
            "error": self.error,
            "cases": [c.to_dict() for c in self.cases],
        }
