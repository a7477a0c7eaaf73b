"""Weight penalties: none, L1, L2 (as optimizer weight decay) and elastic net.

One class covers all four `conf/regularizer/*.yaml` options; they differ only in numbers:

    none        l1=0   l2=0   weight_decay=0
    l1          l1=λ1  l2=0   weight_decay=0     loss += λ1·Σ|w|
    l2          l1=0   l2=0   weight_decay=λ2    optimizer decays, nothing added to the loss
    elasticnet  l1=λ1  l2=λ2  weight_decay=0     loss += λ1·Σ|w| + λ2·Σw²

How weight_decay relates to an explicit penalty: plain SGD with weight_decay=λ adds λ·w to each
gradient, which is the gradient of (λ/2)·Σw². So `regularizer=l2 lambda_l2=λ` trains like an
explicit penalty of (λ/2)·Σw², i.e. half of what `elasticnet` with the same λ2 adds (with l1=0).
With momentum the equivalence still holds (decay enters the gradient before the momentum buffer);
with AdamW it does not: AdamW decays weights directly (decoupled), not through the gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from hymtl.schema import PenalizedParams

_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def typed_lambdas(regularizer: dict) -> tuple[float, float]:
    """The (lambda_l1, lambda_l2) a user typed, read back from a regularizer config: the table
    above in reverse (λ2 is `l2` for elasticnet and `weight_decay` for l2)."""
    l2 = float(regularizer.get("l2") or 0.0) or float(regularizer.get("weight_decay") or 0.0)
    return float(regularizer.get("l1") or 0.0), l2


def penalized_parameters(model: nn.Module, penalize: PenalizedParams | str) -> list[nn.Parameter]:
    """Trainable parameters the penalty applies to: all of them, or only weights (no biases,
    no normalization-layer parameters)."""
    penalize = PenalizedParams(penalize)
    if penalize is PenalizedParams.all:
        return [p for p in model.parameters() if p.requires_grad]
    chosen = []
    for module in model.modules():
        if isinstance(module, _NORM_LAYERS):
            continue
        for name, param in module.named_parameters(recurse=False):
            if param.requires_grad and name != "bias":
                chosen.append(param)
    return chosen


def l1_penalty(params: list[torch.Tensor]) -> torch.Tensor:
    """Σ|w| over all given tensors (one fused kernel per dtype/device via _foreach_norm)."""
    if not params:
        return torch.zeros(())
    return torch.stack(torch._foreach_norm(params, 1)).sum()


def l2_penalty(params: list[torch.Tensor]) -> torch.Tensor:
    """Σw² over all given tensors."""
    if not params:
        return torch.zeros(())
    return torch.stack(torch._foreach_norm(params, 2)).square().sum()


class Regularizer:
    """Adds λ1·Σ|w| + λ2·Σw² to the loss and hands `weight_decay` to the optimizer."""

    def __init__(
        self,
        name: str = "none",
        l1: float = 0.0,
        l2: float = 0.0,
        weight_decay: float = 0.0,
        penalize: PenalizedParams | str = PenalizedParams.all,
    ) -> None:
        self.name = name
        self.l1 = float(l1)
        self.l2 = float(l2)
        self.weight_decay = float(weight_decay)
        self.penalize = PenalizedParams(penalize)
        self._params: list[nn.Parameter] = []

    def attach(self, model: nn.Module) -> None:
        """Remember which parameters are penalized (call once, after freezing/unfreezing)."""
        self._params = penalized_parameters(model, self.penalize)

    @property
    def adds_loss_term(self) -> bool:
        return self.l1 > 0 or self.l2 > 0

    def penalty(self) -> torch.Tensor:
        """The loss term for the attached parameters (0 when nothing is added to the loss)."""
        total = torch.zeros((), device=self._params[0].device if self._params else "cpu")
        if self.l1 > 0:
            total = total + self.l1 * l1_penalty(self._params)
        if self.l2 > 0:
            total = total + self.l2 * l2_penalty(self._params)
        return total

    def param_groups(self, model: nn.Module) -> list[dict]:
        """Optimizer parameter groups: weight decay only on the penalized parameters."""
        penalized = {id(p) for p in penalized_parameters(model, self.penalize)}
        trainable = [p for p in model.parameters() if p.requires_grad]
        decayed = [p for p in trainable if id(p) in penalized]
        others = [p for p in trainable if id(p) not in penalized]
        groups = [{"params": decayed, "weight_decay": self.weight_decay}]
        if others:
            groups.append({"params": others, "weight_decay": 0.0})
        return groups


def weight_statistics(model: nn.Module, small: float = 1e-3) -> dict:
    """What a penalty did to the weights: Σ|w|, Σw² and the share of near-zero weights, over
    all trainable parameters (the same set for every regularizer, so runs compare)."""
    params = [p.detach() for p in model.parameters() if p.requires_grad]
    count = sum(p.numel() for p in params)
    near_zero = sum(int((p.abs() < small).sum()) for p in params)
    return {
        "n_weights": count,
        "sum_abs": float(l1_penalty(params)),
        "sum_sq": float(l2_penalty(params)),
        f"fraction_abs_below_{small:g}": near_zero / count if count else 0.0,
    }
