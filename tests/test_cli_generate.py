"""`smbench generate`: text out, same tokens as the API, one-line errors."""
from __future__ import annotations

from click.testing import CliRunner

import engine
from smbench.cli import main


def test_generate_prints_prompt_and_continuation():
    result = CliRunner().invoke(main, ["generate", "-n", "20", "--flags", "kv,pool,fused"])
    assert result.exit_code == 0, result.output
    model = engine.load("seed")
    expected = model.decode(model.generate(model.encode("We are accounted"), 20))
    assert "We are accounted" + expected in result.output


def test_generate_reads_hf_checkpoint_with_its_tokenizer():
    result = CliRunner().invoke(main, ["generate", "-m", "tests/fixtures/hf_tiny", "-p", "The quick", "-n", "5"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("The quick")


def test_generate_unknown_character_is_one_line_error():
    result = CliRunner().invoke(main, ["generate", "-p", "digit 5"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "'5'" in lines[0]
