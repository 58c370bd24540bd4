"""Channel names: defaults, lookup by name or index, and finding the transmitted-light channel."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from labelfree_app.errors import ChannelError


class ChannelledImage(Protocol):
    """What the channel lookup reads of an image (``io.image.Image`` has it)."""

    channel_names: tuple[str, ...]
    metadata: dict[str, Any]
    path: Path | None

    @property
    def n_channels(self) -> int: ...

# Tokens (after trailing digits are stripped) that name a transmitted-light channel.
TRANSMITTED_TOKENS = frozenset(
    {
        "bf",
        "tl",
        "pc",
        "dic",
        "dia",
        "trans",
        "transmitted",
        "transmission",
        "bright",
        "brightfield",
        "phase",
        "phasecontrast",
    }
)
TRANSMITTED_PREFIXES = ("bright", "phase")
# OME Channel attributes that say "transmitted light" when the name does not.
TRANSMITTED_ILLUMINATION = frozenset({"transmitted"})
TRANSMITTED_CONTRAST = frozenset({"brightfield", "phase", "dic", "hoffman", "obliqueillumination"})


def default_channel_names(n_channels: int) -> tuple[str, ...]:
    """"C0", "C1", ... for files that do not name their channels."""
    return tuple(f"C{i}" for i in range(n_channels))


def clean_channel_names(names: Sequence[str] | None, n_channels: int) -> tuple[str, ...]:
    """Use the file's names when there is one per channel; fill empty ones with "C<i>"."""
    if names is None or len(names) != n_channels:
        return default_channel_names(n_channels)
    return tuple(str(name).strip() or f"C{i}" for i, name in enumerate(names))


def describe_channels(names: Sequence[str]) -> str:
    """'0: "BF", 1: "GFP"' for error messages."""
    return ", ".join(f'{i}: "{name}"' for i, name in enumerate(names))


