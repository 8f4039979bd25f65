"""The fast path against the reference path, and the library kernels known to corrupt
memory, each in a fresh interpreter so that a crash fails the test instead of ending the
test run.

`speed_equivalence` runs every `Speed` combination on 1 and 2 threads, with oneDNN at the
processor's own instruction set and capped at AVX2 (what an AMD EPYC before Zen 4 runs),
under glibc's heap checks (MALLOC_CHECK_=3: a write outside a buffer aborts at the next
free instead of passing silently)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metanas.searchers.darts.unsafe_kernels import PATTERNS, REPROS, KernelGuard, UnsafeKernelCall
from tests.searchers_tests.speed_equivalence import CASES

REPO = Path(__file__).resolve().parents[2]


def _python(
    args: list[str], threads: int, isa: str | None, timeout: int = 600
) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MALLOC_CHECK_": "3", "PYTHONPATH": str(REPO)}
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("isa", [None, "AVX2"], ids=["native_isa", "avx2"])
@pytest.mark.parametrize("threads", [1, 2])
def test_every_speed_combination_equals_the_reference(threads, isa):
    guard = ["--guard"] if threads == 1 and isa is None else []  # (the patterns are processor-free)
    proc = _python(["-m", "tests.searchers_tests.speed_equivalence", *guard], threads, isa)
    lines = proc.stdout.splitlines()
    started = [line.split(" ", 1)[1] for line in lines if line.startswith("START ")]
    assert proc.returncode == 0, (
        f"exit {proc.returncode} in case {started[-1] if started else '?'}:\n{proc.stderr[-3000:]}"
    )
    results = [json.loads(line) for line in lines if line.startswith("{")]
    assert [r["case"] for r in results] == [c.name for c in CASES]
    for result in results:
        assert result["threads"] == threads
        assert len(result["speeds"]) == 16
        for speed, found in result["speeds"].items():
            # worst: |fast - reference| / (atol + rtol |reference|), 1 at the stated tolerance
            assert found["worst"] <= 1.0, (result["case"], speed, found)


@pytest.mark.parametrize("name", sorted(REPROS))
def test_the_guard_refuses_each_known_unsafe_pattern_before_it_runs(name):
    assert {p.name for p in PATTERNS} == set(REPROS)
    with pytest.raises(UnsafeKernelCall, match=name):
        with KernelGuard():
            exec(REPROS[name], {})
    # and in a fresh interpreter at the risky settings: refused, so no crash
    guarded = (
        "from metanas.searchers.darts.unsafe_kernels import KernelGuard, UnsafeKernelCall, REPROS\n"
        f"try:\n    with KernelGuard():\n        exec(REPROS[{name!r}], {{}})\nexcept UnsafeKernelCall:\n   "
        " print('refused')\n"
    )
    proc = _python(["-c", guarded], threads=2, isa="AVX2", timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "refused", proc.stderr[-2000:]


def test_the_networks_route_around_the_unsafe_group_norm_and_strided_1x1_patterns():
    """The two patterns the networks could reach: an affine GroupNorm whose input needs no
    gradient (a frozen stem), and FactorizedReduce's strided 1x1 convolutions."""
    from metanas.searchers.darts.cpu_kernels import GroupNorm
    from metanas.searchers.darts.ops import FactorizedReduce

    torch.manual_seed(0)
    x = torch.randn(6, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    for own_kernel in (True, False):
        norm, plain = GroupNorm(2, 4), torch.nn.GroupNorm(2, 4)
        norm.own_kernel = own_kernel
        with KernelGuard():
            out = norm(x)
            out.sum().backward()
        plain(x.contiguous()).sum().backward()
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(out, plain(x.contiguous()), atol=1e-5)
        assert torch.allclose(norm.weight.grad, plain.weight.grad, atol=1e-4)
    for size in (8, 7):
        reduce = FactorizedReduce(4, "group").to(memory_format=torch.channels_last)
        xi = torch.randn(5, 4, size, size).contiguous(memory_format=torch.channels_last).requires_grad_()
        with KernelGuard():
            out = reduce(xi)
            out.sum().backward()
        # the same weights at stride 2, the library's way, in the contiguous layout
        relu = torch.relu(xi.detach().contiguous())
        shifted = torch.nn.functional.pad(relu, (0, 1, 0, 1))[:, :, 1:, 1:]
        a = torch.nn.functional.conv2d(relu, reduce.conv_a.weight.contiguous(), stride=2)
        b = torch.nn.functional.conv2d(shifted, reduce.conv_b.weight.contiguous(), stride=2)
        assert out.shape[-1] == (size + 1) // 2
        assert torch.allclose(out, reduce.norm(torch.cat([a, b], 1)), atol=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_reduction_cells_write_nothing_outside_their_buffers_under_valgrind():
    """valgrind's memcheck hides AVX-512 from the process, so oneDNN takes its AVX2 kernels,
    as on an AMD EPYC: the strided 1x1 kernel wrote outside its buffers here before the fix
    (valgrind itself then died). About 2 minutes; Debian's valgrind."""
    proc = subprocess.run(
        [
            "valgrind",
            "-q",
            "--error-limit=no",
            sys.executable,
            "-m",
            "tests.searchers_tests.speed_equivalence",
            "--cases",
            "pass_reduction_two_inputs,adapt_reduction_split",
        ],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=880,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"case"') == 2
    # (the interpreter's own start-up reads are not torch's: only errors inside torch count)
    reports = re.split(r"==\d+== *\n", proc.stderr)  # valgrind ends each report with an empty line
    errors = [
        r
        for r in reports
        if "Invalid write" in r or ("Invalid read" in r and ("dnnl" in r or "at::native" in r))
    ]
    assert not errors, errors[:3]
