"""MuseNet: a transformer that composes multi-instrument music, token by token.

The stable Python API: `encode`, `decode`, `to_text`, `from_text`, `MidiError`, and for
composing `Composer` and `compose` (imported on first use, as they bring in torch).
"""

from .encoding import decode, encode
from .errors import MidiError, MuseNetError
from .instruments import FAMILIES
from .version import __version__
from .vocab import Vocab, default_vocab, from_text, to_text

__all__ = [
    "Composer", "FAMILIES", "MidiError", "MuseNetError", "Vocab", "compose", "decode", "default_vocab", "encode",
    "from_text", "to_text", "__version__",
]


def __getattr__(name: str):
    if name in ("Composer", "compose"):
        from . import composer

        return getattr(composer, name)
    raise AttributeError(f"module 'musenet' has no attribute {name!r}")
