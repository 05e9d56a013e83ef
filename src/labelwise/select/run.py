"""``labelwise select`` as one call: read the pool, open the model (if any), choose, write the tasks."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labelwise.data.dataset import load_dataset
from labelwise.data.tables import TableColumns, table_file
from labelwise.errors import LabelwiseError
from labelwise.files import check_outputs
from labelwise.predict.classifier import Classifier
from labelwise.select.pick import Selection, read_pool, select_next
from labelwise.select.stopping import HISTORY_FILE
from labelwise.select.strategies import STRATEGIES
from labelwise.select.tasks import FORMATS, write_tasks
from labelwise.settings import check_fields, same_setting, setting

__all__ = ["SelectConfig", "run_select"]


@dataclass
class SelectConfig:
    pool_file: str | None = setting(None, help="texts to choose from, one a line, or a dataset folder (its data.txt); "
                                               "default: --dataset_dir's data.txt")
    text_column: str | None = same_setting(TableColumns, "text_column")  # a CSV / JSONL / Parquet pool's (data.tables)
    num: int = setting(200, help="how many texts to choose", minimum=1)
    params_path: str | None = setting(None, help="the current model (checkpoint, export or index); none for a cold "
                                                 "start: the batch is then spread over --model_name's vector space")
    dataset_dir: str | None = setting(None, help="the dataset being built: its train/dev/test texts are skipped and "
                                                 "its label.txt must match the model")
    strategy: str = setting("auto", help="auto (with a model: each label in turn takes its most doubtful text; "
                                         "without: diversity), uncertainty, cardinality, diversity, random",
                            choices=STRATEGIES)
    output_file: str = setting("next.jsonl", help="the tasks to import into the annotation tool")
    format: str = setting("doccano", help="doccano (JSONL) or labelstudio (task JSON with predictions)",
                          choices=FORMATS)
    model_name: str | None = setting(None, help="encoder for a cold start (no --params_path); default: m3e-small for "
                                                "Chinese texts, all-minilm-l6-v2 for others")
    from_name: str = setting("label", help="labelstudio: name of the labelling config's Choices tag")
    to_name: str = setting("text", help="labelstudio: name of the labelling config's Text tag")
    seed: int = setting(3, help="random seed of the random strategy")
    batch_size: int = setting(32, help="texts per forward pass", minimum=1)
    device: str | None = setting(None, help="cpu | gpu | gpu:N (default: GPU when there is one)")
    overwrite: bool = setting(False, help="replace --output_file if it exists")
    history_file: str | None = setting(None, help="with a model: where each round's decisions on the pool are kept "
                                                  "for the stopping signal (default: <dataset_dir>/select_history.npz;"
                                                  " none: no signal)")
    progress: bool = setting(True, help="progress bars", cli=False)

    def pool_path(self) -> Path:
        """The pool's file: ``pool_file`` (a folder: its data.txt), else ``dataset_dir``'s data.txt."""
        path = Path(self.dataset_dir if self.pool_file is None else self.pool_file)
        if self.pool_file is None or path.is_dir():
            return table_file(path, "data.txt") or path / "data.txt"  # data.csv etc. where data.txt is missing
        return path

    def history(self) -> Path | None:
        """The stopping signal's history file (None: no signal)."""
        if self.history_file is not None:
            return None if self.history_file == "none" else Path(self.history_file)
        return Path(self.dataset_dir) / HISTORY_FILE if self.dataset_dir else None

    def validate(self) -> SelectConfig:
        check_fields(self)
        if self.pool_file is None and self.dataset_dir is None:
            raise LabelwiseError("no pool to choose from: pass `pool_file` (one text a line), or `dataset_dir` to "
                                 "use its data.txt")
        if self.params_path is None and self.strategy in ("uncertainty", "cardinality"):
            raise LabelwiseError(f"`strategy` {self.strategy} needs a model: pass `params_path`, or use auto / "
                                 "diversity / random for a cold start")
        return self


def run_select(cfg: SelectConfig) -> tuple[Selection, Path]:
    """Choose ``cfg.num`` texts of ``cfg.pool_file`` and write them as annotation tasks; (selection, file)."""
    cfg.validate()
    pool_path = cfg.pool_path()
    names = ("train.txt", "dev.txt", "test.txt", "label.txt", "data.txt")
    sources = [pool_path] + ([Path(cfg.dataset_dir) / name for name in names] if cfg.dataset_dir else [])
    check_outputs([cfg.output_file], sources, overwrite=cfg.overwrite)  # before any model runs
    pool = read_pool(pool_path, TableColumns(text_column=cfg.text_column))
    # a cold start may come before any train.txt: then only label.txt is needed, and nothing is skipped
    dataset = load_dataset(cfg.dataset_dir, require=()) if cfg.dataset_dir else None
    classifier = Classifier.load(cfg.params_path, device=cfg.device) if cfg.params_path else None
    selection = select_next(pool, cfg.num, strategy=cfg.strategy, classifier=classifier, dataset=dataset,
                            encoder=cfg.model_name, seed=cfg.seed, batch_size=cfg.batch_size, device=cfg.device,
                            progress=cfg.progress, source=pool_path, history=cfg.history())
    path = write_tasks(selection, cfg.output_file, cfg.format, overwrite=cfg.overwrite, from_name=cfg.from_name,
                       to_name=cfg.to_name)
    return selection, path
