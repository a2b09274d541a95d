"""What every task provides; see classify.py and detect.py."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np


@dataclass
class Task:
    """A task's settings (recorded in provenance) and what it does with a model's outputs."""

    name: ClassVar[str] = ""
    labels: list[str] = field(default_factory=list)

    def label(self, class_id: int) -> str:
        """The class's name, or its number when no labels were given (or too few)."""
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        names = {f.name for f in fields(cls)}
        known = {key: value for key, value in data.items() if key in names}
        return cls(**known)

    # ----- what a task implements ------------------------------------------------

    def results(self, outputs: dict[str, np.ndarray], *, input_hw: tuple[int, int] | None = None,
                image_hw: tuple[int, int] | None = None,
                placement: tuple[float, float, int, int] | None = None) -> list[list[dict[str, Any]]]:
        """Per sample of the batch, its results as JSON-ready dicts. ``input_hw`` is the model
        input's height and width; ``image_hw`` and ``placement`` (kit.data.preprocess.placement)
        map input pixels back to the original image."""
        raise NotImplementedError

    def lines(self, results: list[dict[str, Any]]) -> list[str]:
        """One sample's results as lines for the terminal (never wider than the data needs)."""
        raise NotImplementedError

    def draw(self, image: np.ndarray, results: list[dict[str, Any]]) -> np.ndarray:
        """The image (BGR, as OpenCV decodes it) with one sample's results drawn on it."""
        raise NotImplementedError
