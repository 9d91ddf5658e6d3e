"""The side-by-side pages: each piece of the algorithm in PyTorch, JAX and Keras, pulled from
the live source by module and symbol name when the site is built.

PIECES names, for every piece, the symbols that implement it in each framework. `pages` writes
two MyST fragments from it: synced tabs (docs/side-by-side.md) and three columns
(docs/side-by-side-columns.md). Each block is a `literalinclude` with `:pyobject:`, so the code
is never pasted; a symbol that no longer exists stops the build here, with its name, before
Sphinx would only warn about it.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

from benchmarks.summary import source_lines

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Piece:
    title: str
    why: str  # what to look for when reading the three side by side
    code: dict[str, list[tuple[str, str]]]  # framework -> [(path from the root, symbol)]


FRAMEWORKS = {"pytorch": "PyTorch", "jax": "JAX", "keras": "Keras"}

PIECES = [
    Piece(
        "Layers from the spec",
        "Each framework turns one entry of `common.spec` (a named layer with its kind, sizes and "
        "options) into its own layer. The spec is PyTorch's convention (NCHW, `padding` as in "
        "`ConvTranspose2d`); JAX and Keras translate padding and layout here.",
        {
            "pytorch": [("pytorch_impl/models.py", "make_layer")],
            "jax": [("jax_impl/models.py", "make_layer")],
            "keras": [("keras_impl/models.py", "make_layers")],
        },
    ),
    Piece(
        "Generator",
        "One `Network` class builds either network from its spec, layer by layer, under the "
        "spec's names; `Generator` only picks the spec. The same layer has the same name in "
        "all three (`convt2`).",
        {
            "pytorch": [("pytorch_impl/models.py", "Network"), ("pytorch_impl/models.py", "Generator")],
            "jax": [("jax_impl/models.py", "Network"), ("jax_impl/models.py", "Generator")],
            "keras": [("keras_impl/models.py", "Network"), ("keras_impl/models.py", "Generator")],
        },
    ),
    Piece(
        "Discriminator",
        "The discriminator is the same `Network` built from the discriminator's spec.",
        {
            "pytorch": [("pytorch_impl/models.py", "Discriminator")],
            "jax": [("jax_impl/models.py", "Discriminator")],
            "keras": [("keras_impl/models.py", "Discriminator")],
        },
    ),
    Piece(
        "Weight initialisation",
        "DCGAN's N(0, 0.02) for kernels and N(1, 0.02) for BN scales. Every framework draws "
        "the same numbers: a kernel is drawn flat in PyTorch's layout from the run's seed and "
        "then laid out the framework's way.",
        {
            "pytorch": [("pytorch_impl/models.py", "init_weights")],
            "jax": [
                ("jax_impl/models.py", "drawn_flat"),
                ("jax_impl/models.py", "kernel_init"),
                ("jax_impl/models.py", "bn_scale_init"),
            ],
            "keras": [
                ("keras_impl/models.py", "DrawnFlat"),
                ("keras_impl/models.py", "_kernel_initializer"),
                ("keras_impl/models.py", "_gamma_initializer"),
            ],
        },
    ),
    Piece(
        "Losses",
        "Binary cross-entropy on logits: D's loss on a real and a fake batch as two passes (so "
        "BN normalises each on its own), G's non-saturating loss. Keras's losses are functions "
        "of the values they are differentiated by (`stateless_call`).",
        {
            "pytorch": [("pytorch_impl/step.py", "d_loss"), ("pytorch_impl/step.py", "g_loss")],
            "jax": [("jax_impl/step.py", "bce"), ("jax_impl/step.py", "d_loss"), ("jax_impl/step.py", "g_loss")],
            "keras": [
                ("keras_impl/step.py", "bce"),
                ("keras_impl/step.py", "d_loss"),
                ("keras_impl/step.py", "g_loss"),
            ],
        },
    ),
    Piece(
        "The D step",
        "One update of D on a real batch and G(z). How G's forward pass is kept for the G step "
        "is where the frameworks differ most: PyTorch keeps the autograd graph, JAX keeps a "
        "`vjp` pullback, Keras runs G's forward pass again in the G step.",
        {
            "pytorch": [("pytorch_impl/step.py", "d_step")],
            "jax": [("jax_impl/step.py", "generate"), ("jax_impl/step.py", "d_step")],
            "keras": [("keras_impl/step.py", "d_step")],
        },
    ),
    Piece(
        "The G step",
        "One update of G through the already-updated D, in train mode.",
        {
            "pytorch": [("pytorch_impl/step.py", "g_step")],
            "jax": [("jax_impl/step.py", "g_step")],
            "keras": [("keras_impl/step.py", "g_step")],
        },
    ),
    Piece(
        "The optimizer",
        "Adam with the config's betas and epsilon, one per network. PyTorch's `torch.optim.Adam` "
        "and optax's `adam` agree; Keras's Adam applies epsilon differently, so the suite "
        "subclasses it into PyTorch's form.",
        {
            "pytorch": [("pytorch_impl/backend.py", "Trainer.__init__")],
            "jax": [("jax_impl/backend.py", "Trainer.__init__")],
            "keras": [("keras_impl/optimizers.py", "Adam"), ("keras_impl/backend.py", "Trainer.__init__")],
        },
    ),
    Piece(
        "The compiled train step",
        "The whole iteration: k D steps, then one G step (`common/algorithm.py`, shown above). "
        "PyTorch runs it eagerly (`--compile` wraps the modules in `torch.compile`), JAX traces it "
        "into one `nnx.jit` program, Keras runs it inside `keras.Model.train_step`, compiled by "
        "its backend (tf.function, jax.jit; eager on torch).",
        {
            "pytorch": [("pytorch_impl/step.py", "train_step")],
            "jax": [("jax_impl/step.py", "train_step")],
            "keras": [("keras_impl/step.py", "train_step"), ("keras_impl/gan.py", "GAN._train_step")],
        },
    ),
    Piece(
        "The checkpoint layout",
        "Every checkpoint is in one canonical layout (PyTorch's: Conv OIHW, ConvTranspose IOHW, "
        "Linear (out, in)); each framework only transposes at its edge.",
        {
            "pytorch": [("pytorch_impl/layout.py", "to_canonical"), ("pytorch_impl/layout.py", "from_canonical")],
            "jax": [("jax_impl/layout.py", "to_canonical"), ("jax_impl/layout.py", "from_canonical")],
            "keras": [("keras_impl/layout.py", "to_canonical"), ("keras_impl/layout.py", "from_canonical")],
        },
    ),
    Piece(
        "The data-parallel set-up",
        "`--devices N`: PyTorch runs one process per device under torchrun with "
        "`DistributedDataParallel`; JAX jits the step over a `Mesh` with the batch sharded; "
        "Keras uses `keras.distribution.DataParallel` on JAX and `tf.distribute.MirroredStrategy` "
        "on TensorFlow.",
        {
            "pytorch": [
                ("pytorch_impl/distributed.py", "join"),
                ("pytorch_impl/backend.py", "DistributedTrainer.step"),
                ("pytorch_impl/backend.py", "DistributedTrainer._average_buffers"),
            ],
            "jax": [("jax_impl/distributed.py", "data_parallel_mesh"), ("jax_impl/backend.py", "Trainer._replicate")],
            "keras": [
                ("keras_impl/backend.py", "Backend.__init__"),
                ("keras_impl/distributed.py", "mirrored_strategy"),
            ],
        },
    ),
]


class MissingSymbol(LookupError):
    pass


def find(path: str, symbol: str) -> str:
    """The source of `symbol` ("name" or "Class.method") in `path`, decorators included,
    dedented; MissingSymbol names it when it is gone."""
    source = (ROOT / path).read_text()
    body = ast.parse(source).body
    node = None
    for part in symbol.split("."):
        node = next(
            (n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part),
            None,
        )
        if node is None:
            raise MissingSymbol(
                f"{path}: no symbol {symbol!r} (the side-by-side page shows it; see docs/_ext/side_by_side.py)"
            )
        body = node.body
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    lines = source.splitlines()[start - 1 : node.end_lineno]
    return textwrap.dedent("\n".join(lines))


def slug(title: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in title.lower()).split())


def _blocks(entries: list[tuple[str, str]], fence: str = "```") -> list[str]:
    out = []
    for path, symbol in entries:
        out += [
            f"`{path}` · `{symbol}`",
            "",
            f"{fence}{{literalinclude}} /{path}",
            f":pyobject: {symbol}",
            ":language: python",
            fence,
            "",
        ]
    return out


def counts(piece: Piece) -> dict[str, int]:
    return {fw: sum(source_lines(find(path, symbol)) for path, symbol in entries) for fw, entries in piece.code.items()}


def _count_line(lines: dict[str, int]) -> str:
    return "{.sbs-lines}\nLines of code (not counting blank lines, comments and docstrings): " + " · ".join(
        f"{FRAMEWORKS[fw]} {n}" for fw, n in lines.items()
    )


def tabs_page() -> str:
    out = []
    for piece in PIECES:
        lines = counts(piece)
        out += [
            f"## {piece.title}",
            "",
            piece.why + f" [In columns](side-by-side-columns.md#{slug(piece.title)}).",
            "",
            _count_line(lines),
            "",
            "::::{tab-set}",
            ":sync-group: framework",
            "",
        ]
        for fw, entries in piece.code.items():
            out += [f":::{{tab-item}} {FRAMEWORKS[fw]}", f":sync: {fw}", "", *_blocks(entries), ":::", ""]
        out += ["::::", ""]
    return "\n".join(out)


def columns_page() -> str:
    out = []
    for piece in PIECES:
        lines = counts(piece)
        out += [
            f"## {piece.title}",
            "",
            piece.why + f" [In tabs](side-by-side.md#{slug(piece.title)}).",
            "",
            "::::{grid} 1 1 3 3",
            ":gutter: 2",
            ":class-container: sbs-columns",
            "",
        ]
        for fw, entries in piece.code.items():
            out += [":::{grid-item}", f"**{FRAMEWORKS[fw]}** · {lines[fw]} lines", "", *_blocks(entries), ":::", ""]
        out += ["::::", ""]
    return "\n".join(out)


def totals() -> str:
    """A table: lines per piece and framework, and the sum."""
    rows = ["| piece | " + " | ".join(FRAMEWORKS.values()) + " |", "|---|" + "---:|" * len(FRAMEWORKS)]
    sums = dict.fromkeys(FRAMEWORKS, 0)
    for piece in PIECES:
        lines = counts(piece)
        for fw, n in lines.items():
            sums[fw] += n
        rows.append(
            f"| [{piece.title}](#{slug(piece.title)}) | " + " | ".join(str(lines[fw]) for fw in FRAMEWORKS) + " |"
        )
    rows.append("| **all pieces** | " + " | ".join(f"**{sums[fw]}**" for fw in FRAMEWORKS) + " |")
    return "\n".join(rows)
