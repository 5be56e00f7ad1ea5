"""Sources of music for a training set: music21's bundled corpus (`music21_corpus`: works
with a style label per collection, read into note tables) and folders of MIDI files
(`folder`: a style per sub-folder or from a CSV manifest). Nothing heavy is imported here;
music21 is imported only when a corpus work is read.
"""
