"""``phantom.marrow.section_oedema_pct``: the oedema the volume phantom draws in a body's
mid-sagittal section, as the contract measures it (cortex in the denominator, a cleft left out)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from sagittal.phantom import build_spine, sample_spec
from sagittal.phantom.anatomy import Fracture
from sagittal.phantom.marrow import section_oedema_pct


def _spine(oedema_pct: float | None, cleft: str | None):
    fx = Fracture("L1", 2, 30.0, "wedge", oedema_pct=oedema_pct, cleft=cleft)
    return build_spine(replace(sample_spec(np.random.default_rng(11), n_fractures=0), fractures=(fx,)))


def test_drawn_extent_is_below_the_nominal_one_and_a_cleft_takes_its_share():
    no_cleft = section_oedema_pct(_spine(70.0, None), "L1")
    with_cleft = section_oedema_pct(_spine(70.0, "fluid"), "L1")
    assert 45.0 < no_cleft < 70.0  # the cortex is in the section, not in the nominal unit square
    assert 8.0 < no_cleft - with_cleft < 20.0  # the cleft band is 16 % of the height, inside the oedema
    assert section_oedema_pct(_spine(None, None), "L1") == 0.0
    assert section_oedema_pct(_spine(70.0, None), "L3") == 0.0  # an intact neighbour
