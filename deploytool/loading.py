"""Model specs -> an eval-mode nn.Module with its input specs, preprocessing and labels.

Specs: `zoo:NAME`, `torchvision:NAME`, `pkg.module:factory`, `path/to/file.py:factory`, `program.pt2`.
A `file.py:factory` spec runs that file's code, by design: only point it at code you trust.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploytool.config import InputSpec, Preprocess
from deploytool.errors import ModelLoadError, UsageError, did_you_mean


@dataclass
class Loaded:
    module: Any  # torch.nn.Module in eval mode
    spec: str
    input_names: tuple[str, ...]
    inputs: tuple[InputSpec, ...] = ()  # known shapes; empty until data or config gives them
    preprocess: Preprocess | None = None
    labels: tuple[str, ...] = ()
    zoo_entry: Any = None
    fingerprint_parts: list[bytes] = field(default_factory=list)
    from_factory: bool = False  # another project's module: prepare picks its inputs (deploytool.normalize)

    def fingerprint(self) -> str:
        """Hash of the spec, the weights and the source of every module class: changes when the model does."""
        digest = hashlib.sha256(self.spec.encode())
        for part in self.fingerprint_parts:
            digest.update(part)
        for name, tensor in sorted(self.module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        # One getsource per class, not per module instance: it re-parses the class's whole file each time.
        for source in sorted({_source_of(cls) for cls in {type(m) for m in self.module.modules()}}):
            digest.update(source.encode())
        return digest.hexdigest()


def load(spec: str, *, base_dir: Path = Path("."), weights: str | None = None,
         trust_checkpoint: bool = False) -> Loaded:
    """Resolve a model spec.

    >>> loaded = load("zoo:digits")
    >>> loaded.module(torch.zeros(1, 1, 8, 8)).shape
    torch.Size([1, 10])
    """
    kind, _, name = spec.partition(":")
    if spec.endswith(".pt2"):
        loaded = _load_program((base_dir / spec).resolve())
    elif kind == "zoo":
        loaded = _load_zoo(name, weights=(base_dir / weights).resolve() if weights else None, trust=trust_checkpoint)
    elif kind == "torchvision":
        loaded = _load_torchvision(name)
    elif kind.endswith(".py") and name:
        loaded = _load_factory(spec, _import_file(base_dir / kind), name)
        # One file named relatively (quantize) or absolutely (export replaying the record) is one model: same cache key.
        loaded.spec = f"{(base_dir / kind).resolve()}:{name}"
    elif name and "." not in name and "/" not in kind:
        loaded = _load_factory(spec, _import_module(kind), name)
    else:
        raise UsageError(f"Cannot read model spec '{spec}'.",
                         hint="Use zoo:NAME, torchvision:NAME, pkg.module:factory, path/to/file.py:factory "
                              "or a saved program.pt2.")
    if weights and kind != "zoo":  # a zoo entry loads them itself, in place of its own
        path = (base_dir / weights).resolve()
        load_weights(loaded.module, path, trust=trust_checkpoint)
        loaded.fingerprint_parts.append(path.read_bytes())
    return loaded


def load_weights(module, path: Path, *, trust: bool = False) -> None:
    """Load a state_dict or checkpoint by name, reporting missing, unexpected and mis-shaped keys."""
    import pickle

    import torch

    if not path.is_file():
        raise ModelLoadError(f"Weights file {path} does not exist.", hint="Check the --weights path.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        # torch's message opens with advice to turn weights_only off: never repeat that, name the global instead.
        globals_named = re.findall(r"(?:[Uu]nsupported global:? (?:GLOBAL )?|GLOBAL )([\w.]+)", str(exc))
        if not globals_named:  # nothing asked for code to run: the bytes are not a checkpoint
            raise ModelLoadError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0][:200]}).") from None
        name = globals_named[0]
        blocked = " torch blocks that module outright: no trainer writes it into a checkpoint." \
            if "is blocked" in str(exc) else ""
        raise ModelLoadError(
            f"{path} needs full pickle to load: it asks for {name}, which pickle would run; it was refused under "
            f"weights_only=True.{blocked}",
            hint="Do not load this file." if blocked else
                 "Re-save it as a plain state_dict (torch.save(model.state_dict(), ...)); only if you made the file "
                 "yourself, pass --trust-checkpoint.") from None
    except (RuntimeError, EOFError, OSError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]  # an empty file raises a bare EOFError
        raise ModelLoadError(f"{path}: not a readable checkpoint ({first}).") from None
    state = _unwrap_checkpoint(state, path)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in sorted(set(state) & set(expected)) if tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mis_shaped:
        lines = [f"{path} does not fit the model:"]
        for title, names in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mis_shaped)):
            if names:
                shown = ", ".join(names[:8]) + (f" (+{len(names) - 8} more)" if len(names) > 8 else "")
                lines.append(f"  {title} ({len(names)}): {shown}")
        raise ModelLoadError("\n".join(lines), hint="Check that the checkpoint was saved from this architecture; "
                             "a 'module.' prefix from DataParallel is stripped automatically.")
    module.load_state_dict(state)


def _unwrap_checkpoint(state: Any, path: Path) -> dict[str, Any]:
    if isinstance(state, dict) and not all(hasattr(v, "shape") for v in state.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise ModelLoadError(f"{path} holds {type(state).__name__}, not a state_dict of tensors.",
                             hint="Save weights with torch.save(model.state_dict(), path).")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _load_zoo(name: str, *, weights: Path | None, trust: bool) -> Loaded:
    from deploytool.registry import zoo

    entry = zoo().get(name).load()
    module = entry.instantiate(weights, trust=trust)  # user or cached weights replace the entry's own
    return Loaded(module, f"zoo:{name}", tuple(i.name for i in entry.inputs), entry.inputs,
                  entry.preprocess, entry.labels, zoo_entry=entry)


def _load_torchvision(name: str) -> Loaded:
    from deploytool.torchvision_compat import import_torchvision

    models = import_torchvision().models
    known = models.list_models(module=models)
    if name not in known:
        raise UsageError(f"Unknown torchvision model '{name}'. {did_you_mean(name, known)}")
    module = models.get_model(name, weights=None).eval()
    categories = _imagenet_categories(models, name)
    # No preprocessing of its own: prepare's ImageNet default, fitted to --input-shape when one is given.
    return Loaded(module, f"torchvision:{name}", ("x",), (InputSpec("x", (1, 3, 224, 224)),), None, categories)


def _imagenet_categories(models, name: str) -> tuple[str, ...]:
    """Class names from the weights' metadata (shipped in the package, no download)."""
    try:
        weights = models.get_model_weights(name)
        return tuple(next(iter(weights)).meta.get("categories") or ())
    except (ValueError, StopIteration, KeyError):
        return ()


