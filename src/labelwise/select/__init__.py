"""Active learning: which texts to annotate next (``labelwise select``), sent to doccano or Label Studio with the
model's guesses as pre-annotations, and the annotated texts merged back into train.txt."""
