"""Classification: class scores in, the top classes with their names and probabilities out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kit.core.errors import InputError
from kit.tasks.base import Task


@dataclass
class Classify(Task):
    name = "classify"
    top_k: int = 5
    output: str | None = None  # the scores output, when the model has several

    def scores(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The class scores among a model's outputs: the named one, or the only 2-D one."""
        if self.output is not None:
            if self.output not in outputs:
                raise InputError(f"expected an output named {self.output!r}; the model has {', '.join(outputs)}.",
                                 hint="Name one of the model's outputs with --output-name.")
            return outputs[self.output]
        found = [name for name, array in outputs.items() if array.ndim == 2]
        if len(found) != 1:
            raise InputError(f"expected one (samples, classes) output to score; found {len(found)} among "
                             f"{', '.join(f'{n}{list(a.shape)}' for n, a in outputs.items())}.",
                             hint="Name the classification output with --output-name.")
        return outputs[found[0]]

    def results(self, outputs, *, input_hw=None, image_hw=None, placement=None) -> list[list[dict[str, Any]]]:
        probabilities = _probabilities(self.scores(outputs).astype(np.float64))
        top = np.argsort(-probabilities, axis=1, kind="stable")[:, :self.top_k]
        return [[{"class_id": int(i), "label": self.label(int(i)), "score": float(row[i])} for i in order]
                for row, order in zip(probabilities, top)]

    def lines(self, results) -> list[str]:
        width = max((len(r["label"]) for r in results), default=0)
        return [f"{r['label']:<{width}}  {r['score']:.4f}" for r in results]

    def draw(self, image, results):
        import cv2

        drawn = image.copy()
        for row, result in enumerate(results[:3]):
            cv2.putText(drawn, f"{result['label']} {result['score']:.2f}", (8, 24 + 22 * row),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2, cv2.LINE_AA)
        return drawn


def _probabilities(scores: np.ndarray) -> np.ndarray:
    """Rows that already are probabilities stay as they are; logits go through a softmax."""
    if np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3):
        return scores
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
