"""How faithfully a compressed sentence-embedding model reproduces the original.

Embeddings are computed as sentence-transformers does for all-MiniLM-L6-v2:
mean of the last hidden states over real (non-padding) tokens, then L2
normalisation. Fidelity has two parts: the cosine between the original's and
the compressed model's embedding of each text, and whether each text keeps its
nearest neighbours (among the other texts), which is what retrieval users
feel. The original embeddings can be computed once, before compressing, and
passed as ``reference_embeddings`` so the original model need not stay loaded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimformer.data.batching import encode_texts
from slimformer.errors import SlimformerError
from slimformer.evaluate.perplexity import inference


def sentence_embeddings(
    model: nn.Module,
    tokenizer,
    texts: list[str],
    batch_size: int = 32,
    max_length: int = 128,
) -> torch.Tensor:
    """``[len(texts), hidden]`` float32 CPU tensor of unit-length sentence embeddings."""
    if not texts:
        raise SlimformerError("no texts to embed", "pass a non-empty list of strings")
    device = _model_device(model)
    chunks = []
    with inference(model):
        for start in range(0, len(texts), batch_size):
            encoded = encode_texts(tokenizer, texts[start : start + batch_size], max_length, device)
            mask = encoded["attention_mask"]
            output = model(input_ids=encoded["input_ids"], attention_mask=mask)
            chunks.append(mean_pool(_hidden_states(output), mask).cpu())
    return torch.cat(chunks)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mask-weighted mean over tokens, then L2-normalised (in float32)."""
    weights = mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.float() * weights).sum(dim=1)
    pooled = summed / weights.sum(dim=1).clamp(min=1e-9)
    return F.normalize(pooled, p=2, dim=-1)


def evaluate_embedding_fidelity(
    original_model: nn.Module | None,
    compressed_model: nn.Module,
    tokenizer,
    texts: list[str],
    k: int = 1,
    reference_embeddings: torch.Tensor | None = None,
    batch_size: int = 32,
    max_length: int = 128,
) -> dict:
    """Mean/min cosine to the original embeddings and top-k neighbour agreement.

    ``retrieval_agreement`` is the fraction of texts whose k nearest other texts
    (by cosine) are the same set under both models.
    """
    _check_k(k, len(texts))
    reference = _reference(
        original_model, tokenizer, texts, reference_embeddings, batch_size, max_length
    )
    compressed = sentence_embeddings(compressed_model, tokenizer, texts, batch_size, max_length)
    if compressed.shape != reference.shape:
        raise SlimformerError(
            f"compressed embeddings have shape {tuple(compressed.shape)}, the reference "
            f"{tuple(reference.shape)}",
            "compare models with the same hidden size on the same texts",
        )
    cosine = (reference * compressed).sum(dim=-1)
    return {
        "mean_cosine": cosine.mean().item(),
        "min_cosine": cosine.min().item(),
        "retrieval_agreement": neighbour_agreement(reference, compressed, k),
        "k": k,
        "n": len(texts),
    }


def neighbour_agreement(reference: torch.Tensor, other: torch.Tensor, k: int = 1) -> float:
    """Fraction of rows whose top-k neighbours (self excluded) match as sets."""
    ref_top = _top_neighbours(reference, k)
    other_top = _top_neighbours(other, k)
    same = [set(a) == set(b) for a, b in zip(ref_top.tolist(), other_top.tolist(), strict=True)]
    return sum(same) / len(same)


def _top_neighbours(embeddings: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of each row's k most similar other rows."""
    similarity = embeddings @ embeddings.T
    similarity.fill_diagonal_(float("-inf"))
    return similarity.topk(k, dim=-1).indices


def _reference(
    original_model: nn.Module | None,
    tokenizer,
    texts: list[str],
    reference_embeddings: torch.Tensor | None,
    batch_size: int,
    max_length: int,
) -> torch.Tensor:
    """The original embeddings: given (re-normalised, on CPU) or computed now."""
    if reference_embeddings is not None:
        if reference_embeddings.dim() != 2 or reference_embeddings.shape[0] != len(texts):
            raise SlimformerError(
                f"reference_embeddings has shape {tuple(reference_embeddings.shape)} for "
                f"{len(texts)} texts",
                "compute them with sentence_embeddings(original_model, tokenizer, texts)",
            )
        return F.normalize(reference_embeddings.detach().float().cpu(), p=2, dim=-1)
    if original_model is None:
        raise SlimformerError(
            "embedding fidelity needs the original model or its embeddings",
            "pass original_model or reference_embeddings",
        )
    return sentence_embeddings(original_model, tokenizer, texts, batch_size, max_length)


def _check_k(k: int, n: int) -> None:
    """Each text needs at least k other texts to have k neighbours."""
    if not isinstance(k, int) or k < 1 or k >= n:
        raise SlimformerError(
            f"cannot compare top-{k} neighbours among {n} texts",
            "use 1 <= k < number of texts (pass more texts or a smaller k)",
        )


def _hidden_states(output) -> torch.Tensor:
    """Token states from a Hugging Face output object or a plain tuple."""
    hidden = getattr(output, "last_hidden_state", None)
    return output[0] if hidden is None else hidden


def _model_device(model: nn.Module) -> torch.device:
    """Inputs go where the weights are."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
