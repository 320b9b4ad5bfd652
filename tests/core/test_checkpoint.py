import json
import zipfile

import numpy as np
import pytest
import torch

from cairnrl.core.checkpoint import load_checkpoint, load_optimizer_state, optimizer_state, save_checkpoint
from cairnrl.exceptions import CheckpointError


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_round_trip(tmp_path, suffix):
    groups = {"net": {"w": torch.arange(6.0).view(2, 3)}, "buffer": {"obs": np.ones((4, 2), dtype=np.uint8)}}
    path = save_checkpoint(tmp_path / f"ckpt{suffix}", {"algorithm": "X", "n": 3}, groups)
    loaded = load_checkpoint(path)
    assert loaded.config == {"algorithm": "X", "n": 3}
    assert torch.equal(loaded.group("net")["w"], groups["net"]["w"])
    assert loaded.group("buffer")["obs"].dtype == torch.uint8
    with pytest.raises(CheckpointError, match="no tensor group 'missing'"):
        loaded.group("missing")


def test_tampered_file_is_rejected(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", {"a": 1}, {"net": {"w": torch.zeros(3)}})
    data = bytearray((path / "net.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "net.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="net.safetensors does not match its checksum"):
        load_checkpoint(path)


def test_missing_file_and_edited_config(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", {"a": 1}, {"net": {"w": torch.zeros(3)}})
    (path / "config.json").write_text(json.dumps({"a": 2}))
    with pytest.raises(CheckpointError, match="config.json does not match"):
        load_checkpoint(path)
    (path / "net.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(path)


def test_truncated_zip_and_garbage(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt.zip", {"a": 1}, {"net": {"w": torch.zeros(100)}})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint zip"):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="no checkpoint there"):
        load_checkpoint(tmp_path / "nothing")


def test_zip_without_manifest_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "foreign.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", "{}")
    with pytest.raises(CheckpointError, match="manifest.json is missing"):
        load_checkpoint(path)


def test_non_json_config_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not plain JSON"):
        save_checkpoint(tmp_path / "c", {"x": object()}, {})


def test_optimizer_state_round_trip():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    tensors, meta = optimizer_state(optimizer)
    json.dumps(meta)
    fresh = torch.optim.Adam(net.parameters(), lr=0.5)
    load_optimizer_state(fresh, tensors, meta)
    assert fresh.param_groups[0]["lr"] == 0.1
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(fresh.state[net.weight][key], optimizer.state[net.weight][key])


def test_a_generator_state_from_another_device_type_restarts_with_a_warning():
    """A CUDA generator's state (16 bytes) cannot continue a CPU generator: fresh seeding is kept, with a warning."""
    from cairnrl.core.state import load_generator_state

    generator = torch.Generator().manual_seed(5)
    expected = torch.Generator().manual_seed(5).get_state()
    with pytest.warns(UserWarning, match="another device type"):
        load_generator_state(generator, torch.zeros(16, dtype=torch.uint8), "noise")
    assert torch.equal(generator.get_state(), expected)
    saved = torch.Generator().manual_seed(9).get_state()
    load_generator_state(generator, saved, "noise")
    assert torch.equal(generator.get_state(), saved)


def test_saved_tensors_return_to_the_models_device():
    """A saved tensor attribute that the fresh model has not built yet (None) is restored on the model's device."""
    from cairnrl.core.state import gather_state, restore_state

    class Model:
        def __init__(self, device):
            self.device = torch.device(device)
            self.kept = None

    trained = Model("cpu")
    trained.kept = torch.arange(3.0)
    state, groups = gather_state(trained, ["kept"])
    fresh = Model("meta")  # stands in for a GPU: any device other than the checkpoint's
    restore_state(fresh, state, groups, ["kept"])
    assert fresh.kept.device.type == "meta" and fresh.kept.shape == (3,)
