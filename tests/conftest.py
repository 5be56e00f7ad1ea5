import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

SHARED_MIDI = Path(__file__).resolve().parents[1].parent / "shared" / "midi"

try:
    from hypothesis import settings as hypothesis_settings
    from hypothesis.configuration import set_hypothesis_home_dir
except ImportError:  # pragma: no cover
    set_hypothesis_home_dir = None
else:  # no example database; its other caches go to a temporary folder (see pytest_configure)
    hypothesis_settings.register_profile("musenet", database=None)
    hypothesis_settings.load_profile("musenet")

_artifacts: list[Path] = []
_hypothesis_home: list[str] = []
_kernel_cache: list[str] = []


def pytest_configure(config) -> None:
    """Hypothesis's folder (its caches of constants and characters, written while tests are
    collected) in a temporary folder instead of `.hypothesis/` in the checkout."""
    if set_hypothesis_home_dir is not None:
        _hypothesis_home.append(tempfile.mkdtemp(prefix="musenet-hypothesis-"))
        set_hypothesis_home_dir(_hypothesis_home[-1])
    # compiled decode steps (kernels.py) built by tests go to a folder of their own, and none
    # built outside the tests is used: every test decodes as its code says
    _kernel_cache.append(tempfile.mkdtemp(prefix="musenet-kernels-"))
    os.environ["MUSENET_CACHE"] = _kernel_cache[-1]


def pytest_unconfigure(config) -> None:
    while _kernel_cache:
        shutil.rmtree(_kernel_cache.pop(), ignore_errors=True)
    while _hypothesis_home:
        shutil.rmtree(_hypothesis_home.pop(), ignore_errors=True)


@pytest.fixture
def shared_midi() -> Path:
    if not SHARED_MIDI.is_dir():
        pytest.skip("../shared/midi is not beside this checkout")
    return SHARED_MIDI


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """Where tests leave files worth a look (screenshots, a WAV, load figures): the folder
    $MUSENET_TEST_ARTIFACTS names, or else a temporary one; the run's summary says which."""
    chosen = os.environ.get("MUSENET_TEST_ARTIFACTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    _artifacts.append(path)
    return path


def pytest_terminal_summary(terminalreporter) -> None:
    for path in _artifacts:
        if any(path.iterdir()):
            terminalreporter.write_line(f"test artifacts in {path}")
