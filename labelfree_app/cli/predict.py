"""`labelfree predict`: a batch of one per input, through the same job (`batch.process.run_job`) as `batch`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from labelfree_app.cli.exit_codes import EXIT_ERROR
from labelfree_app.cli.options import RGB_CHOICES, add_predict_options, io_options, predict_settings, trust_lines
from labelfree_app.errors import FileAccessError, LabelFreeError


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


def _named_model(ids: Sequence[str], merge: bool, registry: Any) -> Any:
    """The ``ModelRef`` the user named (None: the input decides); with ``merge`` the models named, as one
    merged job (``batch.plan.merged_ref``: one multi-channel file per input)."""
    from labelfree_app.batch.plan import BatchPlanError, merged_ref, resolve_models

    if merge:
        return merged_ref(resolve_models(list(ids), registry))
    if len(ids) > 1:
        raise BatchPlanError("predict takes one --model; add --merge to write several models' stains into one "
                             "file, or use `labelfree batch` for one file per model.")
    return resolve_models(list(ids), registry)[0] if ids else None


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict each input and print the paths written; 1 when any input failed."""
    from tqdm import tqdm

    from labelfree_app.batch.local import prepare_output_folder
    from labelfree_app.batch.plan import BatchJob, ModelRef, model_ref
    from labelfree_app.batch.process import BatchOptions, EngineCache, read_input, run_job
    from labelfree_app.core.drive import drive
    from labelfree_app.core.events import Progress
    from labelfree_app.export import image_stem
    from labelfree_app.models.fit import InputFacts
    from labelfree_app.models.registry import ModelRegistry

    registry = ModelRegistry()
    named = _named_model(args.model or [], bool(args.merge), registry)
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
        bar = tqdm(total=1, desc=image_stem(entry.path), unit="step", leave=True, disable=args.quiet)

        def show(event: object) -> None:
            if isinstance(event, Progress) and event.stage in ("tiles", "sampling"):
                bar.total = event.total
                bar.n = event.done
                bar.set_postfix_str(event.message, refresh=False)
                bar.refresh()

        try:
            row = drive(run_job(BatchJob(index, entry, model), out_dir, options, engines, image=image), show)
        finally:
            bar.close()
        if row.status != "done":
            failures += 1
            print(f"error: {row.error}", file=sys.stderr)
            continue
        if row.note:
            print(f"warning: {row.note}", file=sys.stderr)
        for line in trust_lines(entry.path.name, row, quiet=args.quiet):
            print(line, file=sys.stderr)
        for path in row.outputs:
            print(path)
    return EXIT_ERROR if failures else 0


def register(sub: Any) -> None:
    """Add `predict` to the `labelfree` subcommand parser."""
    p = sub.add_parser("predict", help="predict one or more images and write OME-TIFFs")
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--z-stack", action="store_true", help="the inputs are the planes of ONE z-stack (in name order)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no estimate line (warnings stay)")
    add_predict_options(p, many_models=True)
    p.add_argument("--merge", action="store_true", help="with two or more --model: one multi-channel OME-TIFF "
                   "<name>__<A>+<B>.ome.tif per input, one channel per model named after its target")
    p.set_defaults(func=cmd_predict)
