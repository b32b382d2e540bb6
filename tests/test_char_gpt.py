"""The char-gpt case beyond what every case is held to (tests/test_parity.py, which also holds
its report's text and trained models): the stand-in text, nanoGPT's schedule."""

import dataclasses

import numpy as np
import pytest
import torch

import funcgrad as fg
from compare import __main__ as cli
from compare.cases import char_gpt
from compare.runtime import describe_environment
from tests.conftest import cpu_context


def test_without_a_text_file_the_excerpt_stands_in_and_the_header_says_so(monkeypatch, tmp_path):
    monkeypatch.delenv(fg.TEXT_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty cache
    ctx = cpu_context(np.float32)
    name, text = ctx.text()
    assert "stand-in" in name and text == fg.shakespeare_excerpt()
    assert "char-gpt: an excerpt of tinyshakespeare stands in" in cli.header(describe_environment(ctx),
                                                                             ["float32"], None)
    named = dataclasses.replace(ctx, text_file=str(tmp_path / "missing.txt"))
    with pytest.raises(FileNotFoundError, match="missing.txt is not a file"):
        named.text()


def test_the_rate_is_nanogpts_get_lr_as_lambda_lr_and_torchs_lambdalr_give_it():
    assert char_gpt.get_lr(0) == pytest.approx(char_gpt.LEARNING_RATE / (char_gpt.WARMUP_ITERS + 1))
    assert char_gpt.get_lr(char_gpt.WARMUP_ITERS) == pytest.approx(char_gpt.LEARNING_RATE)
    assert char_gpt.get_lr(char_gpt.LR_DECAY_ITERS + 1) == char_gpt.MIN_LR
    rate = fg.optim.lambda_lr(char_gpt.LEARNING_RATE, char_gpt.lr_multiplier, num_steps=char_gpt.MAX_ITERS)
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=char_gpt.LEARNING_RATE)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, char_gpt.lr_multiplier)
    theirs = []
    for _ in range(char_gpt.MAX_ITERS):
        theirs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    ours = np.array([rate(t) for t in range(char_gpt.MAX_ITERS)])
    np.testing.assert_array_equal(ours, np.float32(theirs))  # torch's double, rounded once to the default float
