"""Augmenting cine loops, resizing with one axis shrinking and the other growing, and films stored on their side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dicomml.imaging2d import Planar, load_image
from dicomml.imaging2d import masks as masks_module
from dicomml.imaging2d.resize import fit
from dicomml.imaging2d.synthetic import write_image2d
from dicomml.transforms import Mask, RandomCrop, RandomFlip


@pytest.mark.parametrize("shape", [(1, 6, 5), (3, 6, 5), (4, 6, 5), (4, 3, 6, 5)], ids=["CHW-grey", "CHW-colour", "THW", "TCHW"])
@pytest.mark.parametrize("axis", [0, 1])
def test_planar_flips_the_rows_or_columns_of_every_frame_and_channel(shape: tuple[int, ...], axis: int) -> None:
    image = torch.arange(float(np.prod(shape))).reshape(shape)
    mask = Mask((torch.arange(30).reshape(1, 6, 5) % 7 == 0).to(torch.uint8))
    out = Planar(RandomFlip(axes=(axis,), p=1.0))({"image": image, "mask": mask, "spacing": torch.tensor([0.5, 0.25], dtype=torch.float64)})
    assert out["image"].shape == image.shape
    assert torch.equal(out["image"], image.flip(-2 + axis))
    assert isinstance(out["mask"], Mask) and torch.equal(out["mask"], mask.flip(-2 + axis))


def test_planar_crops_colour_cine_planes_and_keeps_the_layout() -> None:
    image = torch.rand(4, 3, 20, 30)
    out = Planar(RandomCrop((10, 12, 1), seed=0))({"image": image, "mask": Mask(torch.zeros(2, 20, 30, dtype=torch.uint8))})
    assert tuple(out["image"].shape) == (4, 3, 10, 12) and tuple(out["mask"].shape) == (2, 10, 12)
    window = image.unfold(-2, 10, 1).unfold(-2, 12, 1)  # every 10x12 crop of every plane
    found = [(r, c) for r in range(11) for c in range(19) if torch.equal(window[..., r, c, :, :], out["image"])]
    assert len(found) == 1  # one crop, the same for every frame and channel


def test_stretch_averages_along_the_shrinking_axis_while_the_other_grows() -> None:
    stripes = np.zeros((1, 100, 1000), np.float32)
    stripes[..., ::2] = 1.0  # one-pixel column stripes, mean 0.5
    out, _ = fit(stripes, (200, 200), "stretch")
    averaged = F.adaptive_avg_pool2d(torch.from_numpy(stripes)[None], (100, 200))  # the box average of each output column
    expected = F.interpolate(averaged, size=(200, 200), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(out, expected)
    assert 0.35 < float(out.min()) and float(out.max()) < 0.65


@pytest.mark.parametrize(("source", "size"), [((300, 200), (100, 100)), ((40, 30), (256, 256)), ((100, 1000), (50, 200))])
@pytest.mark.parametrize("mode", ["letterbox", "stretch"])
def test_resize_is_one_pass_when_both_axes_go_the_same_way(source: tuple[int, int], size: tuple[int, int], mode: str) -> None:
    image = torch.rand(2, *source)
    out, where = fit(image, size, mode)
    down = where.shape[0] <= source[0] and where.shape[1] <= source[1]
    kwargs = {"mode": "area"} if down else {"mode": "bilinear", "align_corners": False}
    placed = F.interpolate(image[None], size=where.shape, **kwargs)[0]  # type: ignore[arg-type]
    o = where.offset
    assert torch.equal(out[:, o[0] : o[0] + where.shape[0], o[1] : o[1] + where.shape[1]], placed)


def _film(path: Path, orientation: list[str], **extra: object) -> Path:
    stored = np.zeros((40, 30), np.uint16)
    stored[2, 3] = 4000
    write_image2d(
        path, stored, modality=str(extra.pop("modality", "DX")), bits_stored=12, extra={"PatientOrientation": orientation, **extra}
    )
    return path


def test_chest_transposes_a_film_stored_on_its_side(tmp_path: Path) -> None:
    # rows run to the feet, columns to the patient's left: transposed, it is the upright L\F film
    path = _film(tmp_path / "side.dcm", ["F", "L"], ViewPosition="PA", PixelSpacing=[0.1, 0.2])
    image = load_image(path, display="chest")
    assert image.meta["transposed"] is True and image.meta["flips"] == [] and image.meta["patient_orientation"] == "L\\F"
    assert image.pixels.shape == (1, 30, 40)
    assert [tuple(p) for p in np.argwhere(image.pixels[0] > 0)] == [(3, 2)]
    assert image.meta["spacing"] == pytest.approx([0.2, 0.1])
    upright = load_image(_film(tmp_path / "up.dcm", ["L", "F"], ViewPosition="PA"), display="chest")
    assert upright.meta["transposed"] is False


def test_chest_transposes_then_flips_a_film_on_its_side_and_upside_down(tmp_path: Path) -> None:
    image = load_image(_film(tmp_path / "side.dcm", ["H", "R"], ViewPosition="PA"), display="chest")
    assert image.meta["transposed"] is True and sorted(image.meta["flips"]) == ["horizontal", "vertical"]
    assert image.meta["patient_orientation"] == "L\\F"
    assert [tuple(p) for p in np.argwhere(image.pixels[0] > 0)] == [(29 - 3, 39 - 2)]


def test_breast_transposes_a_mammogram_whose_columns_run_to_the_nipple(tmp_path: Path) -> None:
    path = _film(tmp_path / "lcc.dcm", ["R", "A"], modality="MG", ImageLaterality="L", ViewPosition="CC")
    image = load_image(path, display="breast", facing="right")
    assert image.meta["transposed"] is True and image.meta["flip_basis"] == "patient_orientation"
    assert image.meta["patient_orientation"] == "A\\R" and image.meta["flips"] == []


def test_masks_follow_the_transpose(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = np.zeros((1, 40, 30), np.uint8)
    stored[0, 2, 3] = 1
    monkeypatch.setattr(masks_module, "image_masks", lambda *args, **kwargs: (stored, ["dot"]))
    meta = {"sop_instance_uid": "1.2", "full_shape": [40, 30], "path": "x.dcm", "flips": ["horizontal"], "transposed": True}
    shown, labels = masks_module.displayed_masks([], meta)
    assert shown.shape == (1, 30, 40) and labels == ["dot"]
    assert [tuple(p) for p in np.argwhere(shown[0])] == [(3, 39 - 2)]


def test_new_rules_for_prepared_images_give_new_cache_keys(monkeypatch) -> None:
    """Entries prepared by older rules (an inverted image's range, colour scale, films on their side) hold other
    values for the same file and config: they must not be served."""
    import dicomml.imaging2d.prepare as prepare

    row = {"sop_instance_uid": "1.2.3", "path": "/x.dcm", "size": 10, "mtime_ns": 1}
    now = prepare.image_key(row, prepare.ImageConfig(size=(32, 32)))
    monkeypatch.setattr(prepare, "IMAGE_RULES", prepare.IMAGE_RULES - 1)
    assert prepare.image_key(row, prepare.ImageConfig(size=(32, 32))) != now
