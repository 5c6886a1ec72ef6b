"""The classifier fine-tune runs on the shared trainer and gives the weights the old loop gave.

The zoo's ``minilm-intent`` is cached by a content hash of its settings, and
the README's accuracy figures come from those weights: folding the plain loop
into :class:`Trainer` must not move a single bit. ``_reference_loop`` is the
loop as it stood (``training/loop.py`` at d753469), frozen here as the oracle.
"""

from __future__ import annotations

import pytest
import torch
import transformers

from slimformer.data import labelled_dataset
from slimformer.training.classifier import PLAIN_FINETUNE, EpochMeans, train_classifier
from slimformer.training.settings import TrainSettings


def _reference_loop(model, tokenizer, examples, *, epochs, lr, batch_size, max_length, seed):
    """The pre-Trainer ``train_classifier`` (weight_decay 0.01, CPU), verbatim in substance."""
    trainable = [p for p in model.parameters() if p.requires_grad and p.is_floating_point()]
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.01)
    model.to("cpu").train()
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(examples), generator=generator).tolist()
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = [examples[i] for i in order[start : start + batch_size]]
            encoded = tokenizer(
                [ex.text for ex in batch],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to("cpu")
            labels = torch.tensor([ex.label for ex in batch], device="cpu")
            loss = model(**encoded, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(examples))
    model.eval()
    return losses


SETTINGS = {"epochs": 3, "lr": 1e-3, "batch_size": 7, "seed": 3}  # 30 items: a short last batch


def _model(folder):
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder))
    return model, transformers.AutoTokenizer.from_pretrained(str(folder))


def _train_both(folder, data, **overrides):
    examples = labelled_dataset(str(data)).split("train")
    reference, tokenizer = _model(folder)
    initial = {k: v.clone() for k, v in reference.state_dict().items()}
    old_losses = _reference_loop(reference, tokenizer, examples, max_length=16, **SETTINGS)
    model, tokenizer = _model(folder)
    settings = TrainSettings(**{**PLAIN_FINETUNE, **SETTINGS, **overrides})
    losses = train_classifier(model, tokenizer, examples, settings, max_length=16, progress=False)
    return reference.state_dict(), old_losses, model.state_dict(), losses, initial


def test_bit_identical_to_the_old_loop(tiny_bert_cls_dir, tiny_cls_jsonl):
    old, old_losses, new, losses, initial = _train_both(tiny_bert_cls_dir, tiny_cls_jsonl)
    assert not torch.equal(old["classifier.weight"], initial["classifier.weight"])  # it trained
    assert old.keys() == new.keys()
    assert [k for k in old if not torch.equal(old[k], new[k])] == []
    assert losses == old_losses and len(losses) == SETTINGS["epochs"]


def test_the_oracle_tells_another_data_order_apart(tiny_bert_cls_dir, tiny_cls_jsonl):
    """The check above can fail: the trainer's default order gives other weights."""
    old, _, new, _, _ = _train_both(tiny_bert_cls_dir, tiny_cls_jsonl, shuffle="epoch_seeded")
    assert not torch.equal(old["classifier.weight"], new["classifier.weight"])


def test_cached_finetune_matches_the_old_loop(tiny_bert_dir, tiny_cls_jsonl):
    """The zoo's path (fresh head under the seed, then training) gives the old loop's weights."""
    from safetensors.torch import load_file

    from slimformer.training.finetune import _new_classifier
    from slimformer.zoo import finetune_classifier

    settings = {**SETTINGS, "max_length": 16}
    folder = finetune_classifier(
        str(tiny_bert_dir), str(tiny_cls_jsonl), progress=False, **settings
    )
    data = labelled_dataset(str(tiny_cls_jsonl))
    torch.manual_seed(SETTINGS["seed"])
    reference, tokenizer = _new_classifier(tiny_bert_dir, data)
    _reference_loop(reference, tokenizer, data.split("train"), **settings)
    saved = load_file(next(folder.glob("*.safetensors")))
    expected = reference.state_dict()
    assert saved and all(torch.equal(saved[k], expected[k]) for k in saved)


def test_epoch_means_weigh_by_batch_size():
    means = EpochMeans(5)
    for loss, size in [(1.0, 2), (2.0, 2), (4.0, 1), (3.0, 2)]:
        means.add(loss, size)
    assert means.result() == [pytest.approx((2 + 4 + 4) / 5), 3.0]


def test_finetune_stage_with_its_defaults_matches_the_old_loop(tiny_bert_cls_dir, tiny_cls_jsonl):
    """The recipe stage (defaults: epochs 1, lr 2e-5, batch 16, seed 0) trains as it did."""
    from slimformer.methods.apply import apply_method
    from slimformer.methods.finetune.finetune import Finetune
    from slimformer.zoo import load

    examples = labelled_dataset(str(tiny_cls_jsonl)).split("train")
    reference, tokenizer = _model(tiny_bert_cls_dir)
    initial = reference.classifier.weight.detach().clone()
    old = dict(epochs=1, lr=2e-5, batch_size=16, seed=0)
    _reference_loop(reference, tokenizer, examples, max_length=64, **old)
    slim = load(str(tiny_bert_cls_dir), runtime="eager", progress=False)
    apply_method(slim, Finetune(dataset=str(tiny_cls_jsonl)), progress=False)
    expected, trained = reference.state_dict(), slim.model.state_dict()
    assert not torch.equal(initial, expected["classifier.weight"])  # it trained
    assert all(torch.equal(expected[k], trained[k]) for k in expected)
