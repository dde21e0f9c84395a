"""The first PyTorch model load takes the process's long-lived objects out of the garbage
collector's generations, once, and leaves the model itself collectable.

Run in a fresh interpreter: `gc.freeze()` is process-wide and once-only, so the test
process's own history would decide the outcome otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys

import torch

_SCRIPT = """
import gc, json, sys
import torch
from liveinference.frameworks.pytorch import PytorchModelHandlerTensor

handler = PytorchModelHandlerTensor(
    state_dict_path=sys.argv[1], model_class=torch.nn.Linear,
    model_params={"in_features": 4, "out_features": 2})
before = len(gc.get_objects())
model = handler.load_model()
first_freeze = gc.get_freeze_count()
after = len(gc.get_objects())
model_tracked = any(obj is model for obj in gc.get_objects())
handler.load_model()
print(json.dumps({"before": before, "after": after, "frozen": first_freeze,
                  "frozen_after_second_load": gc.get_freeze_count(),
                  "model_tracked": model_tracked}))
"""


def test_first_load_freezes_the_long_lived_objects_once_and_not_the_model(tmp_path):
    path = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), path)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    # torch's import alone leaves well over 10,000 tracked objects; after the load, the
    # collector's generations hold a small fraction of them.
    assert counts["before"] > 10_000
    assert counts["frozen"] >= counts["before"] // 2
    assert counts["after"] < counts["before"] // 10
    assert counts["model_tracked"], "the model must stay collectable after a refresh swaps it"
    assert counts["frozen_after_second_load"] == counts["frozen"]
