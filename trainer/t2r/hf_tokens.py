"""A checkpoint's tokenizer files, read for their ids: tokenizer.json (which ids exist),
tokenizer_config.json and generation_config.json (which ids are special). The text side of the
tokenizer (byte-level BPE, SentencePiece byte fallback, chat templates) is the server's
(src/tokenizer/); the import copies these files as they are and checks that every id config.json
and generation_config.json name is a token of tokenizer.json."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .hf_files import read_json

TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
GENERATION_CONFIG = "generation_config.json"


class HFTokenizerError(ValueError):
    """Tokenizer files missing, corrupt, or without the ids the model's configs name."""


@dataclass
class Vocabulary:
    ids: dict[str, int]     # every token (the model's vocabulary and the added tokens) -> id
    size: int               # highest id + 1
    model: dict             # tokenizer.json's `model` (type, vocab, merges, byte_fallback, ...)
    added: list[dict]       # tokenizer.json's `added_tokens`


@dataclass
class SpecialTokens:
    eos_ids: list[int]      # every end-of-sequence id; the first is model.json's eos_token_id
    bos_id: Optional[int]
    add_bos: Optional[bool]  # tokenizer_config.json's add_bos_token, when it says


def read_vocabulary(folder: str) -> Vocabulary:
    doc = read_json(folder, TOKENIZER, required=True, error=HFTokenizerError)
    model = doc.get("model")
    vocab = model.get("vocab") if isinstance(model, dict) else None
    if isinstance(vocab, dict) and all(isinstance(i, int) for i in vocab.values()):
        ids = dict(vocab)                                    # BPE, WordPiece, WordLevel
    elif isinstance(vocab, list) and all(isinstance(e, list) and e and isinstance(e[0], str) for e in vocab):
        ids = {entry[0]: i for i, entry in enumerate(vocab)}  # Unigram: [token, score] in id order
    else:
        raise HFTokenizerError(f"{TOKENIZER}: model.vocab is not a vocabulary")
    added = doc.get("added_tokens") or []
    for t in added:
        if not (isinstance(t, dict) and isinstance(t.get("id"), int) and isinstance(t.get("content"), str)):
            raise HFTokenizerError(f"{TOKENIZER}: added_tokens entry {t!r} has no id and content")
        ids[t["content"]] = t["id"]
    if not ids or min(ids.values()) < 0:
        raise HFTokenizerError(f"{TOKENIZER}: no tokens, or negative ids")
    return Vocabulary(ids, max(ids.values()) + 1, model, added)


def _ids(value, where: str) -> list[int]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise HFTokenizerError(f"{where} must be a token id or a list of them, got {value!r}")
    return values


def _token_id(token, vocab: Vocabulary, where: str) -> Optional[int]:
    text = token.get("content") if isinstance(token, dict) else token
    if text is None:
        return None
    if text not in vocab.ids:
        raise HFTokenizerError(f"{where} {text!r} is not a token of {TOKENIZER}")
    return vocab.ids[text]


def special_tokens(config: dict, generation: Optional[dict], tokenizer_config: Optional[dict], vocab: Vocabulary) -> SpecialTokens:
    """EOS ids: generation_config.json's, else config.json's, else tokenizer_config.json's eos_token.
    BOS id: the same order. Every id any of them names must be in tokenizer.json."""
    present = set(vocab.ids.values())
    named: dict[str, dict[str, list[int]]] = {}
    for file, doc in ((GENERATION_CONFIG, generation), ("config.json", config)):
        for key in ("eos_token_id", "bos_token_id"):
            if doc is not None and doc.get(key) is not None:
                ids = _ids(doc[key], f"{file}: {key}")
                missing = [i for i in ids if i not in present]
                if missing:
                    raise HFTokenizerError(f"{file}: {key} {missing[0]} is not a token of {TOKENIZER} ({vocab.size} ids)")
                named.setdefault(key, {})[file] = ids
    tc = tokenizer_config or {}
    config_eos = _token_id(tc.get("eos_token"), vocab, f"{TOKENIZER_CONFIG}: eos_token")
    config_bos = _token_id(tc.get("bos_token"), vocab, f"{TOKENIZER_CONFIG}: bos_token")
    eos = named.get("eos_token_id", {})
    eos_ids = eos.get(GENERATION_CONFIG) or eos.get("config.json") or ([config_eos] if config_eos is not None else [])
    if not eos_ids:
        raise HFTokenizerError(f"no end-of-sequence token: config.json, {GENERATION_CONFIG} and {TOKENIZER_CONFIG} name none")
    bos = named.get("bos_token_id", {})
    bos_ids = bos.get(GENERATION_CONFIG) or bos.get("config.json") or ([config_bos] if config_bos is not None else [None])
    add_bos = tc.get("add_bos_token")
    return SpecialTokens(list(dict.fromkeys(eos_ids)), bos_ids[0], add_bos if isinstance(add_bos, bool) else None)
