"""Data: read files, validate rows with file:line:field errors, render templates, tokenise, mask."""
