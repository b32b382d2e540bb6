"""Porting bugs (compare/stepwise_mutants.py) under the step-synchronized verdict: every
one fails in both dtypes at the step, stage and parameter where it is, and the honest port
of each original passes."""

import functools
import re

import pytest

from compare.stepwise_mutants import MUTANTS, control, expected, judge

DTYPES = ("float64", "float32")


@functools.lru_cache(maxsize=None)
def verdict(name: str, dtype: str):
    return judge(MUTANTS[name], dtypes=[dtype], num_steps=2)[dtype]  # every mutant shows by step 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(MUTANTS))
def test_every_mutant_fails_naming_its_step_stage_and_parameter(name, dtype):
    caught, message = verdict(name, dtype)
    assert caught, f"{name} ({MUTANTS[name].description}) passed in {dtype}: {message}"
    assert message.startswith(f"{dtype}, {expected(MUTANTS[name])}"), message


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_dropped_layer_gradient_is_that_layer_alone(dtype):
    _, message = verdict("layer-gradient-dropped", dtype)
    failing = re.search(r"the gradient of (\S+) differs \(also ([^)]*)\)", message)
    agreeing = re.search(r"\(loss agrees; ([^)]*) agree\)", message)
    assert failing and agreeing, message
    assert {failing[1], *failing[2].split(", ")} == {"2.weight", "2.bias"}, message
    assert set(agreeing[1].split(", ")) == {"0.weight", "0.bias", "4.weight", "4.bias"}, message


@pytest.mark.parametrize("name", list(MUTANTS))
def test_the_honest_port_of_each_original_passes(name):
    for dtype, (caught, message) in control(MUTANTS[name], num_steps=6).items():
        assert not caught, message


@pytest.mark.parametrize("name", [name for name, mutant in MUTANTS.items() if mutant.sizes])
def test_each_size_builds_its_own_port(name):
    """A size lives in the loss or optimizer built for it (no global is patched), so two sizes
    are two ports."""
    mutant = MUTANTS[name]
    assert mutant.build(mutant.size)[1] != mutant.build(mutant.sizes[0])[1]
