"""Transformer porting bugs (compare/gpt_mutants.py) under the step-synchronized verdict:
each fails at the step, stage and parameter where it is, and the honest port passes.

Each mutant is a port of its own, compiled afresh: two XLA programs for a float32 verdict
(its step, which its whole run shares, and its float64 twin), about 3.5 s each with XLA's
optimizations. What is judged here is the verdict, not XLA's code, so these tests compile
without them (``jax_disable_most_optimizations``: 4x faster to compile; the honest port
passes under it too); ``python -m compare.gpt_mutants`` runs every mutant in both dtypes as
users compile (docs/transformers.md). The suite judges every mutant in float32,
the dtype whose band could hide a bug, and in float64 the two whose difference is smallest."""

import jax
import pytest

from compare.gpt_mutants import MUTANTS, control, expected, judge

FLOAT64_TOO = ("clip-without-eps", "layer-norm-eps")


@pytest.fixture(autouse=True, scope="module")
def compiled_without_optimizations():
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", before)
CASES = [(name, "float32") for name in MUTANTS] + [(name, "float64") for name in FLOAT64_TOO]


@pytest.mark.parametrize("name, dtype", CASES)
def test_every_transformer_mutant_fails_naming_its_step_stage_and_parameter(name, dtype):
    caught, message = judge(MUTANTS[name], dtype)
    assert caught, f"{name} ({MUTANTS[name].description}) passed in {dtype}: {message}"
    assert message.startswith(f"{dtype}, {expected(MUTANTS[name])}"), message


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_honest_transformer_port_passes(dtype):
    caught, message = control(dtype, num_steps=4)
    assert not caught, message
