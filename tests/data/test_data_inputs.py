"""load_inputs / load_labelled from folders and .npz files, and their error messages."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlakit.data import load_inputs, load_labelled
from dlakit.errors import DlakitError

SHAPE = (1, 1, 8, 8)


def _write_images(folder: Path, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(count)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"img{i}_{i % 3}.png")
    return images


def test_folder_of_images_with_labels_in_names(tmp_path: Path) -> None:
    images = _write_images(tmp_path, 5)
    (tmp_path / "notes.txt").write_text("ignored")
    data = load_labelled(tmp_path, "order=gray,scale=1", SHAPE)
    assert data.images.shape == (5, 1, 8, 8) and data.images.dtype == np.float32
    np.testing.assert_array_equal(data.images[:, 0], np.stack(images))
    assert data.labels.tolist() == [0, 1, 2, 0, 1]
    assert load_inputs(tmp_path, "order=gray", SHAPE, limit=2).shape == (2, 1, 8, 8)


def test_npz_uint8_is_preprocessed_and_float_taken_as_is(tmp_path: Path) -> None:
    raw = np.random.default_rng(2).integers(0, 256, (3, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "u8.npz", images=raw, labels=np.array([1, 2, 3]))
    data = load_labelled(tmp_path / "u8.npz", "order=gray,mean=0.5,std=0.5", SHAPE)
    np.testing.assert_allclose(data.images[:, 0], (raw / 255 - 0.5) / 0.5, atol=1e-6)
    assert data.labels.tolist() == [1, 2, 3]
    ready = np.ones((4, 1, 8, 8), np.float32)
    np.savez(tmp_path / "f32.npz", x=ready)
    np.testing.assert_array_equal(load_inputs(tmp_path / "f32.npz", None, SHAPE), ready)


def test_float_npz_of_the_wrong_shape(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", images=np.ones((2, 3, 8, 8), np.float32))
    with pytest.raises(DlakitError, match=r"float inputs of shape 3x8x8 do not match .* 1x8x8"):
        load_inputs(tmp_path / "bad.npz", None, SHAPE)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DlakitError, match="no image files"):
        load_inputs(tmp_path, "order=gray", SHAPE)


def test_unreadable_image(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DlakitError, match=r"broken\.png: not a readable image"):
        load_inputs(tmp_path, "order=gray", SHAPE)


def test_images_need_a_preprocess_and_the_right_size(tmp_path: Path) -> None:
    _write_images(tmp_path, 2)
    with pytest.raises(DlakitError, match=r"a preprocess .* is needed"):
        load_inputs(tmp_path, None, SHAPE)
    with pytest.raises(DlakitError, match="gives 1x8x8 but the model input needs 1x4x4"):
        load_inputs(tmp_path, "order=gray", (1, 1, 4, 4))
    with pytest.raises(DlakitError, match="gives 3-channel images"):
        load_inputs(tmp_path, "imagenet", SHAPE)


def test_unknown_source() -> None:
    with pytest.raises(DlakitError, match=r"neither a data set .* nor a folder or .npz"):
        load_inputs("no/such/place", "order=gray", SHAPE)
