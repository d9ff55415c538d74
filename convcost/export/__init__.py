"""Writers of factorized models: what `convcost apply` produces.

`apply` runs the command (choose, factorize, write, prove), `onnx_writer` rewrites an ONNX graph
with onnx-ir, `verify` compares the original and the rewritten model in onnxruntime (optional),
`pytorch` swaps an `nn.Module`'s convs for `nn.Sequential` stages. This package sits beside
`render`: it may use the analysis and everything below it, and the command line uses it.
"""
