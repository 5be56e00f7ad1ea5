"""MuseNet: a transformer that composes multi-instrument music, token by token.

The stable Python API: `encode`, `decode`, `to_text`, `from_text`, `MidiError`.
"""

from .encoding import decode, encode
from .errors import MidiError, MuseNetError
from .instruments import FAMILIES
from .vocab import Vocab, default_vocab, from_text, to_text

__version__ = "0.1.0"

__all__ = [
    "FAMILIES", "MidiError", "MuseNetError", "Vocab", "decode", "default_vocab", "encode",
    "from_text", "to_text", "__version__",
]
