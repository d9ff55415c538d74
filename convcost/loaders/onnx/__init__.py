"""The ONNX loader: every conv and matrix product of an ONNX file, without reading its weights.

`wire` scans the protobuf so tensor data stays on disk, `graph` orders nodes and reads attributes,
`dims`, `shapes` and `values` resolve every tensor's shape (onnx's inference, then convcost's own
rules), `ops` turns ONNX ops into `Conv` and `MatMul`, `weights` reads a weight when asked, and
`loader` ties them together (`load_onnx`).
"""
