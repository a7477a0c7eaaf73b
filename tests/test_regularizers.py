import pytest
import torch
from torch import nn

from hymtl.training.regularizers import Regularizer, l1_penalty, l2_penalty, penalized_parameters


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
    from hymtl.training.regularizers import typed_lambdas

    from .conftest import compose_config

    def typed(name):
        cfg = compose_config([f"regularizer={name}", "lambda_l1=0.5", "lambda_l2=0.25"])
        return typed_lambdas(dict(cfg.regularizer))

    assert typed("none") == (0.0, 0.0)
    assert typed("l1") == (0.5, 0.0)
    assert typed("l2") == (0.0, 0.25)  # as weight_decay
    assert typed("elasticnet") == (0.5, 0.25)  # as a loss term


# L2-SP: backbone = the first Linear (it has a starting value w0), head = the last Linear.
ALPHA, BETA = 0.1, 0.01


def l2sp_model() -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, -4.0]]))
        model[0].bias.copy_(torch.tensor([0.5, -0.5]))
        model[1].weight.copy_(torch.tensor([[2.0, -1.0]]))
        model[1].bias.copy_(torch.tensor([1.0]))
    return model


def move_away_from_start(model: nn.Module) -> None:
    """What training might do after attach: known steps away from w0, and a new head."""
    with torch.no_grad():
        model[0].weight.add_(torch.tensor([[0.5, 0.0], [0.0, -1.0]]))
        model[0].bias.add_(torch.tensor([0.0, 2.0]))
        model[1].weight.copy_(torch.tensor([[1.0, -1.0]]))
        model[1].bias.copy_(torch.tensor([3.0]))


# After move_away_from_start:
#   backbone Σ(w - w0)²: weight 0.5² + 1² = 1.25, bias 2² = 4      (all: 5.25, weights: 1.25)
#   head Σw²:            weight 1² + 1² = 2,      bias 3² = 9      (all: 11,   weights: 2)
#   all:     0.1/2·5.25 + 0.01/2·11 = 0.2625 + 0.055 = 0.3175
#   weights: 0.1/2·1.25 + 0.01/2·2  = 0.0625 + 0.01  = 0.0725
@pytest.mark.parametrize("penalize,expected", [("all", 0.3175), ("weights", 0.0725)])
def test_l2sp_penalty_equals_hand_computed_value(penalize, expected):
    model = l2sp_model()
    regularizer = Regularizer(name="l2sp", alpha=ALPHA, beta=BETA, penalize=penalize)
    regularizer.attach(model)
    move_away_from_start(model)
    assert regularizer.adds_loss_term and regularizer.starts_from_weights
    assert regularizer.penalty().item() == pytest.approx(expected)


def test_l2sp_alpha_term_is_zero_right_after_attach():
    # Fresh head Σw² = 2² + 1² + 1² = 6, so the penalty is 0.01/2·6 = 0.03, all of it from beta.
    model = l2sp_model()
    regularizer = Regularizer(name="l2sp", alpha=ALPHA, beta=BETA)
    regularizer.attach(model)
    head_only = BETA / 2 * l2_penalty(list(model[1].parameters()))
    assert regularizer.penalty().item() == head_only.item()
    assert regularizer.penalty().item() == pytest.approx(0.03)
    alpha_only = Regularizer(name="l2sp", alpha=ALPHA)
    alpha_only.attach(model)
    assert alpha_only.penalty().item() == 0.0


def test_l2sp_gradient_pulls_backbone_toward_start():
    model = l2sp_model()
    regularizer = Regularizer(name="l2sp", alpha=ALPHA, beta=BETA)
    regularizer.attach(model)
    regularizer.penalty().backward()  # w = w0: no pull, and no NaN from the zero distance
    assert torch.equal(model[0].weight.grad, torch.zeros(2, 2))
    assert torch.equal(model[0].bias.grad, torch.zeros(2))
    model.zero_grad()
    move_away_from_start(model)
    regularizer.penalty().backward()
    # d/dw alpha/2·(w - w0)² = alpha·(w - w0); the head gets beta·w
    expected = ALPHA * torch.tensor([[0.5, 0.0], [0.0, -1.0]])
    assert torch.allclose(model[0].weight.grad, expected)
    assert torch.allclose(model[0].bias.grad, ALPHA * torch.tensor([0.0, 2.0]))
    assert torch.allclose(model[1].weight.grad, BETA * torch.tensor([[1.0, -1.0]]))


def test_l2sp_state_dict_round_trip_restores_starting_point(tmp_path):
    trained = l2sp_model()
    first = Regularizer(name="l2sp", alpha=ALPHA, beta=BETA)
    first.attach(trained)
    move_away_from_start(trained)

    state = first.state_dict()
    assert set(state) == {"starting_point"}
    assert set(state["starting_point"]) == {"0.weight", "0.bias"}
    torch.save({"regularizer": state}, tmp_path / "last.pt")
    loaded = torch.load(tmp_path / "last.pt", weights_only=True)["regularizer"]

    # A resumed run: a model holding the trained weights, so attach takes the wrong w0 ...
    resumed = l2sp_model()
    resumed.load_state_dict(trained.state_dict())
    second = Regularizer(name="l2sp", alpha=ALPHA, beta=BETA)
    second.attach(resumed)
    assert second.penalty().item() != pytest.approx(first.penalty().item())
    # ... until the saved one is put back.
    second.load_state_dict(loaded)
    assert second.penalty().item() == first.penalty().item()
    assert second.penalty().item() == pytest.approx(0.3175)


def test_state_dict_is_empty_without_a_starting_point():
    model = l2sp_model()
    for regularizer in (Regularizer(l1=0.03), Regularizer(name="l2sp", beta=BETA)):
        regularizer.attach(model)
        assert regularizer.state_dict() == {}
        assert not regularizer.starts_from_weights
        regularizer.load_state_dict({})


def test_l2sp_load_state_dict_refuses_a_missing_or_foreign_starting_point():
    from hymtl import UserError

    regularizer = Regularizer(name="l2sp", alpha=ALPHA)
    regularizer.attach(l2sp_model())
    with pytest.raises(UserError, match="no L2-SP starting point"):
        regularizer.load_state_dict({})
    with pytest.raises(UserError, match="does not fit"):
        regularizer.load_state_dict({"starting_point": {"0.weight": torch.zeros(2, 2)}})


def test_l2sp_weights_only_skips_biases_in_both_terms():
    # Only biases move; with penalize=weights neither term sees them:
    # backbone weight unchanged (0), head weight Σw² = 2² + 1² = 5 → 0.01/2·5 = 0.025
    model = l2sp_model()
    regularizer = Regularizer(name="l2sp", alpha=ALPHA, beta=BETA, penalize="weights")
    regularizer.attach(model)
    assert set(regularizer.state_dict()["starting_point"]) == {"0.weight"}
    with torch.no_grad():
        model[0].bias.add_(10.0)
        model[1].bias.add_(10.0)
    assert regularizer.penalty().item() == pytest.approx(0.025)


def test_l2sp_config_builds_through_hydra():
    from hydra.utils import instantiate

    from .conftest import compose_config

    regularizer = instantiate(compose_config(["regularizer=l2sp"]).regularizer)
    assert isinstance(regularizer, Regularizer)
    assert regularizer.name == "l2sp"
    assert (regularizer.alpha, regularizer.beta) == (0.1, 0.01)
    assert regularizer.adds_loss_term and regularizer.starts_from_weights
