import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

SHARED_MIDI = Path(__file__).resolve().parents[1].parent / "shared" / "midi"


@pytest.fixture
def shared_midi() -> Path:
    if not SHARED_MIDI.is_dir():
        pytest.skip("../shared/midi is not beside this checkout")
    return SHARED_MIDI
