"""The torch.export loader: a `.pt2` archive's graph read as JSON, never unpickled, torch never imported.

`archive` opens the zip and reads the exported program and the raw-weight index, `symbols` evaluates
the graph's symbolic sizes (and export guards) without `eval`, `ops` turns aten calls into `Conv`
and `MatMul`, and `loader` binds `-i` and walks the graph (`load_pt2`).
"""
