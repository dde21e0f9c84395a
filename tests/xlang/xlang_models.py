"""Model classes the tests name by qualified name (PyTorch), as a user's own module would."""

import torch


class TinyNet(torch.nn.Module):
    """A linear layer: 4 features in, `outputs` scores out."""

    def __init__(self, outputs: int = 2) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def to_tensor(line: str) -> torch.Tensor:
    """Parses a CSV line into a float32 tensor."""
    return torch.tensor([float(v) for v in line.split(",")], dtype=torch.float32)
