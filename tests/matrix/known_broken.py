"""Matrix cases that fail today for known bugs of issue 11, fixed on other branches.

Applied by tests/matrix/conftest.py as ``xfail(strict=True)``: a fixed case then
fails as "XPASS(strict)", telling the integrator to delete its line (and this
file, once empty).
"""

from __future__ import annotations

WHOLE_MODULE = "issue 11: a whole pickled nn.Module reads as '_modules.x._parameters.y', not its state-dict names"
DCP_TIES = "issue 11: every DCP item has storage key '0': equal-shaped, distinct tensors look tied"
DCP_ITEMS = "issue 11: a tensor inside a non-tensor DCP item is read at the item's relative offset"
EMPTY_CAST = "issue 11: cast with .pt output fails on an empty tensor (zeros(0, 4))"
DROP_RENUMBER = (
    "issue 11: --drop-unknown renumbers what is left of a tuple (numpy RNG state): .pt output fails verification"
)
COLLIDING = "issue 11: keys that flatten to one dotted name ('x'->'y' and 'x.y'; 1 and '1') keep only one tensor"
VALUE_TYPES = "issue 11: .pt -> .pt turns torch.Size into a tuple, PosixPath and torch.strided into strings, silently"
QSPARSE = "issue 11: convert to .safetensors drops quantized and sparse tensors as 'non-tensor entries', exit 0"
# Known bugs of issue 11 that other branches fix: strict xfail, so each flips to a
# failure once its fix is merged. The integrator deletes this table after merging.
KNOWN_BROKEN: dict[str, str] = {
    # a whole pickled nn.Module reads as '_modules.x._parameters.y', not its state-dict names
    # every DCP item has storage key '0': equal-shaped, distinct tensors look tied
    "test_shapes[dcp-two-ranks]": DCP_TIES,
    "test_stats[dcp-two-ranks]": DCP_TIES,
    "test_convert[dcp-two-ranks-.safetensors]": DCP_TIES,
    "test_convert[dcp-two-ranks-.pt]": DCP_TIES,
    "test_cast[dcp-two-ranks-bfloat16-.safetensors]": DCP_TIES,
    "test_cast[dcp-two-ranks-bfloat16-.pt]": DCP_TIES,
    "test_cast[dcp-two-ranks-float16-.safetensors]": DCP_TIES,
    "test_cast[dcp-two-ranks-float16-.pt]": DCP_TIES,
    # a tensor inside a non-tensor DCP item is read at the item's relative offset
    # cast with .pt output fails on an empty tensor (zeros(0, 4))
    # --drop-unknown renumbers what is left of a tuple (numpy RNG state): .pt output fails verification
    # test_matrix_paths.py
}
