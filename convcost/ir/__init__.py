"""The format-independent model every loader builds and every analysis reads.

`model` holds `Model`, `Conv` and `MatMul` (shapes, attributes, and a weight that is read only when
asked for); `shapes` the conv shape arithmetic the loaders and the variant builders share; `inputs`
parses `-i` (`1x3x224x224`, `NAME=1x3x224x224`, `NAME=VALUE` for a scalar input).
"""
