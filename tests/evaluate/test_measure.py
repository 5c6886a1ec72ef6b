"""Tests for the measurement toolkit: size, latency, memory, energy, records."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import BertModel

from slimformer.errors import SlimformerError
from slimformer.evaluate import energy
from slimformer.evaluate.energy import counter_delta_uj, measure_energy
from slimformer.evaluate.latency import make_inputs, measure_latency, model_forward
from slimformer.evaluate.measure import measure_model
from slimformer.evaluate.memory import current_rss_bytes, peak_rss_during
from slimformer.evaluate.record import Measurement
from slimformer.evaluate.size import (
    count_parameters,
    disk_bytes,
    linear_weight_bytes,
    safetensors_tensor_bytes,
    weight_bytes_in_memory,
)
from tiny_models import tiny_model


@pytest.fixture(scope="module")
def bert() -> BertModel:
    return tiny_model(
        "bert",
        1000,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    ).eval()


@pytest.fixture()
def no_rapl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "powercap"
    empty.mkdir()
    monkeypatch.setattr(energy, "RAPL_ROOT", empty)


class FakeInt8Linear(nn.Module):
    """Stores weights as int8 buffers and says so through ``logical_weights``."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.register_buffer("codes", torch.ones(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features))
        self.inner = nn.Linear(3, 3)  # must not be counted: the module speaks for its children

    def logical_weights(self) -> list[torch.Tensor]:
        return [self.codes, self.bias]


# --- size -----------------------------------------------------------------


def test_parameter_count_matches_numel(bert: BertModel) -> None:
    total, nonzero = count_parameters(bert)
    assert total == sum(p.numel() for p in bert.parameters())
    assert 0 < nonzero <= total


def test_logical_weights_module_counted_through_protocol() -> None:
    model = nn.Sequential(nn.Linear(4, 5), FakeInt8Linear(5, 6))
    total, nonzero = count_parameters(model)
    assert total == (4 * 5 + 5) + (6 * 5 + 6)
    linear = model[0]
    expected_nonzero = int((linear.weight != 0).sum() + (linear.bias != 0).sum()) + 6 * 5
    assert nonzero == expected_nonzero  # the fake's bias is all zeros


def test_a_module_reached_twice_is_counted_once() -> None:
    """A compiled runner holds the model twice; logical weights are new tensors each call."""

    class Dequantizing(FakeInt8Linear):
        def logical_weights(self) -> list[torch.Tensor]:
            return [self.codes.float() * 0.1, self.bias]  # rebuilt on every call

    compressed = Dequantizing(5, 6)
    model = nn.Sequential(compressed, nn.Sequential(compressed))
    assert count_parameters(model)[0] == 6 * 5 + 6


def test_tied_weights_counted_once() -> None:
    embed, head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    head.weight = embed.weight
    model = nn.Sequential(embed, head)
    assert count_parameters(model) == (40, int(torch.count_nonzero(embed.weight)))
    assert weight_bytes_in_memory(model) == 40 * 4


def test_zeroing_weights_reduces_nonzero(bert: BertModel) -> None:
    model = BertModel(bert.config)
    _, before = count_parameters(model)
    weight = model.encoder.layer[0].intermediate.dense.weight
    with torch.no_grad():
        weight.zero_()
    total, after = count_parameters(model)
    assert total == sum(p.numel() for p in model.parameters())
    assert before - after == weight.numel()


def test_weight_bytes_in_memory_matches_state_dict(bert: BertModel) -> None:
    unique = {t.data_ptr(): t for t in bert.state_dict().values()}
    expected = sum(t.numel() * t.element_size() for t in unique.values())
    assert weight_bytes_in_memory(bert) == expected


def test_safetensors_header_matches_load_file(tmp_path: Path) -> None:
    tensors = {
        "f32": torch.randn(3, 4),
        "f16": torch.randn(5).half(),
        "bf16": torch.randn(2, 2).bfloat16(),
        "f64": torch.randn(2, dtype=torch.float64),
        "i8": torch.ones(7, dtype=torch.int8),
        "u8": torch.ones(3, 3, dtype=torch.uint8),
        "i16": torch.ones(4, dtype=torch.int16),
        "i32": torch.ones(6, dtype=torch.int32),
        "i64": torch.ones(2, 3, dtype=torch.int64),
        "bool": torch.ones(9, dtype=torch.bool),
    }
    file = tmp_path / "m.safetensors"
    save_file(tensors, str(file), metadata={"format": "pt"})
    loaded = load_file(str(file))
    expected = {k: v.numel() * v.element_size() for k, v in loaded.items()}
    assert safetensors_tensor_bytes(file) == expected
    assert safetensors_tensor_bytes(tmp_path) == expected


