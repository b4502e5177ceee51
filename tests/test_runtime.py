"""Device and precision resolution (genesis_rna.runtime)."""

from __future__ import annotations

import warnings

import pytest
import torch

from genesis_rna import runtime
from genesis_rna.runtime import cpu_has_fast_bf16, resolve_precision, resolve_runtime

CPU = torch.device("cpu")


def test_cpu_bf16_is_used_only_where_the_cpu_runs_it_natively():
    # this machine's own answer: whatever it is, bf16 and fp16 resolve to it on CPU
    native = cpu_has_fast_bf16()
    want = "bf16" if native else "fp32"
    assert resolve_precision("bf16", CPU) == want
    assert resolve_precision("fp16", CPU) == want
    assert resolve_precision("fp32", CPU) == "fp32"
    if native:  # no warning when nothing is substituted
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert resolve_runtime("cpu", "bf16") == (CPU, "bf16")


@pytest.mark.parametrize("native", [True, False])
def test_substitutions_are_said(monkeypatch, native):
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: native)
    with pytest.warns(UserWarning, match="fp16 needs CUDA") as seen:
        used = resolve_runtime("cpu", "fp16")[1]
    assert used == ("bf16" if native else "fp32")
    assert f"using {used}" in str(seen[0].message)
    if native:
        assert resolve_runtime("cpu", "bf16")[1] == "bf16"
    else:
        with pytest.warns(UserWarning, match="no native bf16.*using fp32"):
            assert resolve_runtime("cpu", "bf16")[1] == "fp32"
    # inference substitutes quietly (warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", CPU) == ("bf16" if native else "fp32")


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int8", CPU)
