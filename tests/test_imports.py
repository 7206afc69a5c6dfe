"""Importing the package does not import ArviZ or xarray (`diagnostics` is loaded on first use)."""

import subprocess
import sys


def test_import_does_not_load_arviz_or_xarray():
    code = (
        "import sys; import numpyro_parallel, numpyro_parallel.ssm, numpyro_parallel.sts, "
        "numpyro_parallel.smc, numpyro_parallel.mcmc, numpyro_parallel.infer; "
        "print(sorted(m for m in ('arviz', 'xarray') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
