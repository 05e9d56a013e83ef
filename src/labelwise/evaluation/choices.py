"""What the training defaults chose for a model, in sentences: for the model card, ``evaluate --report`` and logs.

``labelwise train`` records its choices in ``labelwise.json`` (``choices``: the encoder and why, how long texts
are read); this module only puts them in words.
"""
from __future__ import annotations


def describe_choices(meta) -> list[str]:
    """What the defaults chose for a model (``meta.choices``, written by ``train``), one sentence each: for the
    model card, ``evaluate --report`` and the log."""
    choices = getattr(meta, "choices", None) or {}
    lines = []
    encoder = choices.get("encoder")
    if isinstance(encoder, dict):
        lines.append(f"Encoder `{encoder.get('model_name')}`, chosen because {encoder.get('reason')} "
                     "(`--model_name` picks another).")
    reading = choices.get("reading")
    long_text = getattr(meta, "long_text", "truncate")
    how = (f"long texts are read in overlapping windows of {meta.max_seq_length} tokens and each label's logit is "
           f"the {getattr(meta, 'window_pool', 'max')} of the windows', in training and prediction alike"
           if long_text == "slide" else f"texts are cut at {meta.max_seq_length} tokens")
    if isinstance(reading, dict):
        lines.append(f"Reading: {how}; {reading.get('texts')} training texts made {reading.get('windows')} "
                     f"{'windows' if long_text == 'slide' else 'rows'} ({reading.get('reason')}).")
    else:
        lines.append(f"Reading: {how}.")
    return lines


__all__ = ["describe_choices"]
