"""Every script in examples/ runs end to end in its fast mode."""

import os
import pathlib
import subprocess
import sys

import pytest

# Helpers shared by examples start with an underscore and are not examples themselves.
EXAMPLES = sorted(
    p for p in (pathlib.Path(__file__).parents[1] / "examples").glob("*.py") if p.name[0] != "_"
)


@pytest.mark.slow  # each script is a full end-to-end run (30-130 s on 2 cores)
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_in_fast_mode(script, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "JAX_PLATFORMS": "cpu"}
    # The scripts inherit the suite's fast compilation (tests/conftest.py). Measured on one
    # core, the NUTS examples gain nothing from full optimisation in their fast modes
    # (co2_forecast 52 s either way, uk_road_deaths 47 s against 59 s optimised).
    result = subprocess.run(
        [sys.executable, str(script), "--fast", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # An example shows the library working: a warning of ours (non-convergence, collapse,
    # a stuck chain) in its output is a failure too.
    assert "RuntimeWarning" not in result.stderr, result.stderr[-3000:]
    assert list(tmp_path.glob("*.png")), "the example should save at least one figure"
