"""Sources of music, each read into note tables with a style label:
music21's bundled corpus (`music21_corpus`, parts named by `part_names`), folders of MIDI
files (`folder`), POP909 (`pop909`) and the Groove MIDI Dataset (`groove`); `styles` says
what each style is, and `intros` holds the co-composer's famous openings."""