def test_safetensors_header_without_offsets_uses_dtype_and_shape(tmp_path: Path) -> None:
    header = json.dumps({"a": {"dtype": "BF16", "shape": [3, 5]}}).encode()
    file = tmp_path / "x.safetensors"
    file.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 30)
    assert safetensors_tensor_bytes(file) == {"a": 30}


def test_safetensors_garbage_raises(tmp_path: Path) -> None:
    file = tmp_path / "bad.safetensors"
    file.write_bytes(b"\xff" * 16)
    with pytest.raises(SlimformerError):
        safetensors_tensor_bytes(file)


def test_disk_bytes_of_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"x" * 10)
    (tmp_path / "sub" / "b.json").write_bytes(b"y" * 25)
    total, files = disk_bytes(tmp_path)
    assert total == 35
    assert files == {"a.bin": 10, "sub/b.json": 25}
    assert disk_bytes(tmp_path / "a.bin") == (10, {"a.bin": 10})
    with pytest.raises(SlimformerError):
        disk_bytes(tmp_path / "missing")


def test_linear_weight_bytes_of_saved_bert(bert: BertModel, tmp_path: Path) -> None:
    bert.save_pretrained(tmp_path)
    sizes = safetensors_tensor_bytes(tmp_path)
    expected = sum(
        (m.weight.numel() + m.bias.numel()) * 4 for m in bert.modules() if isinstance(m, nn.Linear)
    )
    assert linear_weight_bytes(sizes, bert) == expected
    assert 0 < expected < sum(sizes.values())


# --- latency --------------------------------------------------------------


def test_make_inputs_avoids_low_ids() -> None:
    inputs = make_inputs(5000, batch=3, seq_len=7)
    ids = inputs["input_ids"]
    assert ids.shape == (3, 7) and inputs["attention_mask"].shape == (3, 7)
    assert int(ids.min()) >= 1000 and int(ids.max()) < 4999
    assert torch.equal(ids, make_inputs(5000, 3, 7)["input_ids"])  # seeded
    small = make_inputs(10, 2, 4)["input_ids"]
    assert int(small.min()) >= 0 and int(small.max()) < 10


def test_latency_fields_and_threads_restored(bert: BertModel) -> None:
    before = torch.get_num_threads()
    forward = model_forward(bert, make_inputs(1000, batch=2, seq_len=8))
    result = measure_latency(forward, batch=2, seq_len=8, runs=5, warmup=1, threads=1)
    assert torch.get_num_threads() == before
    assert result.threads == 1 and result.runs == 5 and result.device == "cpu"
    assert 0 < result.min_ms <= result.p10_ms <= result.median_ms <= result.p90_ms
    assert result.iqr_ms >= 0 and result.std_ms >= 0
    assert result.tokens_per_s == pytest.approx(result.sequences_per_s * 8)
    assert result.sequences_per_s == pytest.approx(2 / (result.median_ms / 1000))


def test_latency_rejects_bad_counts() -> None:
    with pytest.raises(SlimformerError):
        measure_latency(lambda: None, batch=1, seq_len=1, runs=0)


# --- memory ---------------------------------------------------------------


def test_peak_rss_at_least_baseline() -> None:
    def allocate() -> None:
        block = b"\x01" * (40 * 1024 * 1024)
        torch.ones(1).add_(1)
        assert len(block) > 0
        time.sleep(0.05)  # hold the block long enough for the sampler to see it

    result = peak_rss_during(allocate)
    assert result.peak_rss_bytes >= result.baseline_rss_bytes > 0
    assert result.peak_increase_bytes == result.peak_rss_bytes - result.baseline_rss_bytes
    assert result.peak_increase_bytes > 10 * 1024 * 1024
    assert "RSS" in result.method
    assert current_rss_bytes() > 0


