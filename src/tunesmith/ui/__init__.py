"""`tunesmith ui`: the low-code web page. It writes a YAML and runs the same CLI (`tunesmith train`,
`data`, `eval`, `export`) as processes of their own; it never has a training path of its own.

Plain modules (no Gradio): `runs` (run registry, start/stop/resume, metrics), `schema_form` (the
Train form from the config schema), `jobs` (CLI jobs), `safety` (bind, auth, typed paths,
uploads), `chat_models`, `i18n`. The Gradio layer is `app` and `tabs_*`.
"""
