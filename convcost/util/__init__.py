"""Helpers every layer may use and that know nothing of models or costs.

`errors` (the typed errors the CLI turns into one line and an exit code), `infile` (size-capped,
bounded reading of the YAML users hand convcost), `outfile` (output files written whole or not at
all), `progress` (progress bars on a terminal only), `parallel` (one function over several
models in forked worker processes, results in order) and `registry` (`Registry`, the one way
convcost keeps named things looked up by key).
"""
