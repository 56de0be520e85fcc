"""CT series and MR studies grouped into units of work: an axial CT and its sagittal reformat
are analysed once (from the axial), an MR study's sagittal sequences of one frame of reference
together (T1 holds the landmarks), and everything not used is set aside with the reason."""

from __future__ import annotations

import numpy as np
import pytest

from sagittal.io.series import scan_export
from sagittal.io.units import plan_volumes, posture
from sagittal.phantom.generate import generate


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("units")
    small = {"matrix": 24, "pixel_spacing_mm": 14.0, "slice_mm": 40.0}
    generate(root / "ct", n=1, modality="ct", seed=5, ct_sagittal=True, volume_options=small)
    generate(root / "mr", n=1, modality="mr", seed=6, volume_options={"matrix": 24, "pixel_spacing_mm": 14.0,
                                                                      "n_slices": 3})
    return scan_export([root], decode_pixels=False)


def test_axial_ct_and_its_reformat_make_one_unit(export):
    units, aside = plan_volumes(export.series)
    ct = [u for u in units if u.modality == "CT"]
    assert len(ct) == 1
    (u,) = ct
    assert u.roles == ["ct"] and u.series[0].orientation == "axial"
    assert u.patient_position == "FFS" and posture(u.patient_position) == "supine"
    reformat = next(s for s in export.series if s.modality == "CT" and s.orientation == "sagittal")
    reasons = {a.reason for a in aside if a.path in reformat.files}
    assert len({a.path for a in aside if a.path in reformat.files}) == len(reformat.files)
    assert all("sagittal reformat" in r and "analysed once" in r for r in reasons)
    assert any("not used" in n for n in u.notes)


def test_mr_sequences_of_one_frame_make_one_unit_t1_first(export):
    units, _ = plan_volumes(export.series)
    (u,) = [u for u in units if u.modality == "MR"]
    assert u.roles == ["t1", "t2", "stir"]
    assert [s.weighting for s in u.series] == ["T1", "T2", "STIR"]
    assert [r["role"] for r in u.related_series()] == ["t2", "stir"]
    assert all(r["series_instance_uid"] for r in u.related_series())
    assert len(u.files) == 9 and posture(u.patient_position) == "supine"


@pytest.mark.parametrize(("position", "expected"), [("HFS", "supine"), ("FFP", "prone"), ("HFDL", "unknown"),
                                                    (None, "unknown"), ("", "unknown")])
def test_posture_from_patient_position(position, expected):
    assert posture(position) == expected


def test_fast_slice_read_equals_the_careful_decode(export):
    from sagittal.io.series import load_volume
    from sagittal.io.volume import read_slices_fast

    for s in export.series:
        careful = load_volume(s)
        paths = [s.headers[k].path for k in careful.geometry.order]
        np.testing.assert_array_equal(read_slices_fast(paths), careful.voxels)
