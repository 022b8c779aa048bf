"""GGUF benchmarks (issue 13), each contender a separate process, run round-robin:

- `paraminspect shapes` of a GGUF with a 151,000-token vocabulary and 150,000
  merges (a ~6 MB header, 288 tensors) against `gguf-dump --no-tensors` and a
  listing script on `gguf.GGUFReader` (goal: <= 150 ms);
- `paraminspect get` of one quantized (Q4_K) 16 MiB tensor (goal: <= 0.3 s);
- `paraminspect set-meta --chat-template-file` on a 1 GiB GGUF with the same
  header, against `cp` (goal: <= 1.5x cp, peak RSS <= 64 MiB), `cp` + `sync`
  (every paraminspect write is fsynced: on a busy disk that, not the copy, is
  most of the time) and, as the reference for the ratio, a safetensors `drop`
  of a file of the same size through the same save, atomic and verify path.

    .venv/bin/python benchmarks/bench_gguf.py [--repeat N] [--only-edit | --only-get] [--baseline PARAMINSPECT]

``--baseline`` adds the set-meta of another paraminspect executable (an older
checkout's) to the same round-robin, for before/after numbers on a loaded machine.
``--only-get`` runs only the get of the Q4_K tensor, beside ``paraminspect --version``
(the start-up it includes) and, with ``--baseline``, the other executable's get.

The files are written once with gguf-py's GGUFWriter (in a child process, so the
measured children do not inherit its memory) and cached in benchmarks/.cache.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CACHE, HERE, PARAMINSPECT, PYTHON, Measurement, markdown_table, python_script, run_interleaved

N_TOKENS = 151_000
N_MERGES = 150_000
N_BLOCKS = 32  # x 9 tensors = 288
BIG_TENSOR = "blk.0.ffn_gate.weight"  # Q4_K [4096, 7168]: 16.5 MB (15.75 MiB)
BIG_SHAPE = (4096, 7168)
SMALL, HUGE = CACHE / "vocab_151k.gguf", CACHE / "vocab_151k_1g.gguf"
SAFETENSORS_1G = CACHE / "same_size_1g.safetensors"

READER_LISTING = """
import sys
from gguf import GGUFReader
r = GGUFReader(sys.argv[1])
for name, field in r.fields.items():
    print(name, field.types)
for t in r.tensors:
    print(t.name, t.tensor_type.name, list(t.shape), t.n_bytes)
