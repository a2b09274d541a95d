"""Running models over the same data and judging them: output metrics, task accuracy,
per-layer diagnosis, compare and eval."""
