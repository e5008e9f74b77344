"""`import staggerlab` leaves the user's process as it found it."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, os, sys
before = dict(os.environ)
{imports}
after = dict(os.environ)
print(json.dumps({{"changed": sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)),
                  "modules": sorted(m for m in ("matplotlib.pyplot", "pandas", "sklearn") if m in sys.modules)}}))
"""


def _probe(imports: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(imports=imports)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_import_changes_no_environment_variable_of_its_own():
    # the libraries staggerlab builds on set a few variables when imported (polars'
    # allocator, joblib/threadpoolctl's OpenMP flags); staggerlab itself sets none
    deps = _probe("import numpy, numba, polars, scipy.linalg, joblib, threadpoolctl")
    ours = _probe("import staggerlab")
    assert set(ours["changed"]) <= set(deps["changed"]), set(ours["changed"]) - set(deps["changed"])
    assert "OMP_WAIT_POLICY" not in ours["changed"]


def test_import_loads_no_plotting_backend():
    assert "matplotlib.pyplot" not in _probe("import staggerlab")["modules"]


def test_import_is_lazy():
    # the public names load their modules on first use
    mods = _probe_modules("import staggerlab", ("numba", "polars", "scipy", "staggerlab.inference"))
    assert mods == []


def test_every_public_name_resolves():
    import staggerlab

    for name in staggerlab.__all__:
        assert getattr(staggerlab, name) is not None, name
    # the submodule of the same name does not hide the function
    import staggerlab.battery  # noqa: F401

    assert callable(staggerlab.battery)


def _probe_modules(imports: str, names: tuple[str, ...]) -> list[str]:
    code = f"import sys\n{imports}\nprint(' '.join(m for m in {names!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()