"""


def vocabulary() -> tuple[list[str], list[str]]:
    """Byte-level BPE-looking tokens (``Ġ`` spaces, short pieces, a few long runs) and merges."""
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    tokens: list[str] = []
    for i in range(N_TOKENS):
        word, n = "", i
        while True:
            word += letters[n % 26]
            n //= 26
            if not n:
                break
        tokens.append(("\u0120" if i % 3 else "") + word + ("ing" if i % 7 == 0 else ""))
    for i in range(0, N_TOKENS, 10_000):  # a few tokens longer than one length byte holds
        tokens[i] = "\u0120" * (70 + i // 10_000)
    merges = [f"{tokens[i % 5000 + 1]} {tokens[(i * 7) % 9000 + 1]}" for i in range(N_MERGES)]
    return tokens, merges


TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{{- message['content'] + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}\n"
) * 10


def write_gguf(path: Path, *, filler: bool) -> None:
    """A qwen2-like header and 288 tensors; with ``filler`` every ffn_up/ffn_down is as big as
    the 16 MiB one too (a 1 GiB file)."""
    import gguf
    import numpy as np

    Q = gguf.GGMLQuantizationType
    tmp = path.with_suffix(".tmp")
    writer = gguf.GGUFWriter(tmp, "qwen2")
    writer.add_name("bench-qwen2")
    writer.add_block_count(N_BLOCKS)
    writer.add_context_length(32768)
    writer.add_embedding_length(4096)
    writer.add_feed_forward_length(7168)
    writer.add_head_count(32)
    writer.add_head_count_kv(8)
    writer.add_rope_freq_base(1e6)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type(15)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    tokens, merges = vocabulary()
    writer.add_token_list(tokens)
    writer.add_token_types([1] * N_TOKENS)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(151645)
    writer.add_chat_template(TEMPLATE)
    rng = np.random.default_rng(0)

    def q4k(rows: int, cols: int) -> np.ndarray:
        """Random Q4_K blocks with finite scales (d, dmin), ``rows`` x ``cols`` weights."""
        blocks = rng.integers(0, 256, size=(rows * cols // 256, 144), dtype=np.uint8)
        blocks[:, :4] = np.full((blocks.shape[0], 2), 0.01, dtype=np.float16).view(np.uint8)
        return blocks.reshape(rows, cols // 256 * 144)

    specs: list[tuple[str, tuple[int, ...]]] = []  # name, torch-order shape; 1-D ones are F32
    for b in range(N_BLOCKS):
        specs += [(f"blk.{b}.{part}.weight", (4096,)) for part in ("attn_norm", "ffn_norm")]
        for part in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_down", "ffn_gate"):
            name = f"blk.{b}.{part}.weight"
            big = name == BIG_TENSOR or (filler and part in ("ffn_up", "ffn_down"))
            specs.append((name, BIG_SHAPE if big else (16, 256)))
    for name, shape in specs:
        if len(shape) == 1:
            writer.add_tensor_info(name, shape, np.dtype(np.float32), 4 * shape[0])
        else:
            byte_shape = (shape[0], shape[1] // 256 * 144)  # gguf-py takes a quantized shape in bytes
            nbytes = byte_shape[0] * byte_shape[1]
            writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=Q.Q4_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, shape in specs:  # made one at a time: the 1 GiB file is never in memory
        writer.write_tensor_data(rng.standard_normal(shape).astype(np.float32) if len(shape) == 1 else q4k(*shape))
    writer.close()
    tmp.replace(path)


def fixtures() -> None:
    CACHE.mkdir(exist_ok=True)
    if not SMALL.exists():
        write_gguf(SMALL, filler=False)
    if not HUGE.exists():
        write_gguf(HUGE, filler=True)
    if not SAFETENSORS_1G.exists():
        write_safetensors(SAFETENSORS_1G, HUGE.stat().st_size)


def write_safetensors(path: Path, size: int) -> None:
    """About ``size`` bytes of uint8 tensors (16 MiB each) and one small one to drop."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    big = 16 << 20
    tensors = {f"layers.{i}.weight": rng.integers(0, 256, size=big, dtype=np.uint8) for i in range(size // big)}
    tensors["extra.bias"] = np.zeros(4, dtype=np.float32)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only-edit", action="store_true", help="only the set-meta table")
    parser.add_argument("--only-get", action="store_true", help="only get of the Q4_K tensor, beside --version")
    parser.add_argument("--baseline", help="another paraminspect executable whose set-meta (or get) runs alongside")
    args = parser.parse_args()
    r = args.repeat
    setup = f"import sys; sys.path.insert(0, {str(HERE)!r}); from bench_gguf import fixtures; fixtures()"
    subprocess.run([PYTHON, "-c", setup], check=True)
    if args.only_get:
        get_table(r, args.baseline)
        return
    if not args.only_edit:
        header_tables(r)
    template = CACHE / "bench_template.jinja"
    template.write_text(TEMPLATE.replace("assistant", "model"), encoding="utf-8")
    outs = {k: CACHE / f"bench_{k}.{ext}" for k, ext in OUTPUTS}
    set_meta = ["set-meta", str(HUGE), "--chat-template-file", str(template), "--force", "-o"]
    contenders = [
        ("cp", ["cp", str(HUGE), str(outs["cp"])]),
        ("cp + sync", ["sh", "-c", f"cp '{HUGE}' '{outs['cp_sync']}' && sync '{outs['cp_sync']}'"]),
        (
            "paraminspect drop (safetensors, same size)",
            [PARAMINSPECT, "drop", str(SAFETENSORS_1G), "extra.bias", "--force", "-o", str(outs["drop"])],
        ),
        ("paraminspect set-meta --chat-template-file", [PARAMINSPECT, *set_meta, str(outs["set_meta"])]),
    ]
    if args.baseline:
        contenders.append(("baseline set-meta --chat-template-file", [args.baseline, *set_meta, str(outs["base"])]))
    edits = run_interleaved(contenders, repeat=r)
    for path in outs.values():
        path.unlink(missing_ok=True)
    sizes = HUGE.stat().st_size / 2**30, SAFETENSORS_1G.stat().st_size / 2**30
    print("1 GiB GGUF: {:.2f} GiB; safetensors: {:.2f} GiB".format(*sizes))
    print(table(edits, "cp", "x cp"))
    print()
    print(table(edits, "cp + sync", "x cp + sync"))


OUTPUTS = (("cp", "gguf"), ("cp_sync", "gguf"), ("drop", "safetensors"), ("set_meta", "gguf"), ("base", "gguf"))


def header_tables(r: int) -> None:
    """shapes against gguf-py's reader and gguf-dump; get and meta of the 151k-token header."""
    dump = shutil.which("gguf-dump") or str(Path(PYTHON).parent / "gguf-dump")
    shapes = run_interleaved(
        [
            ("paraminspect shapes", [PARAMINSPECT, "shapes", str(SMALL)]),
            ("gguf.GGUFReader listing", [*python_script(READER_LISTING), str(SMALL)]),
            ("gguf-dump --no-tensors", [dump, "--no-tensors", str(SMALL)]),
        ],
        repeat=r,
    )
    gets = run_interleaved(
        [
            ("paraminspect get (Q4_K, 16 MiB)", [PARAMINSPECT, "get", str(SMALL), BIG_TENSOR]),
            ("paraminspect meta", [PARAMINSPECT, "meta", str(SMALL)]),
            ("paraminspect meta -f json", [PARAMINSPECT, "meta", str(SMALL), "-f", "json"]),
        ],
        repeat=r,
    )
    print(f"header: {SMALL.stat().st_size / 1e6:.1f} MB file")
    print(table(shapes, "gguf.GGUFReader listing", "speed-up"))
    print()
    print(table(gets, gets[0].label, "x get"))
    print()


def get_table(r: int, baseline: str | None) -> None:
    """get of the 16 MiB Q4_K tensor, and ``--version``: the part of it that is start-up."""
    get = ["get", str(SMALL), BIG_TENSOR]
    contenders = [("paraminspect get (Q4_K, 16 MiB)", [PARAMINSPECT, *get])]
    if baseline:
        contenders.append(("baseline get (Q4_K, 16 MiB)", [baseline, *get]))
    contenders.append(("paraminspect --version", [PARAMINSPECT, "--version"]))
    gets = run_interleaved(contenders, repeat=r)
    print(table(gets, gets[0].label, "x get"))


def table(rows: list[Measurement], base_label: str, ratio_title: str) -> str:
    base = next(m for m in rows if m.label == base_label)
    body = []
    for m in rows:
        ratio = m.median_s / base.median_s if ratio_title.startswith("x") else base.median_s / m.median_s
        ms, cpu = f"{m.median_s * 1000:.0f}", f"{m.median_cpu_s * 1000:.0f}"
        body.append([m.label, ms, f"{ratio:.2f}", cpu, f"{m.peak_rss_mib:.0f}"])
    return markdown_table(["command", "median ms", ratio_title, "CPU ms", "peak RSS MiB"], body)


if __name__ == "__main__":
    main()
