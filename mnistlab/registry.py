"""The model registry: one table of plain-data entries (builder, recipes, source, floor) that every
reader uses, the zoo's and the user's alike; `register_model` adds to it, and `load_models_from`
imports a user's Python file or module that registers models.

Nothing here imports TensorFlow: the zoo (mnistlab.zoo) names its builders as "module:qualname"
strings, imported when a model is first built. A user's builder is any callable
`build(input_shape=(28, 28), num_classes=10, **settings) -> keras.Model`, registered with
`@register_model("name", recipe={...})` in a file passed as `--models-from FILE` (run-all, sweeps,
Dask workers and notebooks executed by papermill import it there too), or in a notebook cell (then
it trains only in that kernel).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.util
import types
import inspect
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

OUTPUTS = ("probabilities", "logits")
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Settings a recipe may not set: they say which model and which run, not how to train it.
NOT_IN_RECIPES = ("model", "recipe", "seed", "models_from")
# Where a model file given by its path as the client wrote it is found in this process (a Dask worker's
# copy, or the absolute path the client resolved): JSON {given: path}, set for the kernels a task starts.
LOCATIONS_ENV = "MNISTLAB_MODELS_LOCATIONS"
USER_MODULE_PREFIX = "mnistlab_user_models"
FIX_MODELS_FROM = ("put it in a Python file that calls mnistlab.register_model, and pass --models-from FILE "
                   "(run_all(..., models_from=['FILE']) in Python)")


class ModelsFromError(ValueError):
    """A model file or module could not be used: one line naming it, the line at fault and the fix.
    `details` holds the traceback, for a log file rather than the console."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """Everything mnistlab knows about one model, as plain data.

    `builder` is a callable or a "module:qualname" string (imported when first built);
    `recipe` maps TrainConfig fields to mnistlab's training settings for the model, and
    `article_recipe` to its source article's exact settings (None: the source states none beyond
    `recipe`); `reported_accuracy` is the test accuracy the source states; `floor` the test
    accuracy mnistlab's recipe must reach as the mean of three seeds; `outputs` says whether the
    builder's model ends in probabilities (softmax) or logits; `builder_settings` are config keys
    passed to the builder as keyword arguments; `origin` is None for mnistlab's zoo, else where
    the entry was registered: {"kind": "file", "given", "path", "sha256"}, {"kind": "module",
    "module", "path", "sha256"} or {"kind": "session"} (a notebook cell or `__main__`).
    """

    name: str
    builder: Callable | str
    recipe: Mapping = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    article_recipe: Mapping | None = None
    source: str = ""
    reported_accuracy: float | None = None
    floor: float | None = None
    outputs: str = "probabilities"
    builder_settings: tuple[str, ...] = ()
    origin: Mapping | None = None

    @property
    def builder_name(self) -> str:
        """"module:qualname" of the builder (what config.json records)."""
        if isinstance(self.builder, str):
            return self.builder
        return f"{self.builder.__module__}:{self.builder.__qualname__}"

    def build_fn(self) -> Callable:
        """The builder callable (importing a "module:qualname" reference the first time)."""
        if not isinstance(self.builder, str):
            return self.builder
        module, _, qualname = self.builder.partition(":")
        target = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
        return target

    def recipe_for(self, name: str = "mnistlab") -> dict:
        """The overrides of recipe `name`: "mnistlab" (this model's recipe) or "article" (its source's)."""
        if name == "article" and self.article_recipe is not None:
            return dict(self.article_recipe)
        return dict(self.recipe)

    @property
    def portable(self) -> bool:
        """Whether another process (a papermill kernel, a Dask worker) can import this entry."""
        return self.origin is None or self.origin.get("kind") in ("file", "module")

    @property
    def where(self) -> str:
        """Where the entry comes from, in words: "mnistlab's zoo", a file's path, a module, "this session"."""
        if self.origin is None:
            return "mnistlab's zoo"
        kind = self.origin.get("kind")
        if kind == "file":
            return str(self.origin.get("given") or self.origin.get("path"))
        if kind == "module":
            return f"module {self.origin.get('module')}"
        return "this Python session (a notebook cell or script)"

    @property
    def models_from(self) -> str | None:
        """What `--models-from` must name for another process to import this entry (None: the zoo)."""
        if self.origin is None or self.origin.get("kind") == "session":
            return None
        return self.origin.get("given") or self.origin.get("module")


