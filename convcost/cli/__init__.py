"""The command line: a thin layer that parses options and hands them to analysis and render.

`app` builds the typer app, registers the commands and turns every error into one line and an exit
code; each command lives in a module of its own (`analyze`, `report`, `check`, `devices`,
`calibrate`, `bench`); `options` declares the options they share and `common` parses them into a
request.
"""
