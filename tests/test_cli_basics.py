from dlakit.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert "dlakit" in capsys.readouterr().out


def test_unknown_verb_is_a_usage_error(capsys):
    assert main(["no-such-verb"]) != 0
