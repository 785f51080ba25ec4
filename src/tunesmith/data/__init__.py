"""Data: read files, validate rows with file:line:field errors, render templates, tokenise, mask,
pack, clean, stream (`dataset.py`); rows that a TRL-style trainer tokenises (`rows.py`); which data
options each kind supports (`options.py`)."""
