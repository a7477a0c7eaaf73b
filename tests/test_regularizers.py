import pytest
import torch
from torch import nn

from hymtl.regularizers import Regularizer, l1_penalty, l2_penalty, penalized_parameters


def tiny_model() -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, -4.0]]))
        model[0].bias.copy_(torch.tensor([0.5, -0.5]))
        model[1].weight.copy_(torch.tensor([1.0, 1.0]))  # BatchNorm gamma
        model[1].bias.copy_(torch.tensor([0.0, 0.0]))  # BatchNorm beta
        model[2].weight.copy_(torch.tensor([[2.0, -1.0]]))
        model[2].bias.copy_(torch.tensor([1.0]))
    return model


# All parameters: |w| = 10 + 1 + 2 + 0 + 3 + 1 = 17;  w^2 = 30 + 0.5 + 2 + 0 + 5 + 1 = 38.5
# Weights only (no biases, no BatchNorm): |w| = 10 + 3 = 13;  w^2 = 30 + 5 = 35


def test_penalties_equal_hand_computed_values():
    params = list(tiny_model().parameters())
    assert l1_penalty(params).item() == pytest.approx(17.0)
    assert l2_penalty(params).item() == pytest.approx(38.5)


@pytest.mark.parametrize(
    "l1,l2,penalize,expected",
    [
        (0.03, 0.0, "all", 0.03 * 17),
        (0.0, 0.01, "all", 0.01 * 38.5),
        (0.03, 0.01, "all", 0.03 * 17 + 0.01 * 38.5),
        (0.03, 0.01, "weights", 0.03 * 13 + 0.01 * 35),
        (0.0, 0.0, "all", 0.0),
    ],
)
def test_regularizer_penalty(l1, l2, penalize, expected):
    model = tiny_model()
    regularizer = Regularizer(l1=l1, l2=l2, penalize=penalize)
    regularizer.attach(model)
    assert regularizer.penalty().item() == pytest.approx(expected)


def test_weights_only_skips_biases_and_norm_layers():
    model = tiny_model()
    chosen = {id(p) for p in penalized_parameters(model, "weights")}
    assert chosen == {id(model[0].weight), id(model[2].weight)}


def test_frozen_parameters_are_not_penalized():
    model = tiny_model()
    model[0].weight.requires_grad = False
    regularizer = Regularizer(l1=1.0)
    regularizer.attach(model)
    assert regularizer.penalty().item() == pytest.approx(7.0)


def test_l2_sets_weight_decay_and_adds_no_loss_term():
    model = tiny_model()
    regularizer = Regularizer(weight_decay=0.01)
    regularizer.attach(model)
    assert regularizer.penalty().item() == 0.0
    assert not regularizer.adds_loss_term
    groups = regularizer.param_groups(model)
    assert [g["weight_decay"] for g in groups] == [0.01]
    assert sum(len(g["params"]) for g in groups) == 6


def test_weight_decay_equals_half_lambda_squared_penalty_under_sgd():
    """SGD weight_decay=λ takes the same step as an explicit (λ/2)·Σw² penalty (documented)."""
    lam, lr = 0.1, 0.5
    decayed, explicit = tiny_model(), tiny_model()
    opt_decay = torch.optim.SGD(Regularizer(weight_decay=lam).param_groups(decayed), lr=lr)
    opt_explicit = torch.optim.SGD(explicit.parameters(), lr=lr)
    x = torch.tensor([[1.0, 2.0], [0.5, -1.0], [2.0, 0.0]])
    for model, optimizer, extra in ((decayed, opt_decay, 0.0), (explicit, opt_explicit, lam / 2)):
        loss = model(x).sum() + extra * l2_penalty(list(model.parameters()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for a, b in zip(decayed.parameters(), explicit.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_weight_decay_skips_excluded_parameters():
    model = tiny_model()
    regularizer = Regularizer(weight_decay=0.01, penalize="weights")
    regularizer.attach(model)
    groups = regularizer.param_groups(model)
    assert [(len(g["params"]), g["weight_decay"]) for g in groups] == [(2, 0.01), (4, 0.0)]


def test_typed_lambdas_read_back_what_each_regularizer_was_given():
    from hymtl.regularizers import typed_lambdas

    from .conftest import compose_config

    def typed(name):
        cfg = compose_config([f"regularizer={name}", "lambda_l1=0.5", "lambda_l2=0.25"])
        return typed_lambdas(dict(cfg.regularizer))

    assert typed("none") == (0.0, 0.0)
    assert typed("l1") == (0.5, 0.0)
    assert typed("l2") == (0.0, 0.25)  # as weight_decay
    assert typed("elasticnet") == (0.5, 0.25)  # as a loss term
