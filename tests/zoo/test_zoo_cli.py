"""The ``dlakit zoo`` verb."""

import pytest

from dlakit.cli import main


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # rich folds long cells in narrow terminals


def test_list_shows_models_with_source_and_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for text in ("mobilenetv2", "ccexam==1.0.0", "1x3x224x224", "fmnist-cnn", "licence"):
        assert text in out


def test_data_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "data", "list"]) == 0
    out = capsys.readouterr().out
    assert "fashion-mnist" in out and "opencv-doc" in out


def test_fetch_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "fetch", "nope"]) == 2
    assert "no zoo model named 'nope'" in capsys.readouterr().err
    assert main(["zoo", "fetch"]) == 2
    assert main(["zoo", "data", "fetch", "nope"]) == 2


@pytest.mark.network
def test_fetch_prints_the_onnx_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "fetch", "mnist-cnn"]) == 0
    assert "mnist-cnn-1x1x28x28-v1.onnx" in capsys.readouterr().out
    assert main(["zoo", "data", "fetch", "foolbox-mnist"]) == 0
    assert "foolbox-mnist:all: 20 labelled images" in capsys.readouterr().out
