"""What every detector reads: the report, and whether its weights look untrained."""

from __future__ import annotations

from dataclasses import dataclass

from ...report.facts import Report, Severity
from .untrained import untrained_evidence

__all__ = ["SEVERITY_ORDER", "Context", "plural", "signed"]

SEVERITY_ORDER: dict[Severity, int] = {"error": 0, "warning": 1, "info": 2}


def signed(value: float, spec: str = "g") -> str:
    """Format a number with a true minus sign, as the prose around it has."""
    return format(value, spec).replace("-", "−")


def plural(count: int, one: str, many: str | None = None) -> str:
    """Say ``count`` things with the right noun: "1 channel", "3 channels"."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


@dataclass(frozen=True)
class Context:
    """The facts a detector judges, with the verdicts more than one detector needs."""

    report: Report
    untrained: bool  # by the user's word (--weights none) or by the untrained-weights rule

    @classmethod
    def of(cls, report: Report) -> Context:
        """Make the context of a report."""
        return cls(report, report.model.untrained or untrained_evidence(report) is not None)
