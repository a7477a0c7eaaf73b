import pickle
import urllib.error

import pytest
import torch
from torch import nn

from hymtl import UserError
from hymtl.training.models import build_model, find_head


@pytest.mark.parametrize(
    "name,head", [("resnet18", "fc"), ("mobilenet_v2", "classifier.1"), ("resnet50", "fc")]
)
def test_head_is_replaced_for_any_model(name, head):
    model = build_model(name, num_classes=3, pretrained=False)
    head_name, layer = find_head(model)
    assert head_name == head and layer.out_features == 3
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


def test_freeze_backbone_trains_only_the_head():
    model = build_model("resnet18", num_classes=2, pretrained=False, freeze_backbone=True)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]


def test_backbone_only_weights_load(tmp_path):
    source = build_model("mobilenet_v2", num_classes=1000, pretrained=False)
    backbone = {k: v for k, v in source.state_dict().items() if k.startswith("features.")}
    torch.save(backbone, tmp_path / "features.pth")
    model = build_model("mobilenet_v2", 2, weights_path=str(tmp_path / "features.pth"))
    for key, value in backbone.items():
        assert torch.equal(model.state_dict()[key], value)
    assert model.classifier[1].out_features == 2


def test_full_checkpoint_with_other_head_loads_backbone(tmp_path):
    source = build_model("resnet18", num_classes=1000, pretrained=False)
    torch.save({"model": source.state_dict()}, tmp_path / "full.pt")
    model = build_model("resnet18", 2, weights_path=str(tmp_path / "full.pt"))
    assert torch.equal(model.conv1.weight, source.conv1.weight)


def test_weights_of_another_architecture_fail_clearly(tmp_path):
    torch.save(build_model("resnet18", 2, pretrained=False).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(UserError, match="does not fit this model: .*missing.*another architecture"):
        build_model("mobilenet_v2", 2, weights_path=str(tmp_path / "r18.pth"))


def test_missing_and_non_checkpoint_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_model("resnet18", 2, weights_path=str(tmp_path / "nope.pth"))
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(UserError, match="is not a PyTorch checkpoint"):
        build_model("resnet18", 2, weights_path=str(tmp_path / "text.pth"))


class RunsCode:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    torch.save({"model": RunsCode()}, tmp_path / "evil.pt", pickle_module=pickle)
    with pytest.raises(UserError, match="refused to load .*could run code"):
        build_model("resnet18", 2, weights_path=str(tmp_path / "evil.pt"))


def test_offline_download_names_the_overrides(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("torchvision.models._api.WeightsEnum.get_state_dict", offline)
    with pytest.raises(UserError, match="could not download resnet18 IMAGENET1K_V1") as info:
        build_model("resnet18", 2, pretrained=True, weights="IMAGENET1K_V1")
    assert "model.weights_path=" in str(info.value) and "model.pretrained=false" in str(info.value)


def test_unknown_model_name():
    with pytest.raises(UserError, match="not a torchvision classification model"):
        build_model("resnet19", 2, pretrained=False)


def test_head_finder_needs_a_linear():
    with pytest.raises(UserError):
        find_head(nn.Sequential(nn.Conv2d(3, 3, 1)))


def test_weights_path_that_is_no_file_is_one_line(tmp_path):
    from hymtl.training.models import read_state_dict

    with pytest.raises(UserError, match="is not a regular file"):
        read_state_dict(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        read_state_dict(tmp_path / "x.pth")
