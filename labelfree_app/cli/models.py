"""`labelfree models`: list, install, remove, inspect, choose defaults, import and export models."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable


def _list(registry: Any, args: argparse.Namespace) -> None:
    entries = registry.list()
    if getattr(args, "json", False):
        print(json.dumps([e.to_json_dict() for e in entries], indent=2))
    else:
        if not entries:
            print("No models installed. Install one with: labelfree models install PATH")
        for e in entries:
            flag = "*" if e.default else " "
            demo = " (demo)" if e.demo else ""
            print(f"{flag} {e.id:32s} {e.kind:9s} {e.dims}D in={e.input_channels:<3d} {e.target}{demo} [{e.source}]")
    for problem in registry.problems:
        print(f"warning: {problem}", file=sys.stderr)


def _install(registry: Any, args: argparse.Namespace) -> None:
    entry = registry.install(Path(args.path), overwrite=args.overwrite)
    print(f"Installed {entry.id} ({entry.kind}, {entry.target}).")


def _remove(registry: Any, args: argparse.Namespace) -> None:
    registry.remove(args.id)
    print(f"Removed {args.id}.")


def _info(registry: Any, args: argparse.Namespace) -> None:
    """The manifest as JSON on stdout (for tools), the card's trust part for people on stderr."""
    from labelfree_app.training.model_card import trust_card_lines

    manifest = registry.get(args.id).manifest.to_dict()
    print(json.dumps(manifest, indent=2))
    print("\n".join(trust_card_lines(manifest)), file=sys.stderr)


def _default(registry: Any, args: argparse.Namespace) -> None:
    registry.set_default(args.target, args.id)
    print(f"{args.id} is now the default model for {args.target}.")


def _import_fnet(registry: Any, args: argparse.Namespace) -> None:
    from labelfree_app.models.fnet_import import import_fnet_model

    out = import_fnet_model(Path(args.model_p), Path(args.train_options) if args.train_options else None,
                            Path(args.out), model_id=args.id, name=args.name or args.id, target=args.target)
    print(out)


def _export_bioimageio(registry: Any, args: argparse.Namespace) -> None:
    from labelfree_app.models.bioimageio_export import export_bioimageio

    out = export_bioimageio(registry.resolve(args.model), Path(args.out), license=args.license,
                            authors=args.author or ("LabelFree",), overwrite=args.overwrite)
    print(out)


def _import_bioimageio(registry: Any, args: argparse.Namespace) -> None:
    from labelfree_app.models.bioimageio_import import import_bioimageio, install_bioimageio

    if args.out:
        print(import_bioimageio(Path(args.path), Path(args.out), model_id=args.id, overwrite=args.overwrite))
    else:
        entry = install_bioimageio(Path(args.path), registry, model_id=args.id, overwrite=args.overwrite)
        print(f"Installed {entry.id} ({entry.kind}, {entry.target}).")


ACTIONS: dict[str | None, Callable[[Any, argparse.Namespace], None]] = {
    None: _list, "list": _list, "install": _install, "remove": _remove, "info": _info, "default": _default,
    "import-fnet": _import_fnet, "export-bioimageio": _export_bioimageio, "import-bioimageio": _import_bioimageio,
}


def cmd_models(args: argparse.Namespace) -> int:
    """Run one `models` action on the installed models (`labelfree models` alone lists them)."""
    from labelfree_app.models.registry import ModelRegistry

    ACTIONS[args.models_action](ModelRegistry(), args)
    return 0


def register(sub: Any) -> None:
    """Add `models` and its actions to the `labelfree` subcommand parser."""
    m = sub.add_parser("models", help="list, install, remove and inspect models")
    msub = m.add_subparsers(dest="models_action")
    ml = msub.add_parser("list", help="list installed models")
    ml.add_argument("--json", action="store_true")
    mi = msub.add_parser("install", help="install a model package (folder or .zip)")
    mi.add_argument("path")
    mi.add_argument("--overwrite", action="store_true")
    mr = msub.add_parser("remove", help="remove a user-installed model")
    mr.add_argument("id")
    mn = msub.add_parser("info", help="print a model's manifest (and its trust part on stderr)")
    mn.add_argument("id")
    md = msub.add_parser("default", help="make a model the default for its target")
    md.add_argument("target")
    md.add_argument("id")
    mf = msub.add_parser("import-fnet", help="convert a pytorch_fnet model (model.p) to a LabelFree package")
    mf.add_argument("model_p")
    mf.add_argument("--train-options")
    mf.add_argument("--out", required=True)
    mf.add_argument("--id", required=True)
    mf.add_argument("--name")
    mf.add_argument("--target", required=True)
    mb = msub.add_parser("export-bioimageio", help="export a U-Net as a bioimage.io model zip (needs [bioimageio])")
    mb.add_argument("model", help="model id or package path")
    mb.add_argument("--out", required=True, help="the .zip to write")
    mb.add_argument("--license", help="SPDX license id (default: the model's own)")
    mb.add_argument("--author", action="append", help="author name (repeatable)")
    mb.add_argument("--overwrite", action="store_true")
    mbi = msub.add_parser("import-bioimageio", help="import a bioimage.io model (zip or folder; needs [bioimageio])")
    mbi.add_argument("path")
    mbi.add_argument("--id", help="model id to install it under")
    mbi.add_argument("--out", help="write the LabelFree package here instead of installing it")
    mbi.add_argument("--overwrite", action="store_true")
    m.set_defaults(func=cmd_models)
