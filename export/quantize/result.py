"""What kit quantize reports: the file, sizes, calibration, fidelity against the float model,
the accuracy budget when one was given, and what the user should know."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.check.metrics import OutputDiff


@dataclass
class QuantizeResult:
    path: Path
    precision: str
    size_bytes: int
    source_size_bytes: int
    seconds: float
    target: str | None = None
    method: str | None = None
    per_channel: bool | None = None
    excluded: list[str] = field(default_factory=list)
    calibration: dict[str, Any] | None = None
    fidelity: list[OutputDiff] = field(default_factory=list)  # against the source on calibration samples
    budget: dict[str, Any] | None = None  # set by quantize_to_budget
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "precision": self.precision, "size_bytes": self.size_bytes,
                "source_size_bytes": self.source_size_bytes, "seconds": round(self.seconds, 3),
                "target": self.target, "method": self.method, "per_channel": self.per_channel,
                "excluded": self.excluded, "calibration": self.calibration,
                "fidelity": [_metrics(d) for d in self.fidelity], "budget": self.budget,
                "warnings": self.warnings, "notes": self.notes}


def _metrics(diff: OutputDiff) -> dict[str, Any]:
    data = diff.to_dict()
    data.pop("passed")  # fidelity here is measured, not judged: the budget or `kit compare` judges
    return data
