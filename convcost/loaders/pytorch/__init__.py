"""The PyTorch loaders: TorchScript archives and `module:factory` models, run once on zeros.

`torchscript` recognises `.pt` files without importing torch or unpickling anything and loads
archives, `factory` imports and calls a user's `module:factory`, and `capture` runs either model
under a dispatch mode that records every conv and matrix multiply; `spec_module` builds a runnable
module from a YAML layer spec. Only `capture` and `spec_module` import torch at the top, and the
loaders import it only when a model is loaded.
"""
