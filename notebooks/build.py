"""Write the notebooks of this folder from the cell sources below (outputs stripped).

The ``.ipynb`` files are generated, so that a change reads as a diff of
Python strings here; edit this file, then run::

    python notebooks/build.py

Cells carry fixed ids and no outputs or execution counts, so rebuilding an
unchanged notebook rewrites the same bytes (``tests/notebooks`` checks it).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

__all__ = ["HERE", "NOTEBOOKS", "build", "notebook"]

HERE = Path(__file__).resolve().parent

EXPLORE = [
    (
        "md",
        """
        # Explore a cohort with dicomml

        This notebook builds a small cohort from dicomml's synthetic sample study (no real
        data needed), indexes it into a Parquet **manifest**, asks the manifest questions with
        DuckDB and pandas (modalities, geometry, unusable series, annotations), and looks at
        the images with their segmentation.

        Everything is written under `nb-out/01_explore/` in the working directory. To explore
        your own archive, point `SOURCE` at its folder (or an `s3://...` URL) and skip the
        cohort cell: every cell after *Index* only reads the manifest.
        """,
    ),
    (
        "code",
        """
        import shutil
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd

        import dicomml
        from dicomml.sample import write_sample_study
        from dicomml.viz import render, save_png, window_limits

        OUT = Path("nb-out") / "01_explore"
        shutil.rmtree(OUT, ignore_errors=True)  # start clean, so the notebook runs top to bottom
        SOURCE = OUT / "dicom"
        pd.set_option("display.width", 160)
        pd.set_option("display.max_colwidth", 90)
        """,
    ),
    (
        "md",
        """
        ## A small cohort

        Three patients written by `write_sample_study` (seeds 0, 1, 2; same seed, same bytes):
        each an axial CT of a torso phantom, a DICOM SEG on it (segments `lesion` and `liver`)
        and a sagittal MR. Real archives are never clean, so we damage this one on purpose, the
        way archives get damaged: one slice of patient 2's CT is missing, and an `incoming/`
        folder holds a transfer cut short and a text file.
        """,
    ),
    (
        "code",
        """
        studies = [write_sample_study(SOURCE / f"patient{seed}", seed=seed) for seed in range(3)]
        studies[2].ct[40].unlink()  # a slice missing in the middle of patient 2's CT
        incoming = SOURCE / "incoming"
        incoming.mkdir()
        (incoming / "cut.dcm").write_bytes(studies[0].ct[0].read_bytes()[:2000])  # truncated copy
        (incoming / "README.txt").write_text("export notes\\n")  # not DICOM
        print(sum(p.is_file() for p in SOURCE.rglob("*")), "files under", SOURCE)
        """,
    ),
    (
        "md",
        """
        ## Index

        `dicomml.index` reads headers only (never pixel data), in worker processes, and writes
        the manifest: a folder of Parquet tables `instances`, `series`, `annotations` and
        `errors`. Run it again on a grown archive and it reads only new or changed files.
        Patients are identified by a salted hash (`patient_key`); names and birth dates stay
        out unless `include_phi=True`. The command line does the same: `dicomml index SOURCE -o MANIFEST`.
        """,
    ),
    (
        "code",
        """
        manifest = dicomml.index(SOURCE, OUT / "manifest", progress=False)
        manifest
        """,
    ),
    (
        "md",
        """
        Each table is plain Parquet (`MANIFEST/<table>/*.parquet`): pandas, polars, DuckDB or
        Spark read it as is. `manifest.series` and friends return pandas DataFrames.
        """,
    ),
    (
        "code",
        """
        pd.DataFrame(
            {table: {"rows": manifest.table(table).num_rows, "columns": len(manifest.schema(table))}
             for table in ("instances", "series", "annotations", "errors")}
        ).T
        """,
    ),
    (
        "md",
        """
        ## Modalities (DuckDB)

        `manifest.sql` runs DuckDB over the views `instances`, `series`, `annotations` and
        `errors`, reading the Parquet files in place, and returns a pandas DataFrame. A
        `series` row is one *volume group* (`series_key`): the files of a DICOM series that
        share orientation, matrix, echo and folder, i.e. one volume to load.
        """,
    ),
    (
        "code",
        """
        manifest.sql(
            \"\"\"
            SELECT modality, count(*) AS series, count(DISTINCT patient_key) AS patients,
                   sum(n_files)::BIGINT AS files, sum(n_slices)::BIGINT AS slices
            FROM series GROUP BY modality ORDER BY modality
            \"\"\"
        )
        """,
    ),
    (
        "code",
        """
        manifest.sql("SELECT modality, sop_class_uid, count(*) AS files FROM instances GROUP BY ALL ORDER BY modality")
        """,
    ),
    (
        "md",
        """
        ## Geometry: spacing and slice counts (pandas)

        `pixel_spacing` is (row, column) spacing in mm as DICOM gives it, `slice_spacing` the
        step between slices along the slice normal, `orientation_code` the axis code of
        the array as loaded (`SPL`: axis 0 runs to superior, rows to posterior, columns to left).
        """,
    ),
    (
        "code",
        """
        series = manifest.series
        geometry = series.assign(
            row_mm=series.pixel_spacing.str[0], column_mm=series.pixel_spacing.str[1]
        )[["series_key", "modality", "orientation_code", "shape", "row_mm", "column_mm", "slice_spacing", "n_slices", "usable"]]
        geometry
        """,
    ),
    (
        "code",
        """
        voxel = geometry.row_mm.astype(str) + " x " + geometry.column_mm.astype(str) + " x " + geometry.slice_spacing.astype(str)
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.2))
        geometry.groupby([voxel.rename("voxel (mm)"), "modality"]).size().unstack(fill_value=0).plot.barh(ax=left, stacked=True)
        left.set(xlabel="series", title="voxel size: row x column x slice spacing")
        for modality, group in geometry.groupby("modality"):
            right.hist(group.n_slices, bins=range(0, 101, 5), alpha=0.6, label=modality)
        right.set(xlabel="slices per series", ylabel="series", title="slice counts")
        right.legend()
        fig.tight_layout()
        """,
    ),
    (
        "md",
        """
        ## Unusable series, and files that could not be read

        The indexer never stops on a bad file and never builds a garbage volume silently: a
        series with a gap, duplicate slices, a gantry tilt, varying or absent geometry is kept with
        `usable = false` and a `reason`; a file that is not DICOM or is truncated goes to the
        `errors` table with the reason.
        """,
    ),
    (
        "code",
        """
        manifest.sql("SELECT usable, coalesce(reason, '') AS reason, count(*) AS series FROM series GROUP BY ALL ORDER BY usable")
        """,
    ),
    (
        "code",
        """
        manifest.sql(
            "SELECT series_key, modality, folder, n_slices, missing_slices, slice_spacing, reason FROM series WHERE NOT usable"
        )
        """,
    ),
    (
        "code",
        """
        errors = manifest.errors
        errors.assign(file=errors.path.map(lambda p: Path(p).name))[["file", "stage", "error_type", "message"]]
        """,
    ),
    (
        "md",
        """
        ## Annotations

        SEG and RTSTRUCT objects are rows of `annotations`, linked to the volume group they
        reference (`referenced_series_key`; `link_method` says how the link was found).
        `dicomml.pairs` joins them with the series' usable flag: the list of (image, mask)
        pairs to train on.
        """,
    ),
    (
        "code",
        """
        manifest.sql(
            "SELECT label, count(*) AS objects FROM (SELECT unnest(labels) AS label FROM annotations) GROUP BY label ORDER BY label"
        )
        """,
    ),
    (
        "code",
        """
        pairs = dicomml.pairs(manifest)
        pairs[["series_key", "annotation_key", "modality", "labels", "link_method", "usable", "reason"]]
        """,
    ),
    (
        "md",
        """
        One row per patient: what they have, and whether it is all usable.
        """,
    ),
    (
        "code",
        """
        cohort = manifest.sql(
            \"\"\"
            SELECT s.patient_key,
                   string_agg(DISTINCT s.modality, ', ' ORDER BY s.modality) AS modalities,
                   count(DISTINCT s.series_key) AS series,
                   count(DISTINCT a.annotation_key) AS annotations,
                   bool_and(s.usable) AS all_usable
            FROM series s LEFT JOIN annotations a ON a.referenced_series_key = s.series_key
            GROUP BY s.patient_key ORDER BY s.patient_key
            \"\"\"
        )
        cohort.to_csv(OUT / "cohort.csv", index=False)
        cohort
        """,
    ),
    (
        "md",
        """
        ## A CT with its SEG

        `load_series` assembles a volume group: slices sorted along the slice normal, rescale
        applied (Hounsfield units), and a 4x4 affine mapping array indices to RAS+ millimetres
        (nibabel and MONAI's convention). `load_mask` decodes the SEG onto exactly that grid.
        """,
    ),
    (
        "code",
        """
        pair = pairs[pairs.usable].iloc[0]
        ct = dicomml.load_series(manifest, pair.series_key)
        seg = dicomml.load_mask(manifest, pair.annotation_key, reference=ct)
        print("CT ", ct.array.shape, ct.array.dtype, ct.orientation, "spacing (mm)", ct.spacing)
        print("SEG", seg.array.shape, seg.array.dtype, "labels", seg.meta["labels"])
        print("voxels per label", {name: int((seg.array == number).sum()) for number, name in seg.meta["labels"].items()})
        print(ct.affine.round(2))
        """,
    ),
    (
        "md",
        """
        `dicomml.viz.render` draws axial, coronal and sagittal views through the mask's centre
        and an axial montage over the mask's extent, with the SEG in colour and the patient's
        sides (R/L, A/P, S/I) at every edge, read from the affine, so they are right whatever the
        acquisition orientation. Radiological convention by default: the patient's right on
        the viewer's left. Windows are presets (`lung`, `soft_tissue`, `bone`, ...) or
        `(center, width)`. `dicomml show MANIFEST SERIES_KEY --mask ANNOTATION_KEY -o views.png`
        does the same from the command line.
        """,
    ),
    (
        "code",
        """
        render(ct, window="lung", mask=seg, montage=12)
        """,
    ),
    (
        "md",
        """
        The same axial slice through the lesion in three windows (`window_limits` turns a
        preset into the displayed HU range). Drawing a raw slice is only this simple because
        the CT is axial: rows run from anterior to posterior and columns from the patient's
        right to left, which is the radiological view; for any other orientation use `render`.
        """,
    ),
    (
        "code",
        """
        lesion = next(number for number, name in seg.meta["labels"].items() if name == "lesion")
        k = int(np.median(np.argwhere(seg.array == lesion)[:, 0]))
        fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
        for ax, window in zip(axes, ["lung", "soft_tissue", "bone"]):
            low, high = window_limits(window, ct.array, ct.meta)
            ax.imshow(ct.array[k], cmap="gray", vmin=low, vmax=high)
            ax.contour(seg.array[k] == lesion, levels=[0.5], colors="red", linewidths=1)
            ax.set_title(f"{window}: {low:g} to {high:g} HU")
            ax.set_axis_off()
        fig.suptitle(f"axial slice {k} of {ct.array.shape[0]}, lesion outlined")
        fig.tight_layout()
        """,
    ),
    (
        "md",
        """
        The patient's MR was acquired sagittally; `render` reorients it for display (by
        permutations and flips only) and labels it from its own affine. Without a window it
        uses the header's WindowCenter/Width. `save_png` writes the same picture to a file.
        """,
    ),
    (
        "code",
        """
        mr_key = manifest.sql(
            "SELECT series_key FROM series WHERE modality = 'MR' AND patient_key = (SELECT patient_key FROM series WHERE series_key = ?)",
            pair.series_key,
        ).series_key[0]
        mr = dicomml.load_series(manifest, mr_key)
        print(mr.array.shape, mr.orientation, mr.spacing)
        save_png(ct, OUT / "ct_lesion.png", window="lung", mask=seg)
        render(mr, montage=6)
        """,
    ),
]

TRAIN = [
    (
        "md",
        """
        # Train a segmentation model on the sample data

        The loop of a real training script at toy size, on CPU in about a minute: index the
        sample study, describe the pipeline in a config, read whole volumes with
        `SegmentationDataset` and random 32³ patches with `PatchDataset` (through a Zarr cache
        that the first read fills), train a small MONAI UNet for 40 iterations to find the lung
        lesion, and overlay its prediction on a held-out patient.

        Everything is written under `nb-out/02_train/` in the working directory.
        """,
    ),
    (
        "code",
        """
        import dataclasses
        import shutil
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd
        import torch
        from monai.inferers import sliding_window_inference
        from monai.losses import DiceCELoss
        from monai.metrics import DiceMetric
        from monai.networks.nets import UNet
        from torch.utils.data import DataLoader

        import dicomml
        from dicomml.config import PipelineConfig
        from dicomml.data import collate
        from dicomml.sample import write_sample_study
        from dicomml.viz import render

        OUT = Path("nb-out") / "02_train"
        shutil.rmtree(OUT, ignore_errors=True)  # start clean, so the notebook runs top to bottom
        """,
    ),
    (
        "md",
        """
        ## Data: two patients, indexed

        Patient 0 to train on, patient 1 held out. Each has an axial CT and a DICOM SEG on it
        (segments `lesion` and `liver`).
        """,
    ),
    (
        "code",
        """
        for seed in (0, 1):
            write_sample_study(OUT / "dicom" / f"patient{seed}", seed=seed)
        manifest = dicomml.index(OUT / "dicom", OUT / "manifest", progress=False)
        cts = manifest.sql(\"\"\"
            SELECT s.series_key, s.folder, a.annotation_key, a.labels
            FROM series s JOIN annotations a ON a.referenced_series_key = s.series_key
            WHERE s.modality = 'CT' AND s.usable ORDER BY s.folder
        \"\"\")
        train_key, test_key = cts.series_key
        cts
        """,
    ),
    (
        "md",
        """
        ## The pipeline config

        A config has a *deterministic* part, run once and cached (its hash is part of the
        cache key), and an *at-load* part, run on every read. This one is like
        the `ct_seg` preset (`dicomml/configs/ct_seg.yaml`), at 2 mm instead of 1.5 mm, with
        32³ chunks and only the `lesion` segment cached as a mask, to keep a CPU run small:
        RAS+ axes, int16 Hounsfield units; at load, a soft-tissue window scaled to [0, 1] and
        random left-right flips, drawn once per sample and applied to image and mask alike.
        (The SEG's `liver` segment needs far more training than a CPU notebook's minute: in
        our runs its held-out Dice stayed below 0.4 after 40 to 120 iterations. The preset's
        `masks: ["*"]` caches every segment.)
        """,
    ),
    (
        "code",
        """
        (OUT / "ct_seg_2mm.yaml").write_text(\"\"\"
        name: ct_seg_2mm
        deterministic:
          orientation: RAS
          spacing: [2.0, 2.0, 2.0]  # mm
          dtype: int16              # HU
          masks: ["lesion"]         # the segment to learn
          chunks: [32, 32, 32]      # a 32^3 patch reads at most 8 chunks
        at_load:
          windows:
            - {name: soft_tissue, center: 40, width: 400}
          augment:
            - {name: RandomFlip, params: {axes: [0], p: 0.5}}
        \"\"\")
        config = PipelineConfig.from_yaml(OUT / "ct_seg_2mm.yaml")
        config
        """,
    ),
    (
        "md",
        """
        ## Whole volumes: `SegmentationDataset`

        A sample is a dict of tensors: `image` (channels, i, j, k), `mask` (segments, i, j, k),
        the `affine` of (i, j, k) to RAS+ mm and `meta` (provenance, drawn augmentation
        parameters). The first read of a series computes its cache entry; `dicomml preprocess`
        (or `dicomml.preprocess`, on Dask) does it for a whole manifest ahead of training.
        For evaluation we drop the random flips: the at-load part is not in the cache key, so
        both configs share the cache entries.
        """,
    ),
    (
        "code",
        """
        eval_config = dataclasses.replace(config, at_load=dataclasses.replace(config.at_load, augment=()))
        assert eval_config.cache_hash() == config.cache_hash()
        volumes = dicomml.SegmentationDataset(manifest, eval_config, OUT / "cache", series_keys=[train_key, test_key])
        sample = volumes[0]
        names = volumes.entry(0).meta["mask_labels"]  # mask channel names
        print({key: (tuple(value.shape), value.dtype) for key, value in sample.items() if isinstance(value, torch.Tensor)})
        print("mask channels", names, "voxels", sample["mask"].sum(dim=(1, 2, 3)).tolist())
        print(sample["affine"].numpy().round(2))
        """,
    ),
    (
        "md",
        """
        ## Random patches: `PatchDataset`

        `label_balanced` centres a patch on foreground with probability `positive_fraction`
        (first a mask channel, uniformly among those present, then one of its voxels), else
        places it uniformly: the small lesion is in most patches although it is a tiny part
        of the volume. A patch reads only the
        cache chunks it touches. Draws are seeded by (seed, epoch, index), so any number of
        DataLoader workers yields the same patches; `set_epoch` gives each epoch new ones.
        """,
    ),
    (
        "code",
        """
        STEPS, BATCH = 40, 4
        patches = dicomml.PatchDataset(
            manifest, config, OUT / "cache", series_keys=[train_key], patch_size=(32, 32, 32),
            samples_per_volume=STEPS * BATCH, sampler="label_balanced", positive_fraction=0.7,
        )
        shown = [patches[i] for i in range(6)]
        pd.DataFrame([
            {"patch_start": s["meta"]["patch_start"],
             "centred_on": "uniform" if s["meta"]["positive_channel"] is None else names[s["meta"]["positive_channel"]],
             **{f"{name} voxels": int(s["mask"][c].sum()) for c, name in enumerate(names)}}
            for s in shown
        ])
        """,
    ),
    (
        "code",
        """
        fig, axes = plt.subplots(1, len(shown), figsize=(2.2 * len(shown), 2.6))
        for ax, s in zip(axes, shown):
            k = s["image"].shape[-1] // 2  # the middle axial plane; axes i, j run to the patient's right and anterior
            ax.imshow(s["image"][0, :, :, k].T, cmap="gray", origin="lower", vmin=0, vmax=1)  # anterior up
            if s["mask"][0, :, :, k].any():
                ax.contour(s["mask"][0, :, :, k].T, levels=[0.5], colors="red", linewidths=1)
            ax.invert_xaxis()  # radiological view: the patient's right on the viewer's left
            ax.set_title(str(s["meta"]["patch_start"]), fontsize=8)
            ax.set_axis_off()
        fig.suptitle(f"axial middle planes of patches; {names[0]} in red", fontsize=9)
        fig.tight_layout()
        """,
    ),
    (
        "md",
        """
        ## Train

        A small 3D UNet (MONAI), one sigmoid output per mask channel, Dice + cross-entropy
        loss, Adam. `collate` stacks the tensors and keeps `meta` as a list. With
        `samples_per_volume = STEPS * BATCH` one pass over the loader is `STEPS` iterations.
        """,
    ),
    (
        "code",
        """
        torch.manual_seed(0)  # the network's initial weights
        net = UNet(spatial_dims=3, in_channels=1, out_channels=len(names), channels=(16, 32, 64), strides=(2, 2), num_res_units=0)
        loss_fn = DiceCELoss(sigmoid=True, batch=True)  # Dice over the whole batch: a patch without lesion is no outlier
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-2)
        loader = DataLoader(patches, batch_size=BATCH, shuffle=True, collate_fn=collate, generator=torch.Generator().manual_seed(0))
        losses = []
        net.train()
        for batch in loader:
            optimizer.zero_grad()
            loss = loss_fn(net(batch["image"]), batch["mask"].float())
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        print(len(losses), "iterations, loss", round(losses[0], 3), "->", round(losses[-1], 3))
        """,
    ),
    (
        "code",
        """
        first, last = float(np.mean(losses[:5])), float(np.mean(losses[-5:]))
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(range(1, len(losses) + 1), losses, marker=".")
        ax.set(xlabel="iteration", ylabel="Dice + CE loss", title=f"mean of first 5: {first:.3f}, of last 5: {last:.3f}")
        fig.tight_layout()
        assert last < first, f"the loss did not go down: mean of the first 5 iterations {first:.3f}, of the last 5 {last:.3f}"
        """,
    ),
    (
        "md",
        """
        ## Predict on the held-out patient

        Sliding-window inference over the whole cached volume of patient 1, with windows of
        the training patches' size, thresholded at 0.5. The lesion, soft tissue in the dark
        lung, is learnt within the 40 iterations: the notebook checks that its held-out Dice
        is above 0.5 (about 0.7 here). The views pass through the lesion. For `render`, the
        prediction becomes a `dicomml.Volume` on the image's grid: same affine, so the side
        labels and the overlay are right.
        """,
    ),
    (
        "code",
        """
        test = volumes[1]
        net.eval()
        with torch.no_grad():
            logits = sliding_window_inference(test["image"][None], roi_size=(32, 32, 32), sw_batch_size=8, predictor=net, overlap=0.25)
        predicted = (torch.sigmoid(logits) > 0.5).to(torch.uint8)
        dice = DiceMetric(include_background=True, reduction="none")(predicted, test["mask"][None])
        print("Dice on the held-out patient", dict(zip(names, dice[0].numpy().round(3).tolist())))
        assert dice[0, names.index("lesion")] > 0.5, "the lesion was not learnt: train longer (STEPS) or check the data"
        """,
    ),
    (
        "code",
        """
        affine = test["affine"].numpy()
        lesion_voxel = np.argwhere(test["mask"][names.index("lesion")].numpy()).mean(axis=0)
        lesion_centre = (affine @ np.append(lesion_voxel, 1.0))[:3]  # RAS+ mm
        image = dicomml.Volume(test["image"][0].numpy(), affine, meta={"modality": "CT", "series_description": "held out, soft-tissue window"})
        labels = {c + 1: name for c, name in enumerate(names)}
        prediction = dicomml.Volume(predicted[0].numpy(), affine, axes=("segment",), meta={"labels": labels})
        render(image, window=(0.5, 1.0), mask=prediction, centre=lesion_centre, montage=6)  # the image is windowed to [0, 1] already
        """,
    ),
    (
        "code",
        """
        truth = dicomml.Volume(test["mask"].numpy(), affine, axes=("segment",), meta={"labels": labels})
        render(image, window=(0.5, 1.0), mask=truth, centre=lesion_centre, montage=0)  # the reference SEG, for comparison
        """,
    ),
]

WRITE_BACK = [
    (
        "md",
        """
        # Predictions back to DICOM: SEG and RTSTRUCT

        A model predicts on its own grid (here: RAS, 1.5 mm voxels), but a viewer or a PACS
        wants the result on the **source series' exact grid**, as a DICOM SEG or RT Structure
        Set that references the source images. This notebook closes that loop on dicomml's
        synthetic sample study, with a threshold standing in for a model: predict, write a SEG
        with `dicomml.write_seg`, read it back with **highdicom** (not dicomml), compare it
        with the study's reference SEG, and draw the overlay. Files go to `nb-out/03_write_back/`.
        """,
    ),
    (
        "code",
        """
        import shutil
        from pathlib import Path

        import highdicom as hd
        import numpy as np
        import torch
        from IPython.display import Image

        import dicomml
        from dicomml.sample import write_sample_study
        from dicomml.seg.write import source_grid
        from dicomml.transforms.functional import resample_image
        from dicomml.transforms.functional.grid import orient_grid, spacing_grid
        from dicomml.viz import render

        OUT = Path("nb-out") / "03_write_back"
        shutil.rmtree(OUT, ignore_errors=True)  # start clean, so the notebook runs top to bottom
        study = write_sample_study(OUT / "dicom", seed=0)
        manifest = dicomml.index(OUT / "dicom", OUT / "manifest")
        ct_key = manifest.series.query("modality == 'CT'").series_key.iloc[0]
        ct = dicomml.load_series(manifest, ct_key)
        print(ct_key, ct.spatial_shape, "voxels of", np.round(ct.spacing, 2), "mm")
        """,
    ),
    (
        "md",
        """
        ## Predict on the model's grid

        The CT is resampled to RAS at 1.5 mm, as a training pipeline would, and "segmented" by
        a density band: the phantom's liver is 100 HU, between muscle (45) and heart (180).
        The prediction lives on that grid only: its array and its affine (indices to RAS+ mm).
        """,
    ),
    (
        "code",
        """
        ras_affine, ras_shape = orient_grid(ct.affine, ct.spatial_shape, "RAS")
        model_affine, model_shape = spacing_grid(ras_affine, ras_shape, 1.5)
        hu = resample_image(torch.from_numpy(ct.array[None].astype(np.float32)), ct.affine, model_affine, model_shape)[0]
        prediction = ((hu > 75) & (hu < 140)).numpy().astype(np.uint8)  # 1 = liver
        print("model grid", model_shape, "- predicted liver voxels:", int(prediction.sum()))
        """,
    ),
    (
        "md",
        """
        ## Write the SEG

        `write_seg` brings the prediction back onto the CT's own grid (nearest neighbour for a
        label map; probabilities would be resampled, then thresholded), and highdicom encodes
        it with the label's code, the algorithm's name and a reference to every CT slice.
        `write_rtstruct` does the same for radiotherapy, with contours per slice.
        """,
    ),
    (
        "code",
        """
        labels = {"liver": {"value": 1, "codes": ["SCT:10200004"], "color": [230, 120, 40]}}
        seg_path = dicomml.write_seg(prediction, ct_key, labels, OUT / "liver_seg.dcm", manifest=manifest,
                                     affine=model_affine, algorithm="HU band 75-140", algorithm_version="1")
        rt_path = dicomml.write_rtstruct(prediction, ct_key, labels, OUT / "liver_rtstruct.dcm", manifest=manifest,
                                         affine=model_affine)
        print(seg_path, f"{seg_path.stat().st_size / 1e3:.0f} kB;", rt_path, f"{rt_path.stat().st_size / 1e3:.0f} kB")
        """,
    ),
    (
        "md",
        """
        ## Read it back with highdicom

        highdicom reads the SEG slice by slice, by the CT images it references; the study's
        reference SEG (segments *lesion* and *liver*) is read the same way, and the two livers
        are compared voxel for voxel on the CT's grid.
        """,
    ),
    (
        "code",
        """
        grid = source_grid(ct_key, manifest=manifest)  # the CT's slices in position order
        uids = [ds.SOPInstanceUID for ds in grid.datasets]
        ours = hd.seg.segread(seg_path)
        described = ours.get_segment_description(1)
        print("segment:", described.segment_label, described.segmented_property_type.meaning,
              "| algorithm:", described.algorithm_identification[0].AlgorithmName)
        written = ours.get_pixels_by_source_instance(uids, segment_numbers=[1])[..., 0]
        reference = hd.seg.segread(study.seg)
        liver_number = reference.get_segment_numbers(segment_label="liver")[0]
        truth = reference.get_pixels_by_source_instance(uids, segment_numbers=[liver_number])[..., 0]
        dice = 2 * np.logical_and(written, truth).sum() / (written.sum() + truth.sum())
        print(f"written {int(written.sum())} voxels on the CT grid {written.shape}; Dice against the reference liver: {dice:.3f}")
        assert np.allclose(grid.affine, ct.affine) and dice > 0.5
        """,
    ),
    (
        "code",
        """
        overlay = dicomml.Volume(written[None], grid.affine, axes=("segment",), meta={"labels": {1: "liver (written SEG)"}})
        render(ct, window="abdomen", mask=overlay, montage=6).savefig(OUT / "overlay.png", dpi=80)
        Image(filename=OUT / "overlay.png")
        """,
    ),
]

NOTEBOOKS = {
    "01_explore_cohort.ipynb": EXPLORE,
    "02_train_segmentation.ipynb": TRAIN,
    "03_write_back.ipynb": WRITE_BACK,
}


def build(cells: list[tuple[str, str]], stem: str) -> NotebookNode:
    """A notebook of ``cells`` (kind, source), with fixed cell ids and no outputs.

    Parameters
    ----------
    cells
        ``("md" | "code", source)`` pairs; sources are dedented and stripped.
    stem
        Prefix of the cell ids (``<stem>-00``, ``<stem>-01``...).

    Returns
    -------
    nbformat.NotebookNode
        A valid nbformat 4 notebook for the ``python3`` kernel.
    """
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for n, (kind, source) in enumerate(cells):
        text = textwrap.dedent(source).strip("\n")
        cell = nbformat.v4.new_markdown_cell(text) if kind == "md" else nbformat.v4.new_code_cell(text)
        cell.id = f"{stem}-{n:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def notebook(name: str) -> NotebookNode:
    """The notebook ``name`` of :data:`NOTEBOOKS`, built (cell ids ``01-00``, ``01-01``...)."""
    return build(NOTEBOOKS[name], name.split("_")[0])


def main() -> None:
    """Write every notebook of :data:`NOTEBOOKS` next to this file."""
    for name in NOTEBOOKS:
        nbformat.write(notebook(name), HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
