"""Preprocess: text form, presets, shape checks, and the pixel maths against plain numpy."""

import numpy as np
import pytest

from dlakit.data import Preprocess, parse_preprocess, preset, presets
from dlakit.errors import DlakitError
from dlakit.zoo import entries


def test_text_form_round_trips() -> None:
    text = "resize=256,crop=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,order=rgb"
    prep = parse_preprocess(text)
    assert prep.resize == 256 and prep.crop == (224, 224) and prep.scale == pytest.approx(1 / 255)
    assert prep.mean == (0.485, 0.456, 0.406)
    assert parse_preprocess(str(prep)) == prep
    assert "scale=1/255" in str(prep)


def test_preset_with_overrides() -> None:
    prep = parse_preprocess("imagenet,crop=192,order=bgr")
    assert prep.crop == (192, 192) and prep.order == "bgr" and prep.resize == 256
    assert prep.mean == preset("imagenet").mean


def test_every_zoo_model_has_a_preset_matching_its_input() -> None:
    for entry in entries().values():
        if entry.preprocess is not None:
            assert entry.preprocess in presets()
            preset(entry.preprocess).check(entry.input_shape)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("resize=0", "bad value for resize"),
        ("crop=2x3x4", "bad value for crop"),
        ("order=cmyk", "bad value for order"),
        ("colour=rgb", "unknown key 'colour'"),
        ("mean=0.1/0.2", "1 or 3 values"),
        ("std=0", "std must not be 0"),
        ("nosuchpreset", "no preprocess preset 'nosuchpreset'"),
        ("resize=8,imagenet", "is not key=value"),
    ],
)
def test_malformed_text_is_a_user_error(text: str, message: str) -> None:
    with pytest.raises(DlakitError, match=message):
        parse_preprocess(text)


def test_wrong_preprocess_for_the_input_shape() -> None:
    with pytest.raises(DlakitError, match="gives 224x224 images but the model input 1x3x320x320"):
        preset("imagenet").check((1, 3, 320, 320))
    with pytest.raises(DlakitError, match=r"1-channel images .* has 3 channels"):
        preset("mnist").check((1, 3, 28, 28))


def test_crop_and_normalise_match_numpy() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    prep = parse_preprocess("crop=32x30,mean=0.5/0.4/0.3,std=0.2/0.25/0.5,order=bgr")
    got = prep.apply(image)
    crop = image[4:36, 10:40, ::-1].astype(np.float32) / 255  # centre crop, then BGR
    want = ((crop - [0.5, 0.4, 0.3]) / [0.2, 0.25, 0.5]).transpose(2, 0, 1)
    assert got.shape == (3, 32, 30) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_resize_shorter_side_keeps_aspect_and_gray_has_one_channel() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    assert parse_preprocess("resize=50,order=gray").apply(image).shape == (1, 50, 100)
    assert parse_preprocess("resize=20x30,layout=nhwc").apply(image).shape == (20, 30, 3)


def test_crop_larger_than_the_image() -> None:
    with pytest.raises(DlakitError, match="cannot centre-crop 64x64 from a 10x10 image"):
        parse_preprocess("crop=64").apply(np.zeros((10, 10), np.uint8))


def test_scale_one_keeps_raw_pixels() -> None:
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    got = Preprocess(scale=1.0).apply(image)
    np.testing.assert_array_equal(got, image.transpose(2, 0, 1).astype(np.float32))


def test_images_must_be_uint8_with_1_3_or_4_channels() -> None:
    with pytest.raises(DlakitError, match=r"HxW or HxWx1/3/4, not \(4, 4, 2\)"):
        Preprocess().apply(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(DlakitError, match="must be uint8"):
        Preprocess().apply(np.zeros((4, 4), np.float32))
