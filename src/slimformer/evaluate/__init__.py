"""Evaluation (task quality) and measurement (size, speed, memory, energy)."""

from slimformer.evaluate.tasks import PRIMARY, evaluate, reference_embeddings

__all__ = ["PRIMARY", "evaluate", "reference_embeddings"]
