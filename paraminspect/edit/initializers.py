"""Initialisation schemes computed as ``torch.nn.init`` computes them, with numpy.

Fan-in and fan-out follow ``torch.nn.init._calculate_fan_in_and_fan_out``
(dim 1 and dim 0 times the receptive field, the product of dims 2+); gains
follow ``torch.nn.init.calculate_gain``. Values are drawn in float64 from a
``numpy.random.Generator`` (seeded for reproducibility) and then converted to
the tensor's dtype, so the distribution matches torch's, not its bit stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from paraminspect.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

SCHEMES = (
    "zeros",
    "ones",
    "constant",
    "normal",
    "uniform",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
)
RANDOM_SCHEMES = frozenset(SCHEMES[3:])
FAN_SCHEMES = frozenset(SCHEMES[5:])
NONLINEARITIES = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
)


@dataclass(frozen=True)
class Scheme:
    """One ``--scheme`` with its options (unused options keep their defaults)."""

    name: str
    value: float = 0.0  # constant
    mean: float = 0.0  # normal
    std: float = 1.0
    low: float = 0.0  # uniform
    high: float = 1.0
    gain: float | None = None  # xavier (default 1) / kaiming (default from nonlinearity)
    mode: str = "fan_in"
    nonlinearity: str = "leaky_relu"
    a: float = 0.0  # negative slope for leaky_relu

    def __post_init__(self) -> None:
        if self.name not in SCHEMES:
            raise UsageError(f"unknown scheme {self.name!r} (choose from {', '.join(SCHEMES)})")
        if self.mode not in ("fan_in", "fan_out"):
            raise UsageError(f"--mode must be fan_in or fan_out, not {self.mode!r}")
        if self.nonlinearity not in NONLINEARITIES:
            raise UsageError(f"unknown nonlinearity {self.nonlinearity!r} (choose from {', '.join(NONLINEARITIES)})")
        # Distribution parameters must be finite numbers (--value may be nan or inf: a fill).
        options = {"--mean": self.mean, "--std": self.std, "--low": self.low, "--high": self.high, "--a": self.a}
        if self.gain is not None:
            options["--gain"] = self.gain
        for option, number in options.items():
            if not math.isfinite(number):
                raise UsageError(f"{option} must be a finite number, not {number}")
        if self.std < 0:
            raise UsageError("--std must not be negative")
        if self.gain is not None and self.gain < 0:
            raise UsageError("--gain must not be negative")
        if self.low > self.high:
            raise UsageError("--low must not exceed --high")
        if not math.isfinite(self.high - self.low):
            raise UsageError("--high minus --low must be a finite number")

    def describe(self) -> str:
        if self.name == "constant":
            return f"constant {self.value:g}"
        if self.name == "normal":
            return f"normal(mean={self.mean:g}, std={self.std:g})"
        if self.name == "uniform":
            return f"uniform({self.low:g}, {self.high:g})"
        if self.name.startswith("kaiming"):
            return f"{self.name}(mode={self.mode}, nonlinearity={self.nonlinearity})"
        return self.name


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain, as ``torch.nn.init.calculate_gain`` returns it."""
    if nonlinearity in ("linear", "sigmoid") or nonlinearity.startswith(("conv", "conv_transpose")):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise UsageError(f"unknown nonlinearity {nonlinearity!r}")


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) for a weight of ``shape``; needs at least 2 dimensions, like torch."""
    if len(shape) < 2:
        raise UsageError(f"fan in and fan out cannot be computed for shape {list(shape)} (fewer than 2 dimensions)")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def generate(scheme: Scheme, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A float64 array of ``shape`` drawn as ``torch.nn.init.<scheme>_`` would fill it."""
    import numpy as np

    name = scheme.name
    if name in ("zeros", "ones", "constant"):
        fill = {"zeros": 0.0, "ones": 1.0}.get(name, scheme.value)
        return np.full(shape, fill, dtype=np.float64)
    if name == "normal":
        return rng.normal(scheme.mean, scheme.std, size=shape)
    if name == "uniform":
        return rng.uniform(scheme.low, scheme.high, size=shape)
    fan_in, fan_out = fans(shape)
    if name.startswith("xavier"):
        gain = 1.0 if scheme.gain is None else scheme.gain
        std = gain * math.sqrt(2.0 / max(fan_in + fan_out, 1))
    else:
        fan = fan_in if scheme.mode == "fan_in" else fan_out
        gain = calculate_gain(scheme.nonlinearity, scheme.a) if scheme.gain is None else scheme.gain
        std = gain / math.sqrt(max(fan, 1))
    if not math.isfinite(2 * math.sqrt(3.0) * std):  # the widest range numpy is asked to draw from
        raise UsageError(f"--gain {gain:g} is too large: the scheme's standard deviation overflows")
    if name.endswith("uniform"):
        bound = math.sqrt(3.0) * std
        return rng.uniform(-bound, bound, size=shape)
    return rng.normal(0.0, std, size=shape)
