"""The import structure the layer contract (``lint-imports``, pyproject.toml) cannot see: no module
imports itself through others, and every module imports on its own in a fresh interpreter."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import grimp
import pytest

import landseg


def all_modules() -> list[str]:
    return sorted(
        m.name for m in pkgutil.walk_packages(landseg.__path__, "landseg.") if not m.name.endswith("__main__")
    )


def test_no_module_imports_itself_through_others():
    graph = grimp.build_graph("landseg")
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycles.append(" -> ".join((importer, *back)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


# Runs in a clean interpreter: heavy third-party packages are imported once, then every landseg module
# is imported in a forked child that has not imported any landseg module yet.
IMPORT_EACH = """
import importlib, os, sys, traceback
for heavy in ("numpy", "torch", "lightning", "rasterio", "segmentation_models_pytorch", "timm", "fastapi",
              "distributed", "matplotlib.pyplot", "scipy.signal", "shapely", "pyogrio"):
    importlib.import_module(heavy)
assert not [m for m in sys.modules if m.startswith("landseg")]
failed = 0
for module in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(module)
        except BaseException:
            print(module + ": " + traceback.format_exc().strip().splitlines()[-1])
            os._exit(1)
        os._exit(0)
    failed += os.waitpid(pid, 0)[1] != 0
sys.exit(1 if failed else 0)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_every_module_imports_on_its_own():
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, *all_modules()], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


@pytest.mark.parametrize("module", ["landseg.cli", "landseg.predict", "landseg.serve"])
def test_the_command_line_starts_without_torch(module):
    """``landseg --help`` must stay fast: these packages defer PyTorch to the commands that use it."""
    code = (
        f"import sys, {module}; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("module", ["landseg.config", "landseg.data.prepare.run"])
def test_reading_configs_and_preparing_data_load_no_torch(module):
    """Configs are typed data: reading one, and ``landseg prepare`` (which reads their data sections), must not
    pay for importing PyTorch, smp and timm; the model and loss checks import them when a spec is made."""
    code = (
        f"import sys, {module}; heavy = sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('torch', 'timm', 'segmentation_models_pytorch')); assert not heavy, heavy[:5]"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
