"""Dataset folders (train/dev/test/label/data files), annotation-tool import and export, splits."""
