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
    blend = getattr(meta, "blend", None)
    if isinstance(blend, dict) and isinstance(blend.get("weights"), list):
        weights = blend["weights"]
        leaning = sorted(zip(weights, meta.labels))[:3]
        named = ", ".join(f"{label} {w:.2f}" for w, label in leaning if w < 1)
        lines.append(f"Blend: {sum(w < 1 for w in weights)} of {len(weights)} labels mix the TF-IDF + linear SVM "
                     f"baseline's scores into the model's, where that helped on dev (model weight, lowest first: "
                     f"{named}; `--blend off`, the default, trains without).")
    elif choices:
        args = getattr(meta, "training_args", None) or {}
        lines.append("Blend: none; the model alone scored at least as well as any mix with the baseline on dev."
                     if args.get("blend") == "on" and args.get("baseline") is not False else
                     "Blend: off (the default; `--blend on` mixes the linear baseline in where that helps on dev).")
    calibration = getattr(meta, "calibration", None)
    if isinstance(calibration, dict) and isinstance(calibration.get("temperatures"), list):
        moved = sum(abs(t - 1) > 1e-3 for t in calibration["temperatures"])
        lines.append(f"Calibration: {moved} of {len(calibration['temperatures'])} labels' scores temperature-scaled "
                     f"on dev (dev expected calibration error {calibration.get('dev_ece_before', '—')}% → "
                     f"{calibration.get('dev_ece_after', '—')}%); thresholds tuned on the calibrated scores "
                     "(`--calibration off`: raw scores).")
    elif choices:
        lines.append("Calibration: none (raw scores; temperature scaling did not lower dev's calibration error, or "
                     "`--calibration off`).")
    return lines


__all__ = ["describe_choices"]