def parse_channel(value: int | str | None) -> int | str | None:
    """A channel as a user gave it: ``None`` (or blank) for "find it", an index, or a name.

    Text stays text, digits included: :func:`resolve_channel_index` looks it up as a name first
    and as an index after, so a channel named "1" is still found by name.
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise ChannelError(f"A channel is a name or an index, not {value}.")
    if isinstance(value, (int, np.integer)):
        return int(value)
    text = str(value).strip()
    return text or None


def _where(path: Path | None) -> str:
    return str(path) if path is not None else "the image"


def resolve_channel_index(names: Sequence[str], name_or_index: int | str, *, path: Path | None = None) -> int:
    """Index of a channel given by index, exact name, case-insensitive name, or a digit string."""
    n_channels = len(names)
    if isinstance(name_or_index, (bool, np.bool_)):
        raise TypeError("channel must be a name or an index, not a bool")
    if isinstance(name_or_index, (int, np.integer)):
        index = int(name_or_index)
        if 0 <= index < n_channels:
            return index
        raise ChannelError(
            f"{_where(path)} has no channel {index}; its channels are {describe_channels(names)}.",
            path=path,
        )
    wanted = str(name_or_index).strip()
    for candidates in (
        [i for i, name in enumerate(names) if name == wanted],
        [i for i, name in enumerate(names) if name.casefold() == wanted.casefold()],
    ):
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise ChannelError(
                f'{_where(path)} has several channels named "{wanted}"; pass the channel by index '
                f"({describe_channels(names)}).",
                path=path,
            )
    if wanted.lstrip("-").isdigit():
        return resolve_channel_index(names, int(wanted), path=path)
    raise ChannelError(
        f'{_where(path)} has no channel named "{wanted}"; its channels are {describe_channels(names)}.',
        path=path,
    )


def _tokens(name: str) -> list[str]:
    return [token for token in re.split(r"[^0-9a-z]+", name.casefold()) if token]


def looks_transmitted(name: str) -> bool:
    """True when a channel name reads like bright field, phase contrast, DIC or 'transmitted'."""
    for token in _tokens(name):
        base = token.rstrip("0123456789")
        if base in TRANSMITTED_TOKENS or token.startswith(TRANSMITTED_PREFIXES):
            return True
        if base == "ph" and base != token:  # Ph1 / Ph2 / Ph3 phase rings
            return True
    compact = re.sub(r"[^a-z]", "", name.casefold())
    return "brightfield" in compact or "phasecontrast" in compact


# Tokens (after trailing digits are stripped) of a file or channel name that say "fluorescence":
# stains, fluorescent proteins, dyes, common antibody targets and the words for a training target.
FLUORESCENCE_TOKENS = frozenset(
    {
        "dapi", "hoechst", "draq", "sytox", "dna", "nuclei", "nuclear",
        "gfp", "egfp", "yfp", "cfp", "rfp", "mcherry", "tdtomato", "fitc", "tritc", "alexa",
        "fluo", "fluor", "fluorescence", "fluorescent", "confocal",
        "nfh", "tubulin", "actin", "phalloidin", "gfap", "lamin", "mitotracker",
        "target", "gt", "groundtruth",
    }
)
FLUORESCENCE_NAMES = frozenset({"map2", "tuj1", "cy2", "cy3", "cy5", "cy7", "af405", "af488", "af555", "af568",
                                "af594", "af647"})  # only with their number: "map" or "af" alone say nothing


def looks_fluorescent(name: str) -> bool:
    """True when a file or channel name reads like a fluorescence image (DAPI, GFP, MAP2, 'target'…)
    and nothing in it reads like transmitted light ('BF_and_DAPI' is not)."""
    if looks_transmitted(name):
        return False
    return any(token in FLUORESCENCE_NAMES or token.rstrip("0123456789") in FLUORESCENCE_TOKENS
               for token in _tokens(Path(name).stem))


def _transmitted_by_metadata(image: ChannelledImage) -> list[int]:
    infos = image.metadata.get("channel_info") or []
    if len(infos) != image.n_channels:
        return []
    found = []
    for index, info in enumerate(infos):
        illumination = str(info.get("IlluminationType", "")).casefold()
        contrast = str(info.get("ContrastMethod", "")).casefold()
        if illumination in TRANSMITTED_ILLUMINATION or contrast in TRANSMITTED_CONTRAST:
            found.append(index)
    return found


def find_transmitted_channel(image: ChannelledImage) -> int:
    """Index of the transmitted-light channel, chosen by name (then by OME metadata).

    A single-channel image gives 0. Raises ChannelError when no channel or several channels
    look transmitted, naming the channels so the user can pass ``--channel``.
    """
    if image.n_channels == 1:
        return 0
    by_name = [i for i, name in enumerate(image.channel_names) if looks_transmitted(name)]
    candidates = by_name or _transmitted_by_metadata(image)
    if len(candidates) == 1:
        return candidates[0]
    where = _where(image.path)
    listing = describe_channels(image.channel_names)
    if not candidates:
        raise ChannelError(
            f"Cannot tell which channel of {where} is the transmitted-light image ({listing}); "
            "pass --channel with its name or index.",
            path=image.path,
        )
    raise ChannelError(
        f"Several channels of {where} look like transmitted light ({listing}); "
        "pass --channel with the name or index of the one to use.",
        path=image.path,
    )


# Names under which a structure's stain shows up in channel names.
STAIN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "dna": ("dna", "dapi", "hoechst", "nuclei", "nucleus", "nuclear", "h2b", "draq5", "sir-dna"),
    "membrane": ("membrane", "cellmask", "wga", "caax"),
    "actin": ("actin", "phalloidin", "lifeact"),
    "tubulin": ("tubulin", "microtubule"),
    "mitochondria": ("mito", "tomm20", "mitotracker"),
    "neurites": ("map2", "nfh", "tuj1", "neurofilament"),
}


def stain_words(text: str) -> set[str]:
    words = {w.strip("()[],;:").lower() for w in str(text).replace("-", " ").split()} - {""}
    expanded = set(words)
    for names in STAIN_SYNONYMS.values():
        if words & set(names):
            expanded.update(names)
    return {w for w in expanded if len(w) > 2}


def matching_channel(channel_names: Any, target: str, exclude: int) -> int | None:
    """Index of a channel whose name matches ``target`` by a name part or a stain synonym (e.g. "DAPI"
    for "DNA", or "DNA (DAPI, real stain)" for "DAPI"); never ``exclude``. Compare, Improve and the
    batch's target channel all use this one match."""
    wanted = stain_words(target)
    for index, name in enumerate(str(n) for n in (channel_names or ())):
        if index == exclude:
            continue
        lowered = name.lower()
        if lowered and (lowered in str(target).lower() or any(word in lowered for word in wanted)):
            return index
    return None


def find_target_channel(names: Sequence[str], wanted: int | str, *, path: Path | None = None) -> int:
    """A fluorescence channel to score against: by index or name (``resolve_channel_index``), else by a
    name part as Compare matches it ("DAPI" finds "DNA (DAPI, real stain)"); ChannelError if none."""
    try:
        return resolve_channel_index(names, wanted, path=path)
    except ChannelError:
        if isinstance(wanted, (int, np.integer)):
            raise
        found = matching_channel(names, str(wanted), exclude=-1)
        if found is None:
            raise
        return found
