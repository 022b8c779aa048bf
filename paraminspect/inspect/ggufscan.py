"""What ``scan`` flags in a GGUF file. A GGUF holds no pickle, so nothing in it is
code a loader runs; what can still be hostile is a chat template (llama.cpp and
Ollama render it with a Jinja engine: template-injection payloads reach Python
objects through ``__class__``/``__globals__``), bytes hidden after the tensor data,
and a zip appended to make the file a polyglot that a zip reader opens."""

from __future__ import annotations

import os
import re
from pathlib import Path

from paraminspect.formats.gguf import read_layout
from paraminspect.formats.magic import ZIP_MAGIC
from paraminspect.formats.pickle.scanner import UNSAFE, Reference
from paraminspect.io.files import open_regular
from paraminspect.limits import Limits

TEMPLATE_KEY = "tokenizer.chat_template"  # and tokenizer.chat_template.<name> for named templates
INJECTION = re.compile(r"__class__|__globals__|__subclasses__|__builtins__|__mro__|__import__|\bimport\b|\bos\.")
ZIP_END = b"PK\x05\x06"
TAIL_LOOKED_AT = 65_557  # a zip's end record sits in its last 22 + 65,535 bytes


def gguf_findings(path: Path, limits: Limits) -> list[tuple[str, Reference]]:
    """(record, finding) pairs: injection patterns in chat templates, trailing data, an appended zip."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        layout = read_layout(fh, size, limits)
        found: list[tuple[str, Reference]] = []
        for key, (kind, value) in layout.kvs.items():
            if (key == TEMPLATE_KEY or key.startswith(TEMPLATE_KEY + ".")) and kind == "STRING":
                for match in INJECTION.finditer(value):
                    found.append((key, Reference("chat-template", match.group(), "", match.start(), UNSAFE)))
        end = -(-layout.data_end // layout.alignment) * layout.alignment if layout.tensors else layout.data_start
        trailing = size - end
        if trailing > 0:
            fh.seek(end)
            first = fh.read(len(ZIP_MAGIC))
            fh.seek(max(end, size - TAIL_LOOKED_AT))
            tail = fh.read(TAIL_LOOKED_AT)
            if first == ZIP_MAGIC or ZIP_END in tail:
                found.append(
                    (
                        "(file)",
                        Reference(
                            "appended-zip", f"a zip archive after the tensor data ({trailing:,} bytes)", "", end, UNSAFE
                        ),
                    )
                )
            else:
                found.append(
                    ("(file)", Reference("trailing-data", f"{trailing:,} bytes after the tensor data", "", end, UNSAFE))
                )
    return found
