"""The `labelfree` command line: predict, models, train, evaluate, devices, gui.

Every user error is a ``LabelFreeError``: the CLI prints its one sentence to stderr and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from labelfree_app import __version__
from labelfree_app.errors import FileAccessError, LabelFreeError
from labelfree_app.cli_options import RGB_CHOICES, add_predict_options, io_options, predict_settings
from labelfree_app.logfile import log_file_path, setup_logging

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool cut off by `head`


# --- predict ---------------------------------------------------------------------------------
def _predict_inputs(items: Sequence[str], out_dir: Path, *, z_stack: bool) -> list[Any]:
    """The inputs of `predict`, found as `batch` finds them; refused before any work when an item
    names no image, or when two inputs would write the same output names. With ``z_stack`` the
    files are the planes of one input, named after the first."""
    from labelfree_app.batch.plan import BatchInput, check_distinct_outputs, find_inputs

    inputs = find_inputs(items, exclude=out_dir, empty_folders=False)
    if not inputs:
        raise FileAccessError(f"The inputs are all inside the output folder {out_dir}; choose another output "
                              "folder.", path=out_dir)
    if z_stack:
        return [BatchInput(inputs[0].path, planes=tuple(entry.path for entry in inputs))]
    check_distinct_outputs(inputs)
    return inputs


def cmd_predict(args: argparse.Namespace) -> int:
    """`predict` is a batch of one per input: the same job (`batch.process.run_job`) as `batch`."""
    from tqdm import tqdm

    from labelfree_app.batch.local import prepare_output_folder
    from labelfree_app.batch.plan import BatchJob, ModelRef, model_ref, resolve_models
    from labelfree_app.batch.process import (
        BatchOptions,
        EngineCache,
        read_input,
        run_job,
    )
    from labelfree_app.core.events import Progress
    from labelfree_app.export import image_stem
    from labelfree_app.models.fit import InputFacts
    from labelfree_app.models.registry import ModelRegistry

    registry = ModelRegistry()
    named = resolve_models([args.model], registry)[0] if args.model else None
    chosen: dict[InputFacts, ModelRef] = {}  # the default is chosen once per kind of input

    def model_for(image: object) -> ModelRef:
        """The best installed model that fits this image."""
        facts = InputFacts.of(image)
        if facts not in chosen:
            chosen[facts] = model_ref(registry.get(registry.default_for(facts=facts).id))
            if not args.quiet:
                print(f"model: {chosen[facts].id} (the default for {facts.describe()})", file=sys.stderr)
        return chosen[facts]

    options = BatchOptions(settings=predict_settings(args), overwrite=True, save_steps=bool(args.save_steps),
                           rgb=RGB_CHOICES.get(args.rgb or "", "error"), **io_options(args))
    out_dir = Path(args.output)
    inputs = _predict_inputs(args.inputs, out_dir, z_stack=args.z_stack)
    prepare_output_folder(out_dir)
    engines = EngineCache()  # each model is loaded once
    failures = 0
    for index, entry in enumerate(inputs):
        image, model = None, named
        if model is None:  # the input decides the model, so read it here (the job reuses it)
            try:
                image = read_input(entry, options.rgb, options.position)
                model = model_for(image)
            except LabelFreeError as exc:
                failures += 1
                print(f"error: {exc}", file=sys.stderr)
                continue
        job = BatchJob(index, entry, model)
        bar = tqdm(total=1, desc=image_stem(entry.path), unit="step", leave=True,
                   disable=args.quiet)
        run = run_job(job, out_dir, options, engines, image=image)
        try:
            while True:
                event = next(run)
                if isinstance(event, Progress) and event.stage in ("tiles", "sampling"):
                    bar.total = event.total
                    bar.n = event.done
                    bar.set_postfix_str(event.message, refresh=False)
                    bar.refresh()
        except StopIteration as finished:
            row = finished.value
        finally:
            run.close()
            bar.close()
        if row.status != "done":
            failures += 1
            print(f"error: {row.error}", file=sys.stderr)
            continue
        if row.note:
            print(f"warning: {row.note}", file=sys.stderr)
        for path in row.outputs:
            print(path)
    return EXIT_ERROR if failures else 0


# --- models ----------------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    from labelfree_app.models.registry import ModelRegistry

    registry = ModelRegistry()
    action = args.models_action
    if action in (None, "list"):
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
        return 0
    if action == "install":
        entry = registry.install(Path(args.path), overwrite=args.overwrite)
        print(f"Installed {entry.id} ({entry.kind}, {entry.target}).")
        return 0
    if action == "remove":
        registry.remove(args.id)
        print(f"Removed {args.id}.")
        return 0
    if action == "info":
        print(json.dumps(registry.get(args.id).manifest.to_dict(), indent=2))
        return 0
    if action == "default":
        registry.set_default(args.target, args.id)
        print(f"{args.id} is now the default model for {args.target}.")
        return 0
    if action == "import-fnet":
        from labelfree_app.models.fnet_import import import_fnet_model

        out = import_fnet_model(Path(args.model_p), Path(args.train_options) if args.train_options else None,
                                Path(args.out), model_id=args.id, name=args.name or args.id, target=args.target)
        print(out)
        return 0
    if action == "export-bioimageio":
        from labelfree_app.models.bioimageio_export import export_bioimageio

        out = export_bioimageio(registry.resolve(args.model), Path(args.out), license=args.license,
                                authors=args.author or ("LabelFree",), overwrite=args.overwrite)
        print(out)
        return 0
    if action == "import-bioimageio":
        from labelfree_app.models.bioimageio_import import import_bioimageio, install_bioimageio

        if args.out:
            print(import_bioimageio(Path(args.path), Path(args.out), model_id=args.id, overwrite=args.overwrite))
        else:
            entry = install_bioimageio(Path(args.path), registry, model_id=args.id, overwrite=args.overwrite)
            print(f"Installed {entry.id} ({entry.kind}, {entry.target}).")
        return 0
    raise AssertionError(action)


def cmd_devices(args: argparse.Namespace) -> int:
    from labelfree_app.core.devices import available_devices, select_device

    for info in available_devices():
        print(info.label)
    print(f"auto selects: {select_device('auto')}")
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    from labelfree_app.__main__ import main as gui_main

    return int(gui_main(args.files) or 0)


def cmd_self_test(args: argparse.Namespace) -> int:
    """Check every bundled model on the demo input; 0 when all match the stored results."""
    from labelfree_app.selftest import ModelCheck, SelfTestStep, run_self_test

    def show(event: object) -> None:
        if isinstance(event, SelfTestStep):
            print(event.message, flush=True)
        elif isinstance(event, ModelCheck):
            print(event.line(), flush=True)

    report = run_self_test(on_event=show, device=args.device, out_dir=Path(args.output) if args.output else None,
                           model_ids=args.model)
    print(report.footer())  # the per-model lines were printed as they came
    return 0 if report.ok else EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labelfree", description="Predict fluorescence images from transmitted light.")
    parser.add_argument("--version", action="version", version=f"LabelFree {__version__}")
    parser.add_argument("--self-test", action="store_true", help="same as the self-test command")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="predict one or more images and write OME-TIFFs")
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--z-stack", action="store_true", help="the inputs are the planes of ONE z-stack (in name order)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_predict_options(p)
    p.set_defaults(func=cmd_predict)

    m = sub.add_parser("models", help="list, install, remove and inspect models")
    msub = m.add_subparsers(dest="models_action")
    ml = msub.add_parser("list", help="list installed models")
    ml.add_argument("--json", action="store_true")
    mi = msub.add_parser("install", help="install a model package (folder or .zip)")
    mi.add_argument("path")
    mi.add_argument("--overwrite", action="store_true")
    mr = msub.add_parser("remove", help="remove a user-installed model")
    mr.add_argument("id")
    mn = msub.add_parser("info", help="print a model's manifest")
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

    d = sub.add_parser("devices", help="list compute devices")
    d.set_defaults(func=cmd_devices)

    g = sub.add_parser("gui", help="open the desktop application")
    g.add_argument("files", nargs="*")
    g.set_defaults(func=cmd_gui)

    st = sub.add_parser("self-test", help="check every bundled model on the demo image against stored results")
    st.add_argument("--device", default="auto", help="auto (cuda → mps → cpu), cuda, mps or cpu")
    st.add_argument("-o", "--output", help="folder for the outputs (default: a new temporary folder)")
    st.add_argument("--model", "-m", action="append", help="check only this bundled model; repeat for several")
    st.set_defaults(func=cmd_self_test)

    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub: Any) -> None:
    """Commands whose modules live elsewhere (training, batch) register themselves here."""
    from labelfree_app import cli_batch, cli_train

    cli_train.register(sub)
    cli_batch.register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--self-test"]:  # `labelfree --self-test [options]` is `labelfree self-test [options]`
        argv[0] = "self-test"
    args = parser.parse_args(argv)
    try:
        setup_logging()  # tracebacks go to the log file, never to the terminal
    except OSError:
        pass  # an unwritable log folder must not stop the command
    try:
        return int(args.func(args) or 0)
    except LabelFreeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("Interrupted; no partial output was left behind.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `labelfree … | head`: the reader left, as with any command-line tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - the net under the specific sentences
        return _unexpected(exc)


def _unexpected(exc: BaseException) -> int:
    """Log the traceback to the log file; the user gets one sentence with the log's path."""
    import logging

    where = log_file_path()
    try:
        setup_logging()
        logging.getLogger("labelfree_app.cli").error("unexpected error", exc_info=exc)
        saved = f"the details are in {where}"
    except OSError:
        saved = "the log file could not be written"
    print(f"error: unexpected {type(exc).__name__} ({exc}); {saved}. Please report it with that file.",
          file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