def _import_file(path: Path):
    """Import a user's file as `python file.py` would see it: registered in sys.modules (dataclasses and strict
    torch.export look classes up there) and with its folder on sys.path for the whole run (build() and
    forward() may import neighbours late)."""
    path = path.resolve()
    if not path.is_file():
        raise ModelLoadError(f"Model file {path} does not exist.", hint="Check the path before ':factory'.")
    third_party_imports_ready()
    module_name = _module_name(path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # where `python file.py` puts it
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # user code may raise anything while importing
        if previous is None:
            sys.modules.pop(module_name, None)
        else:
            sys.modules[module_name] = previous
        raise import_failure(f"Importing {path} failed", exc, hint=f"Run `python {path}` to see the full error; "
                                                                  "add -v for the traceback.") from exc
    return module


def third_party_imports_ready() -> None:
    """Before a user's code runs: torchvision importable (transformers and timm import it), whatever the build
    deploytool's own install brought (deploytool.torchvision_compat)."""
    if importlib.util.find_spec("torchvision") is not None:
        from deploytool.torchvision_compat import import_torchvision

        import_torchvision()


def import_failure(what: str, exc: BaseException, *, hint: str) -> ModelLoadError:
    """`what` failed, naming the innermost cause (transformers wraps a failed import of its own in a RuntimeError
    that hides it) and, for a missing package, the pip command."""
    cause = exc
    while cause.__cause__ is not None or (cause.__context__ is not None and not cause.__suppress_context__):
        cause = cause.__cause__ or cause.__context__
    first = lambda e: (str(e).strip().splitlines() or [""])[0][:300]  # noqa: E731
    message = f"{what}: {type(exc).__name__}: {first(exc)}"
    if cause is not exc:
        message += f" (caused by {type(cause).__name__}: {first(cause)})"
    if isinstance(cause, ModuleNotFoundError) and cause.name:
        hint = f"Install the missing package (pip install {cause.name.split('.')[0]}). {hint}"
    return ModelLoadError(message, hint=hint)


def _module_name(path: Path) -> str:
    """The file's stem (`model` for model.py), as a neighbour's `import model` names it; a hashed name when the
    stem already names another module (an installed package, or another folder's model.py in this process)."""
    stem = path.stem
    taken = sys.modules.get(stem)
    if taken is not None:
        own = getattr(taken, "__file__", None) and Path(taken.__file__).resolve() == path
    else:
        try:
            found = importlib.util.find_spec(stem)
        except (ImportError, ValueError):  # a stem like "a.b" or a broken package of that name
            found = None
        own = found is None or (found.origin is not None and Path(found.origin).resolve() == path)
    if own and stem.isidentifier():
        return stem
    return f"deploytool_user_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}_{stem}"


def _import_module(name: str):
    third_party_imports_ready()
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise import_failure(f"Cannot import module '{name}'", exc,
                             hint="Install the package or run from the folder that contains it.") from exc


def load_callable(spec: str, *, base_dir: Path, what: str) -> Any:
    """The function a `file.py:fn` or `pkg.module:fn` spec names (a file's code runs, as for a model).

    >>> load_callable("metric.py:pitch_accuracy", base_dir=Path("."), what="metric").__name__
    'pitch_accuracy'
    """
    file, _, name = spec.rpartition(":")
    namespace = _import_file(base_dir / file) if file.endswith(".py") else _import_module(file)
    function = getattr(namespace, name, None)
    if not callable(function):
        known = [n for n, v in vars(namespace).items() if callable(v) and not n.startswith("_")]
        raise ModelLoadError(f"The {what} '{name}' is not a function in {file}. {did_you_mean(name, known)}")
    return function


def _load_factory(spec: str, namespace, factory_name: str) -> Loaded:
    import torch

    factory = getattr(namespace, factory_name, None)
    if not callable(factory):
        known = [n for n, v in vars(namespace).items() if callable(v) and not n.startswith("_")]
        raise ModelLoadError(f"'{factory_name}' is not a callable in {spec.rpartition(':')[0]}. "
                             f"{did_you_mean(factory_name, known)}")
    try:
        result = factory()
    except Exception as exc:  # the user's factory may raise anything
        raise ModelLoadError(f"The model factory {spec} raised {type(exc).__name__}: {exc}",
                             hint="Fix the factory; add -v for the traceback.") from exc
    example = None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.nn.Module):
        result, example = result
    if not isinstance(result, torch.nn.Module):
        raise ModelLoadError(f"The model factory {spec} returned {type(result).__name__}, not a torch.nn.Module.",
                             hint="Return the module, or (module, example_inputs).")
    names = _forward_input_names(result)
    inputs: tuple[InputSpec, ...] = ()
    if example is not None:
        example = example if isinstance(example, tuple) else (example,)
        inputs = tuple(InputSpec(n, tuple(t.shape), str(t.dtype).removeprefix("torch."))
                       for n, t in zip(names, example))
    source = inspect.getsourcefile(factory) if inspect.isfunction(factory) else None
    parts = [Path(source).read_bytes()] if source else []
    return Loaded(result.eval(), spec, names, inputs, fingerprint_parts=parts, from_factory=True)


def _load_program(path: Path) -> Loaded:
    from deploytool.program_file import UnsafeProgram, read_program

    if not path.is_file():
        raise ModelLoadError(f"Program {path} does not exist.")
    try:
        program = read_program(path)
    except UnsafeProgram:
        raise
    except Exception as exc:  # a damaged archive raises from deep inside the loader
        raise ModelLoadError(f"{path}: not a loadable torch.export program ({type(exc).__name__}: "
                             f"{str(exc)[:200]}).", hint="Save programs with torch.export.save(ep, path).") from exc
    names = tuple(spec.arg.name for spec in program.graph_signature.input_specs if spec.kind.name == "USER_INPUT")
    inputs = tuple(InputSpec(n, tuple(int(d) for d in v.shape), str(v.dtype).removeprefix("torch."))
                   for n, v in zip(names, program.example_inputs[0])) if program.example_inputs else ()
    return Loaded(program.module(), str(path), names, inputs, fingerprint_parts=[path.read_bytes()])


def _forward_input_names(module) -> tuple[str, ...]:
    parameters = inspect.signature(module.forward).parameters.values()
    return tuple(p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _source_of(cls: type) -> str:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        return cls.__qualname__
