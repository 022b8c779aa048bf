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
    "test_shapes[torch-whole-module]": WHOLE_MODULE,
    "test_get[torch-whole-module]": WHOLE_MODULE,
    "test_stats[torch-whole-module]": WHOLE_MODULE,
    "test_diff_against_itself[torch-whole-module]": WHOLE_MODULE,
    "test_diff_one_element_changed[torch-whole-module]": WHOLE_MODULE,
    "test_convert[torch-whole-module-.safetensors]": WHOLE_MODULE,
    "test_convert[torch-whole-module-.pt]": WHOLE_MODULE,
    "test_cast[torch-whole-module-bfloat16-.safetensors]": WHOLE_MODULE,
    "test_cast[torch-whole-module-bfloat16-.pt]": WHOLE_MODULE,
    "test_cast[torch-whole-module-float16-.safetensors]": WHOLE_MODULE,
    "test_cast[torch-whole-module-float16-.pt]": WHOLE_MODULE,
    "test_check[torch-whole-module]": WHOLE_MODULE,
    # every DCP item has storage key '0': equal-shaped, distinct tensors look tied
    "test_shapes[dcp-state-dict]": DCP_TIES,
    "test_shapes[dcp-model-optimizer]": DCP_TIES,
    "test_shapes[dcp-two-ranks]": DCP_TIES,
    "test_stats[dcp-state-dict]": DCP_TIES,
    "test_stats[dcp-model-optimizer]": DCP_TIES,
    "test_stats[dcp-two-ranks]": DCP_TIES,
    "test_diff_one_element_changed[dcp-state-dict]": DCP_TIES,
    "test_diff_one_element_changed[dcp-model-optimizer]": DCP_TIES,
    "test_convert[dcp-state-dict-.safetensors]": DCP_TIES,
    "test_convert[dcp-state-dict-.pt]": DCP_TIES,
    "test_convert[dcp-model-optimizer-.safetensors]": DCP_TIES,
    "test_convert[dcp-model-optimizer-.pt]": DCP_TIES,
    "test_convert[dcp-two-ranks-.safetensors]": DCP_TIES,
    "test_convert[dcp-two-ranks-.pt]": DCP_TIES,
    "test_cast[dcp-state-dict-bfloat16-.safetensors]": DCP_TIES,
    "test_cast[dcp-state-dict-bfloat16-.pt]": DCP_TIES,
    "test_cast[dcp-state-dict-float16-.safetensors]": DCP_TIES,
    "test_cast[dcp-state-dict-float16-.pt]": DCP_TIES,
    "test_cast[dcp-model-optimizer-bfloat16-.safetensors]": DCP_TIES,
    "test_cast[dcp-model-optimizer-bfloat16-.pt]": DCP_TIES,
    "test_cast[dcp-model-optimizer-float16-.safetensors]": DCP_TIES,
    "test_cast[dcp-model-optimizer-float16-.pt]": DCP_TIES,
    "test_cast[dcp-two-ranks-bfloat16-.safetensors]": DCP_TIES,
    "test_cast[dcp-two-ranks-bfloat16-.pt]": DCP_TIES,
    "test_cast[dcp-two-ranks-float16-.safetensors]": DCP_TIES,
    "test_cast[dcp-two-ranks-float16-.pt]": DCP_TIES,
    # a tensor inside a non-tensor DCP item is read at the item's relative offset
    "test_shapes[dcp-tensors-in-items]": DCP_ITEMS,
    "test_get[dcp-tensors-in-items]": DCP_ITEMS,
    "test_stats[dcp-tensors-in-items]": DCP_ITEMS,
    "test_diff_one_element_changed[dcp-tensors-in-items]": DCP_ITEMS,
    "test_convert[dcp-tensors-in-items-.safetensors]": DCP_ITEMS,
    "test_convert[dcp-tensors-in-items-.pt]": DCP_ITEMS,
    "test_cast[dcp-tensors-in-items-bfloat16-.safetensors]": DCP_ITEMS,
    "test_cast[dcp-tensors-in-items-bfloat16-.pt]": DCP_ITEMS,
    "test_cast[dcp-tensors-in-items-float16-.safetensors]": DCP_ITEMS,
    "test_cast[dcp-tensors-in-items-float16-.pt]": DCP_ITEMS,
    # cast with .pt output fails on an empty tensor (zeros(0, 4))
    "test_cast[torch-dtypes-bfloat16-.pt]": EMPTY_CAST,
    "test_cast[torch-dtypes-float16-.pt]": EMPTY_CAST,
    "test_cast[safetensors-dtypes-bfloat16-.pt]": EMPTY_CAST,
    "test_cast[safetensors-dtypes-float16-.pt]": EMPTY_CAST,
    # --drop-unknown renumbers what is left of a tuple (numpy RNG state): .pt output fails verification
    "test_convert[accelerate-state-rng-.pt]": DROP_RENUMBER,
    "test_cast[accelerate-state-rng-bfloat16-.pt]": DROP_RENUMBER,
    "test_cast[accelerate-state-rng-float16-.pt]": DROP_RENUMBER,
    # test_matrix_paths.py
    "test_colliding_names_are_all_listed": COLLIDING,
    "test_colliding_names_convert_keeps_every_tensor": COLLIDING,
    "test_pt_to_pt_keeps_value_types": VALUE_TYPES,
    "test_convert_to_safetensors_refuses_quantized_and_sparse": QSPARSE,
}
