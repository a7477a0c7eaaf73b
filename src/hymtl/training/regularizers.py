"""Weight penalties: none, L1, L2 (as optimizer weight decay), elastic net and L2-SP.

One class covers all five `conf/regularizer/*.yaml` options; they differ only in numbers:

    none        l1=0   l2=0   weight_decay=0
    l1          l1=λ1  l2=0   weight_decay=0     loss += λ1·Σ|w|
    l2          l1=0   l2=0   weight_decay=λ2    optimizer decays, nothing added to the loss
    elasticnet  l1=λ1  l2=λ2  weight_decay=0     loss += λ1·Σ|w| + λ2·Σw²
    l2sp        alpha=α  beta=β                  loss += α/2·Σ(w - w0)² + β/2·Σw²_head

L2-SP ("toward the starting point"; Li, Grandvalet, Davoine, ICML 2018): the α term runs over the
penalized parameters outside the classification head (`find_head`: the backbone, which has a
starting value), the β term over the penalized head parameters. w0 is a detached copy of the
backbone taken by `attach` (the pretrained weights, or the random initialization with
model.pretrained=false) and is saved with `state_dict` so a resumed run pulls toward the same w0.
At step 0 the α term is exactly zero (w = w0) and the penalty is β/2·Σw²_head of the fresh head.

How weight_decay relates to an explicit penalty: plain SGD with weight_decay=λ adds λ·w to each
gradient, which is the gradient of (λ/2)·Σw². So `regularizer=l2 lambda_l2=λ` trains like an
explicit penalty of (λ/2)·Σw², i.e. half of what `elasticnet` with the same λ2 adds (with l1=0).
With momentum the equivalence still holds (decay enters the gradient before the momentum buffer);
with AdamW it does not: AdamW decays weights directly (decoupled), not through the gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from hymtl import UserError
from hymtl.config.schema import PenalizedParams
from hymtl.training.models import find_head

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


def distance_penalty(params: list[torch.Tensor], starts: list[torch.Tensor]) -> torch.Tensor:
    """Σ(w - w0)² over all given tensors and their starting values (fused subtraction)."""
    if not params:
        return torch.zeros(())
    return l2_penalty(torch._foreach_sub(params, starts))


class Regularizer:
    """Adds λ1·Σ|w| + λ2·Σw² + α/2·Σ(w - w0)² + β/2·Σw²_head to the loss and hands
    `weight_decay` to the optimizer."""

    def __init__(
        self,
        name: str = "none",
        l1: float = 0.0,
        l2: float = 0.0,
        weight_decay: float = 0.0,
        penalize: PenalizedParams | str = PenalizedParams.all,
        alpha: float = 0.0,
        beta: float = 0.0,
    ) -> None:
        self.name = name
        self.l1 = float(l1)
        self.l2 = float(l2)
        self.weight_decay = float(weight_decay)
        self.penalize = PenalizedParams(penalize)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self._params: list[nn.Parameter] = []
        # L2-SP: penalized backbone parameters, their names and starting values; the head's
        self._backbone: list[nn.Parameter] = []
        self._backbone_names: list[str] = []
        self._start: list[torch.Tensor] = []
        self._head: list[nn.Parameter] = []

    def attach(self, model: nn.Module) -> None:
        """Remember which parameters are penalized (call once, after freezing/unfreezing, after
        moving the model to its device); for L2-SP also split them into backbone and head and
        take w0, a detached copy of the backbone parameters as they are now."""
        self._params = penalized_parameters(model, self.penalize)
        if not (self.alpha > 0 or self.beta > 0):
            return
        head = {id(p) for p in find_head(model)[1].parameters()}
        names = {id(p): name for name, p in model.named_parameters()}
        self._head = [p for p in self._params if id(p) in head]
        self._backbone = [p for p in self._params if id(p) not in head]
        self._backbone_names = [names[id(p)] for p in self._backbone]
        self._start = [p.detach().clone() for p in self._backbone] if self.alpha > 0 else []

    @property
    def adds_loss_term(self) -> bool:
        return self.l1 > 0 or self.l2 > 0 or self.alpha > 0 or self.beta > 0

    @property
    def starts_from_weights(self) -> bool:
        """True when the loss pulls toward w0, the weights `attach` saw (L2-SP with alpha > 0)."""
        return self.alpha > 0

    def penalty(self) -> torch.Tensor:
        """The loss term for the attached parameters (0 when nothing is added to the loss)."""
        total = torch.zeros((), device=self._params[0].device if self._params else "cpu")
        if self.l1 > 0:
            total = total + self.l1 * l1_penalty(self._params)
        if self.l2 > 0:
            total = total + self.l2 * l2_penalty(self._params)
        if self.alpha > 0:
            total = total + self.alpha / 2 * distance_penalty(self._backbone, self._start)
        if self.beta > 0:
            total = total + self.beta / 2 * l2_penalty(self._head)
        return total

    def state_dict(self) -> dict:
        """What a checkpoint needs to resume exactly: {"starting_point": {name: w0}} when the
        loss pulls toward w0 (names as in model.named_parameters(), tensors on the parameters'
        device), else {}."""
        if not self.starts_from_weights:
            return {}
        return {"starting_point": dict(zip(self._backbone_names, self._start))}

    def load_state_dict(self, state: dict) -> None:
        """Put back w0 from `state_dict()` output (call after `attach`); copies into the stored
        tensors, so the saved ones may be on any device."""
        saved = state.get("starting_point")
        if not self.starts_from_weights:
            if saved:
                raise UserError(
                    "the checkpoint holds an L2-SP starting point but this run's regularizer "
                    f"has alpha={self.alpha}; resume with the regularizer it was saved with"
                )
            return
        if saved is None:
            raise UserError(
                "the checkpoint holds no L2-SP starting point (w0), so the run cannot resume "
                "exactly; start it again instead of resuming"
            )
        missing = [n for n in self._backbone_names if n not in saved]
        unexpected = [n for n in saved if n not in set(self._backbone_names)]
        wrong_shape = [
            n
            for n, w0 in zip(self._backbone_names, self._start)
            if n in saved and saved[n].shape != w0.shape
        ]
        if missing or unexpected or wrong_shape:
            raise UserError(
                "the checkpoint's L2-SP starting point does not fit this model: missing "
                f"{missing[:5]}, unexpected {unexpected[:5]}, shape differs {wrong_shape[:5]}"
            )
        with torch.no_grad():
            for name, w0 in zip(self._backbone_names, self._start):
                w0.copy_(saved[name])

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
