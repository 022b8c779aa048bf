"""The norms of A over elements whose bytes were equal, computed only when needed.

The comparison skips byte-equal stretches without decoding them. They add
nothing to the differences, but they do add to ‖A‖ (and ‖B‖, the same values),
which the relative measures divide by. So the stretches are written down while
comparing, and read back once at the end, only when the tensor changed (or a
roll-up needs every tensor's norms): an identical tensor costs nothing more,
a fine-tune (every value differs) skips nothing, so has nothing to read back.

A few owed elements are decoded without numpy, like the differing elements in
:mod:`paraminspect.compare.differing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from paraminspect.compare.metrics import Sums, same_sums, same_sums_few
from paraminspect.data import peek
from paraminspect.data.arrays import decode_bytes
from paraminspect.io import source
from paraminspect.model import TensorRef

# At most this many owed elements are summed in pure Python (~1 us each).
FEW_OWED = 4096


@dataclass
class Owed:
    """Byte ranges of one tensor, (offset from its first byte, length), whose A-sums are owed."""

    ranges: list[tuple[int, int]] = field(default_factory=list)
    elements: int = 0

    def add(self, start: int, length: int, itemsize: int) -> None:
        last = self.ranges[-1] if self.ranges else None
        if last is not None and last[0] + last[1] == start:
            self.ranges[-1] = (last[0], last[1] + length)  # one contiguous stretch
        else:
            self.ranges.append((start, length))
        self.elements += length // itemsize


def settle(ref: TensorRef, owed: Owed, sums: Sums, buffer: bytearray) -> None:
    """Read the owed ranges of ``ref`` (A) back through ``buffer`` and add their norms."""
    src = source.get(ref.storage.path)
    base = ref.byte_range()[0]
    itemsize = ref.dtype.itemsize
    view = memoryview(buffer)
    step = len(buffer) - len(buffer) % itemsize
    decode = peek.element_decoder(ref) if owed.elements <= FEW_OWED else None
    for start, length in owed.ranges:
        done = 0
        while done < length:
            n = min(step, length - done)
            src.readinto(view[:n], base + start + done)
            if decode is not None:
                values = (decode(view, off) for off in range(0, n, itemsize))
                sums.add_same(*same_sums_few(values))
            else:
                sums.add_same(*same_sums(decode_bytes(ref, view[:n])))
            done += n