REGISTRY: dict[str, ModelEntry] = {}
# Named sets for `run-all --models`, filled by mnistlab.zoo ("core", "all").
GROUPS: dict[str, tuple[str, ...]] = {}
_loading: list[dict] = []  # the origin of the file or module being loaded by load_models_from
_loaded: dict[str, tuple] = {}  # source as given -> ((mtime_ns, size) of the file, origin)


def _check_recipe(name: str, recipe: Mapping | None, what: str) -> MappingProxyType | None:
    if recipe is None:
        return None
    from mnistlab.config import check_overrides

    if not isinstance(recipe, Mapping):
        raise ValueError(f"model {name!r}: {what} must be a mapping of config keys to values, got {recipe!r}")
    fixed = sorted(set(recipe) & set(NOT_IN_RECIPES))
    if fixed:
        raise ValueError(f"model {name!r}: {what} sets {', '.join(fixed)}, which a recipe cannot set (they say which "
                         "model and which run, not how to train it); leave them out")
    try:
        return MappingProxyType(check_overrides(dict(recipe)))
    except ValueError as e:
        raise ValueError(f"model {name!r}: {what}: {e}") from None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _origin_of(builder) -> dict | None:
    """Where a builder comes from: the file being loaded, mnistlab's zoo (None), an importable
    module, or this session."""
    if _loading:
        return dict(_loading[-1])
    module_name = builder.partition(":")[0] if isinstance(builder, str) else getattr(builder, "__module__", None)
    if module_name and (module_name == "mnistlab" or module_name.startswith("mnistlab.")):
        return None
    module = sys.modules.get(module_name or "")
    path = getattr(module, "__file__", None)
    if module_name in (None, "__main__", "builtins") or not path or not str(path).endswith(".py"):
        return {"kind": "session"}
    return {"kind": "module", "module": module_name, "path": str(Path(path).resolve()), "sha256": _sha256(Path(path))}


def _builder_settings(builder) -> tuple[str, ...]:
    """Config keys a callable builder takes as keyword arguments (e.g. batch_norm_momentum)."""
    from mnistlab.config import FIELDS

    try:
        parameters = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return ()
    return tuple(p for p in parameters if p in FIELDS)


def register_model(name: str, builder: Callable | str | None = None, *, recipe: Mapping | None = None,
                   article_recipe: Mapping | None = None, source: str = "", reported_accuracy: float | None = None,
                   floor: float | None = None, outputs: str = "probabilities",
                   builder_settings: Iterable[str] | None = None, replace: bool = False):
    """Add a model to the registry; usable as a decorator or as a call:

        @register_model("lenet5", recipe={"epochs": 5, "learning_rate": 1e-3}, source="LeCun et al. 1998")
        def build_lenet5(input_shape=(28, 28), num_classes=10):
            return keras.Sequential([...])

        register_model("lenet5", build_lenet5, recipe={...})

    The builder returns an uncompiled keras.Model (Sequential, functional or subclassed) mapping
    (batch, *input_shape) float32 images in [0, 1] (mnistlab scales the pixels before it) to
    (batch, num_classes) probabilities, or logits with `outputs="logits"` (the loss then takes
    logits; the saved model.keras still ends in probabilities). `recipe`'s keys are checked like
    any config override; `builder_settings` (default: the builder's parameters that are config
    keys, e.g. batch_norm_momentum) are passed to the builder from the run's config.

    Raises ValueError for a name that is not a plain identifier, a name already taken (unless
    `replace`, or the same file or notebook cell registers it again), or a bad recipe key or value.
    Returns the builder (so the decorator leaves the function as it is).
    """
    if builder is None:
        return lambda fn: register_model(name, fn, recipe=recipe, article_recipe=article_recipe, source=source,
                                         reported_accuracy=reported_accuracy, floor=floor, outputs=outputs,
                                         builder_settings=builder_settings, replace=replace)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"model name {name!r} is not a plain identifier: use letters, digits and '_', "
                         "not starting with a digit (e.g. 'lenet5')")
    if name in GROUPS:
        raise ValueError(f"model name {name!r} is the name of a group of models ({', '.join(GROUPS)}); choose another")
    if not (callable(builder) or (isinstance(builder, str) and ":" in builder)):
        raise ValueError(f"model {name!r}: the builder must be a function returning a keras.Model, got {builder!r}")
    if outputs not in OUTPUTS:
        raise ValueError(f"model {name!r}: outputs={outputs!r} is unknown; use one of {', '.join(OUTPUTS)}")
    for value, what in ((reported_accuracy, "reported_accuracy"), (floor, "floor")):
        if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 1):
            raise ValueError(f"model {name!r}: {what} must be an accuracy in [0, 1] or None, got {value!r}")
    origin = _origin_of(builder)
    settings = tuple(builder_settings) if builder_settings is not None else (
        _builder_settings(builder) if callable(builder) else ())
    entry = ModelEntry(name=name, builder=builder, recipe=_check_recipe(name, recipe or {}, "recipe"),
                       article_recipe=_check_recipe(name, article_recipe, "article_recipe"), source=str(source),
                       reported_accuracy=reported_accuracy, floor=floor, outputs=outputs,
                       builder_settings=settings, origin=MappingProxyType(origin) if origin else None)
    taken = REGISTRY.get(name)
    if taken is not None and not replace and not _same_place(taken, entry):
        raise ValueError(f"a model named {name!r} is registered already (by {taken.where}); choose another name, "
                         "or pass replace=True to register_model")
    REGISTRY[name] = entry
    return builder