# --- energy ---------------------------------------------------------------


def _busy() -> None:
    a = torch.randn(64, 64)
    for _ in range(5):
        a = a @ a
        a = a / a.norm()


def test_energy_estimate_without_rapl(no_rapl: None) -> None:
    result = measure_energy(_busy, sequences_per_call=4, calls=2, watts_per_core=10.0)
    assert result.method == "estimate" and result.is_estimate
    assert "estimate" in result.detail and "10 W per busy core" in result.detail
    assert result.joules_per_batch >= 0
    assert result.joules_per_sequence == pytest.approx(result.joules_per_batch / 4)


def test_energy_watts_from_env(no_rapl: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIMFORMER_WATTS_PER_CORE", "7.5")
    result = measure_energy(_busy, sequences_per_call=1, calls=1)
    assert "7.5 W per busy core" in result.detail
    monkeypatch.setenv("SLIMFORMER_WATTS_PER_CORE", "lots")
    with pytest.raises(SlimformerError):
        measure_energy(_busy, sequences_per_call=1, calls=1)


def _write_domain(root: Path, folder: str, name: str, energy_uj: int, max_uj: int) -> Path:
    path = root / folder
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path / "energy_uj"


def test_energy_reads_fake_rapl_with_wraparound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    max_uj = 10_000_000
    pkg0 = _write_domain(tmp_path, "intel-rapl:0", "package-0", max_uj - 300_000, max_uj)
    pkg1 = _write_domain(tmp_path, "intel-rapl:1", "package-1", 5_000, max_uj)
    core = _write_domain(tmp_path, "intel-rapl:0:0", "core", 0, max_uj)
    monkeypatch.setattr(energy, "RAPL_ROOT", tmp_path)

    def work() -> None:  # each call: 1 J on package 0 (wrapping), 0.5 J on package 1
        for file, step in ((pkg0, 1_000_000), (pkg1, 500_000), (core, 9_000_000)):
            file.write_text(f"{(int(file.read_text()) + step) % max_uj}\n")

    result = measure_energy(work, sequences_per_call=4, calls=2, warmup=0)
    assert result.method == "rapl" and not result.is_estimate
    assert result.joules_per_batch == pytest.approx(1.5)
    assert result.joules_per_sequence == pytest.approx(0.375)
    assert "intel-rapl:0" in result.detail and "intel-rapl:0:0" not in result.detail


def test_unreadable_rapl_falls_back_to_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "intel-rapl:0"
    (folder / "energy_uj").mkdir(parents=True)  # reading it fails like a root-only file
    (folder / "name").write_text("package-0\n")
    monkeypatch.setattr(energy, "RAPL_ROOT", tmp_path)
    assert measure_energy(_busy, sequences_per_call=1, calls=1).method == "estimate"


def test_counter_delta_wraps() -> None:
    assert counter_delta_uj(90, 10, 100) == 20
    assert counter_delta_uj(10, 90, 100) == 80


# --- whole measurement ----------------------------------------------------


def test_measure_model_and_json_round_trip(bert: BertModel, tmp_path: Path, no_rapl: None) -> None:
    saved = tmp_path / "saved"
    bert.save_pretrained(saved)
    bert.train()
    before_threads = torch.get_num_threads()
    measurement = measure_model(
        bert, shapes=[(1, 8), (2, 16)], threads=1, runs=2, warmup=1, saved_path=saved
    )
    assert bert.training  # mode restored
    assert torch.get_num_threads() == before_threads
    assert [(r.batch, r.seq_len) for r in measurement.latency] == [(1, 8), (2, 16)]
    assert all(r.threads == 1 for r in measurement.latency)
    assert measurement.size.disk_bytes == sum(measurement.size.disk_files.values())
    assert measurement.size.linear_weight_bytes_on_disk > 0
    assert measurement.energy.is_estimate and measurement.memory is not None
    assert measurement.machine["cores"] and measurement.machine["torch_version"]

    text = measurement.to_json(tmp_path / "m.json")
    assert Measurement.from_json(text) == measurement
    assert Measurement.from_json(tmp_path / "m.json") == measurement
    dumped = measurement.model_dump(mode="json")
    assert Measurement.model_validate(json.loads(json.dumps(dumped))) == measurement
    bert.eval()
