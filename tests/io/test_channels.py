"""Picking channels: by name or index, and finding the transmitted-light channel."""

from __future__ import annotations

import numpy as np
import pytest

from labelfree_app.errors import ChannelError
from labelfree_app.io import Image, find_transmitted_channel
from labelfree_app.io.channels import looks_transmitted


def image_with(names: list[str], **metadata: object) -> Image:
    return Image.from_array(np.zeros((len(names), 4, 4), np.uint16), "CYX", channel_names=names,
                            metadata=dict(metadata))


@pytest.mark.parametrize(
    "name",
    ["Bright", "BF", "TL", "trans", "Phase", "DIC", "Brightfield", "PC", "TL Brightfield", "PHASE_CONTRAST",
     "BrightField-1", "Ph2", "TL-DIC 40x", "transmitted light", "bf_01"],
)
def test_transmitted_light_names_are_recognised(name: str) -> None:
    assert looks_transmitted(name)
    assert find_transmitted_channel(image_with(["DAPI", name, "GFP"])) == 1


@pytest.mark.parametrize("name", ["DAPI", "GFP", "mCherry", "Cy5", "Hoechst", "C0", "pH sensor", "transfected"])
def test_fluorescence_names_are_not_transmitted(name: str) -> None:
    assert not looks_transmitted(name)


def test_single_channel_image_is_its_own_transmitted_channel() -> None:
    assert find_transmitted_channel(image_with(["GFP"])) == 0


def test_no_transmitted_name_raises_listing_the_channels_and_the_flag() -> None:
    image = Image.from_array(np.zeros((2, 4, 4)), "CYX", channel_names=["DAPI", "GFP"])
    with pytest.raises(ChannelError) as caught:
        find_transmitted_channel(image)
    message = str(caught.value)
    assert '"DAPI"' in message and '"GFP"' in message and "--channel" in message


def test_two_transmitted_names_are_ambiguous() -> None:
    with pytest.raises(ChannelError) as caught:
        find_transmitted_channel(image_with(["BF", "DIC"]))
    assert "--channel" in str(caught.value)


def test_ome_illumination_type_decides_when_names_do_not() -> None:
    info = [{"IlluminationType": "Epifluorescence"}, {"IlluminationType": "Transmitted"}]
    assert find_transmitted_channel(image_with(["Ch1", "Ch2"], channel_info=info)) == 1


def test_channel_index_accepts_names_case_insensitively_and_digit_strings() -> None:
    image = image_with(["BF", "GFP", "mCherry"])
    assert image.channel_index("gfp") == 1
    assert image.channel_index("mCherry") == 2
    assert image.channel_index(0) == 0
    assert image.channel_index("2") == 2
    assert image.channel_index(np.int64(1)) == 1
    with pytest.raises(ChannelError):
        image.channel_index(3)
    with pytest.raises(ChannelError):
        image.channel_index("DAPI")


def test_duplicate_channel_names_must_be_picked_by_index() -> None:
    image = image_with(["GFP", "GFP"])
    with pytest.raises(ChannelError):
        image.channel_index("GFP")
    assert image.channel_index(1) == 1


def test_image_rejects_inconsistent_fields() -> None:
    with pytest.raises(ValueError):
        Image(data=np.zeros((2, 1, 3, 3)), axes="CZYX", channel_names=("a",))
    with pytest.raises(ValueError):
        Image(data=np.zeros((1, 3, 3)), axes="CZYX", channel_names=("a",))
    with pytest.raises(ValueError):
        Image(data=np.zeros((1, 1, 3, 3)), axes="CZYX", channel_names=("",))
