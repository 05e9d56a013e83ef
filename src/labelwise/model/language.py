"""Which offline encoder suits a set of texts: the one for their script.

When no ``model_name`` is given, ``train``, ``train --few_shot``, ``zeroshot``, ``index`` and ``select``'s cold
start ask :func:`pick_encoder`: texts written mostly in Chinese characters get m3e-small, everything else (Latin and other scripts)
all-minilm-l6-v2. A mixed set gets its majority's encoder, with a warning naming the shares. The choice and
its reason are recorded in the checkpoint (``labelwise.json``'s ``choices``) and its model card.
"""
from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from typing import Iterable

log = logging.getLogger("labelwise")

CJK_ENCODER, OTHER_ENCODER = "m3e-small", "all-minilm-l6-v2"
SAMPLE = 5000  # texts read to decide (the first ones; enough for a share to the percent)
MIXED_SHARE = 0.1  # a minority script above this share of the texts is warned about


def is_cjk(char: str) -> bool:
    """A Chinese (Han) character, including the compatibility and extension blocks."""
    return unicodedata.category(char) == "Lo" and "CJK" in unicodedata.name(char, "")


def text_script(text: str) -> str | None:
    """``cjk`` when Han characters are at least as many as the other letters, ``other`` when letters of other
    scripts win, None for a text without letters (digits, punctuation, emoji)."""
    cjk = other = 0
    for char in text:
        if char.isalpha():
            if is_cjk(char):
                cjk += 1
            else:
                other += 1
    if not cjk and not other:
        return None
    return "cjk" if cjk >= other else "other"


@dataclass
class EncoderChoice:
    model_name: str
    reason: str
    cjk_share: float  # of the texts that have letters

    @property
    def mixed(self) -> bool:
        """Both scripts above ``MIXED_SHARE`` of the texts: the choice is warned about."""
        return min(self.cjk_share, 1 - self.cjk_share) > MIXED_SHARE

    def to_json(self) -> dict:
        return {"model_name": self.model_name, "reason": self.reason, "cjk_share": round(self.cjk_share, 4)}


def choose_encoder(texts: Iterable[str], what: str = "the training texts") -> EncoderChoice:
    """The offline encoder for ``texts`` by their script (see the module's docstring), with its reason."""
    counts = {"cjk": 0, "other": 0}
    for i, text in enumerate(texts):
        if i >= SAMPLE:
            break
        script = text_script(text)
        if script:
            counts[script] += 1
    total = counts["cjk"] + counts["other"]
    cjk_share = counts["cjk"] / total if total else 1.0
    name = CJK_ENCODER if cjk_share >= 0.5 else OTHER_ENCODER
    choice = EncoderChoice(name, "", cjk_share)
    if not total:
        reason = f"{what} have no letters to tell a language by; {CJK_ENCODER} is the fallback"
    elif choice.mixed:
        reason = (f"{what} are mixed: {100 * cjk_share:.0f}% mostly Chinese characters, "
                  f"{100 * (1 - cjk_share):.0f}% other scripts; the majority's encoder")
    else:
        script = "mostly Chinese characters" if name == CJK_ENCODER else "in Latin or other non-Chinese scripts"
        share = cjk_share if name == CJK_ENCODER else 1 - cjk_share
        reason = f"{100 * share:.0f}% of {what} are {script}"
    choice.reason = reason
    return choice


def pick_encoder(model_name: str | None, texts: Iterable[str], what: str = "the training texts"
                 ) -> tuple[str, EncoderChoice | None]:
    """``model_name`` when given (it always wins); else the encoder for the texts' script, said in one line
    (a warning for mixed data). Returns (name, the choice or None when the user named the model)."""
    if model_name:
        return model_name, None
    choice = choose_encoder(texts, what)
    (log.warning if choice.mixed else log.info)(
        "encoder %s: %s (--model_name picks another)", choice.model_name, choice.reason)
    return choice.model_name, choice


__all__ = ["CJK_ENCODER", "OTHER_ENCODER", "EncoderChoice", "choose_encoder", "pick_encoder", "text_script"]