def _same_place(taken: ModelEntry, entry: ModelEntry) -> bool:
    """A file loaded again, or a notebook cell run again, registers its models anew."""
    if taken.origin is None or entry.origin is None:
        return False
    if taken.origin.get("kind") == "session":
        return entry.origin.get("kind") == "session" and taken.builder_name == entry.builder_name
    # The same file again, or a copy of it (a Dask worker's, the one a run recorded): same name, same bytes.
    return (taken.origin.get("path") == entry.origin.get("path")
            or (taken.origin.get("given") == entry.origin.get("given")
                and taken.origin.get("sha256") == entry.origin.get("sha256")))


def get_entry(name) -> ModelEntry:
    """The registry entry of model `name`; raises ValueError listing the known names."""
    entry = REGISTRY.get(name) if isinstance(name, str) else None
    if entry is None:
        hint = "" if _loaded else "; a model of your own? register it in a file and pass --models-from FILE"
        raise ValueError(f"No model named {name!r} found; known models: {', '.join(REGISTRY)}{hint}")
    return entry


def model_names() -> tuple[str, ...]:
    """Every registered model's name: the zoo's in its order, then the user's in registration order."""
    return tuple(REGISTRY)


def expand_model_names(names: str | list[str] | None) -> list[str]:
    """Model names from a list or a comma-separated string, with the groups ("core", "all": the
    zoo) expanded, duplicates dropped, order kept; None or empty gives "core".

    Raises ValueError naming an unknown model (and listing the known names and groups).
    """
    if isinstance(names, str):
        names = names.split(",")
    names = [n.strip() for n in names or [] if n.strip()] or ["core"]
    expanded: list[str] = []
    for name in names:
        if name not in GROUPS and name not in REGISTRY:
            try:
                get_entry(name)
            except ValueError as e:
                raise ValueError(f"{e}; groups: {', '.join(GROUPS)}") from None
        expanded += [m for m in GROUPS.get(name, (name,)) if m not in expanded]
    return expanded


def _locations() -> dict[str, str]:
    try:
        locations = json.loads(os.environ.get(LOCATIONS_ENV) or "{}")
    except json.JSONDecodeError:
        return {}
    return locations if isinstance(locations, dict) else {}


def is_file_source(source: str) -> bool:
    """Whether a --models-from value names a file (a path, or a name ending in .py) rather than a module."""
    return source.endswith(".py") or os.sep in source or "/" in source


def resolve_source(source: str, locations: Mapping[str, str] | None = None) -> Path:
    """The file a --models-from path stands for in this process: its entry in `locations` (or in
    $MNISTLAB_MODELS_LOCATIONS: a Dask worker's copy, the path the client resolved), else the
    path relative to the working directory."""
    located = {**_locations(), **(locations or {})}.get(source)
    return Path(located or source).expanduser().resolve()


def load_models_from(sources: Iterable[str], locations: Mapping[str, str] | None = None) -> list[str]:
    """Import each source (a Python file's path, or an importable module's name) so that the
    models it registers are in the registry; a source already loaded, and unchanged since, is not
    imported again. Returns the names of the models the sources registered.

    Raises ModelsFromError (a ValueError) with one line naming the file, the line at fault and
    the fix: a missing file, a file or module that fails to import, or one that registers no model.
    The traceback is kept in the error's `details`.
    """
    names = []
    for source in sources:
        if not isinstance(source, str) or not source.strip():
            raise ModelsFromError(f"models_from holds {source!r}: give a Python file's path or a module's name")
        if is_file_source(source):
            names += _load_file(source, resolve_source(source, locations))
        else:
            names += _load_module(source)
    return names


