"""Project exceptions: each carries a one-line message meant for the user."""


class MuseNetError(Exception):
    """An error the user can cause and fix (bad settings, unknown names). One line."""


class MidiError(MuseNetError):
    """A MIDI file that cannot be read or written; the message names the file and why."""
