"""A loaded model, priced: every conv, every variant of it and every device, summed into totals.

`result` holds the types an analysis is made of (renderers only read them), `analyzer` fills
them, `pipeline` is the one load-and-analyze path the commands share, `budget` evaluates
`convcost check` budgets and baselines, `bench` compares measured times with the estimates, and
`compare` keeps a model's totals for the comparison of several models.
"""