def _load_file(given: str, path: Path) -> list[str]:
    if not path.is_file():
        raise ModelsFromError(f"--models-from {given}: no such file ({path}); give the path of a Python file that "
                              "calls mnistlab.register_model, or the name of an importable module")
    stat = path.stat()
    cached = _loaded.get(given)
    if cached and cached[0] == (stat.st_mtime_ns, stat.st_size) and cached[1]["path"] == str(path):
        return [name for name, entry in REGISTRY.items() if entry.origin and entry.origin.get("path") == str(path)]
    origin = {"kind": "file", "given": given, "path": str(path), "sha256": _sha256(path)}
    # One module per file (files of one name in two folders stay apart), importable by name while
    # loaded: classes in it (custom layers) must be found by name when pickled or loaded by Keras.
    tag = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    module_name = f"{USER_MODULE_PREFIX}.{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{tag}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    if USER_MODULE_PREFIX not in sys.modules:  # the (empty) package the files' modules live in
        sys.modules[USER_MODULE_PREFIX] = types.ModuleType(USER_MODULE_PREFIX)
        sys.modules[USER_MODULE_PREFIX].__path__ = []
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module
    try:
        names = _run_registering(origin, lambda: spec.loader.exec_module(module), given, path)
    except ModelsFromError:
        if previous is not None:
            sys.modules[module_name] = previous
        else:
            sys.modules.pop(module_name, None)
        raise
    _loaded[given] = ((stat.st_mtime_ns, stat.st_size), origin)
    return names


def _load_module(name: str) -> list[str]:
    module = sys.modules.get(name)
    if module is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin or not str(spec.origin).endswith(".py"):
            raise ModelsFromError(f"--models-from {name}: no such file, and no importable module of that name; give "
                                  "the path of a Python file (e.g. my_models.py) or a module on the Python path")
        path = Path(spec.origin).resolve()
        origin = {"kind": "module", "module": name, "path": str(path), "sha256": _sha256(path)}
        return _run_registering(origin, lambda: importlib.import_module(name), name, path)
    _loaded.setdefault(name, ((0, 0), {"kind": "module", "module": name}))
    names = [n for n, e in REGISTRY.items() if e.origin and e.origin.get("module") == name]
    if not names:
        raise ModelsFromError(f"--models-from {name}: the module registers no model (imported before, without "
                              "calling mnistlab.register_model)")
    return names


def _run_registering(origin: dict, load: Callable[[], object], given: str, path: Path) -> list[str]:
    before = {name: entry for name, entry in REGISTRY.items()}
    _loading.append(origin)
    try:
        load()
    except ModelsFromError:
        raise
    except Exception as e:  # noqa: BLE001 -- the user's file: any error is reported as one line
        REGISTRY.clear()
        REGISTRY.update(before)
        raise ModelsFromError(f"--models-from {given}{_line_in(e, path)}: {type(e).__name__}: {e}; fix the file "
                              "(or its imports) and try again", traceback.format_exc()) from None
    finally:
        _loading.pop()
    names = [name for name, entry in REGISTRY.items()
             if entry.origin and entry.origin.get("path") == origin["path"]
             and (name not in before or before[name] is not entry)]
    if not names:
        raise ModelsFromError(f"--models-from {given}: it registers no model; decorate a builder with "
                              "@mnistlab.register_model(\"name\", recipe={...})")
    return names


def _line_in(error: BaseException, path: Path) -> str:
    """", line N" of the last frame of `error`'s traceback that is in `path` (or a syntax error's line)."""
    if isinstance(error, SyntaxError) and error.lineno:
        return f", line {error.lineno}"
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if Path(frame.filename).resolve() == path:
            line = frame.lineno
    return f", line {line}" if line else ""


@contextlib.contextmanager
def restored():
    """Restore the registry as it was when the block started (tests register models in it)."""
    saved, saved_loaded = dict(REGISTRY), dict(_loaded)
    try:
        yield
    finally:
        REGISTRY.clear()
        REGISTRY.update(saved)
        _loaded.clear()
        _loaded.update(saved_loaded)


from mnistlab import zoo as _zoo  # noqa: E402,F401 -- the zoo registers itself, the same way a user does
