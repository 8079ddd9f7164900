"""What `pip install vaelab` gives a user: the wheel and the sdist built from this tree hold every file the
package reads at run time (not only its modules), and the licence. (CI also installs the wheel into a fresh
virtual environment and runs a study and the explorer from it: .ci/installed-wheel.)"""

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "vaelab"


def package_files() -> set[str]:
    """Every file of the package in the source tree, as paths from src/ (compiled caches aside)."""
    return {str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("build", reason="needs the build package: pip install 'vaelab[test]'")
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir",
                             str(dist), str(tree)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return next(dist.glob("vaelab-*.whl")), next(dist.glob("vaelab-*.tar.gz"))


def test_the_wheel_holds_every_package_file_and_the_licence(built):
    wheel, _ = built
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"vaelab/explore/static/index.html", "vaelab/explore/static/explore.js",
            "vaelab/explore/static/explore.css"} <= names
    assert package_files() <= names, sorted(package_files() - names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)


def test_the_sdist_holds_every_package_file_and_the_licence(built):
    _, sdist = built
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {f"src/{name}" for name in package_files()} <= names
    assert {"LICENSE", "pyproject.toml", "README.md"} <= names
