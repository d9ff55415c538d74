"""aten ops every PyTorch-graph loader (TorchScript, module:factory, .pt2) treats alike."""

from __future__ import annotations

#: Ops that only change a tensor's metadata (shape, strides, offset) or ask for it, and run no
#: kernel: they are not nodes of `Model.nodes`, and their outputs (every part of a split) keep their
#: input's tensor name, so that each edge runs from the op that computed the tensor; a reader's
#: `input_shapes` say which view of it it reads. Named as `aten::op` (no overload).
METADATA_OPS = frozenset({
    # views
    "aten::view", "aten::_unsafe_view", "aten::_reshape_alias", "aten::reshape", "aten::view_as",
    "aten::t", "aten::transpose", "aten::permute", "aten::numpy_T", "aten::mT", "aten::adjoint",
    "aten::expand", "aten::expand_as", "aten::unsqueeze", "aten::squeeze", "aten::flatten", "aten::unflatten",
    "aten::select", "aten::slice", "aten::narrow", "aten::as_strided", "aten::split", "aten::split_with_sizes",
    "aten::unbind", "aten::chunk", "aten::detach", "aten::alias", "aten::lift_fresh", "aten::contiguous",
    # size queries and export-time assertions
    "aten::size", "aten::stride", "aten::numel", "aten::dim", "aten::is_contiguous", "aten::sym_size",
    "aten::sym_stride", "aten::sym_numel", "aten::sym_storage_offset", "aten::_assert_tensor_metadata",
    "aten::_assert_scalar", "aten::_assert_async", "aten::sym_constrain_range_for_size",
    "aten::sym_constrain_range",
})


#: Metadata ops that copy when their input's memory is not contiguous (a reshape after a transpose,
#: as in a channel shuffle): a graph that records them (torch.export) keeps those as nodes. A
#: captured forward sees the copy itself (aten::clone) and needs no such rule.
COPY_IF_STRIDED = frozenset({"aten::reshape", "aten::flatten", "aten::contiguous"})


def scalar_attr(value: object) -> bool:
    """Whether an op argument is one a latency formula may read (`Node.attrs`): an int, float, str
    or bool, or a list of them."""
    if isinstance(value, bool | int | float | str):
        return True
    return isinstance(value, list | tuple) and all(isinstance(v, bool | int | float | str) for v in value)
