"""The command line: a thin layer that parses options and hands them to analysis and render.

`app` builds the typer app, registers the commands and turns every error into one line and an exit
code; each command lives in a module of its own (`analyze`, `report`, `check`, `devices`,
`calibrate`, `bench`); `options` and `common` hold what they share: the options, declared once, and
the glue from parsed options to text on stdout or in a file; `multi` runs `analyze` and `check` over
several models.
"""
