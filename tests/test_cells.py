"""The standard cells (moyopy, `diffraction.standard_cell`) and the crystal-system labels (spglib, `tasks.symmetry_info`)
against pymatgen's `SpacegroupAnalyzer` on 1,200 Materials Project structures of the offline mirror.

Same cell means: same number of sites and composition, the same lattice up to a rotation and a signed permutation
of the basis vectors (which maps the Miller-index cube onto itself), and the same point cloud: the intensity at
every (hkl) of ours equals pymatgen's at the permuted index.

Measured: 1,198 of 1,200 primitive and 1,197 conventional cells agree. Of the rest, 2 sit on the tolerance edge
(spglib finds P1 at symprec 0.01 Å, moyopy a monoclinic group, so the cells differ) and 1 (a P2_1/c crystal) agrees
in lattice but its idealised atomic positions differ by up to 0.06 of the strongest reflection. We allow 1 %."""
MAX_DIFFERENT = 0.01
import itertools
import warnings

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from deepknet_lit import records as rec, registry as reg
from deepknet_lit import sources as src
from deepknet_lit import tasks as T
from deepknet_lit.diffraction import miller_indices, point_cloud, standard_cell

MIRROR = reg.data_root()
needs_mirror = pytest.mark.skipif(MIRROR is None or not (MIRROR / "mp_mtcgcnn_36k").is_dir(),
                                  reason="offline mirror (DEEPKNET_DATA) not available")
SIGNED_PERMUTATIONS = [np.diag(s) @ np.eye(3)[list(p)] for p in itertools.permutations(range(3))
                       for s in itertools.product([1, -1], repeat=3)]
N_SAMPLE = 1200


def basis_maps(ours: Structure, ref: Structure, rtol=2e-4) -> list:
    "Every signed permutation P with  P · ours.lattice ≅ ref.lattice  (the same metric)."
    g_ref = ref.lattice.matrix @ ref.lattice.matrix.T
    out = []
    for P in SIGNED_PERMUTATIONS:
        m = P @ ours.lattice.matrix
        if np.allclose(m @ m.T, g_ref, rtol=rtol, atol=rtol * np.abs(g_ref).max()): out.append(P)
    return out


def same_pattern(ours: Structure, ref: Structure, maps: list, rtol=1e-3) -> bool:
    """I(h) of ours equals I(h P) of ref on the n = 125 cube (both cells as given) for one of the maps P, to `rtol`
    of the strongest reflection (moyopy and spglib idealise the atomic positions slightly differently).
    Several maps fit the metric when the lattice has more symmetry than the crystal (e.g. 6/m on a hexagonal
    lattice); the two standard cells may then hold the motif in orientations related by one of them."""
    a = point_cloud(ours, max_index=2, cell="as_given")
    b = point_cloud(ref, max_index=2, cell="as_given")
    where = {tuple(h): i for i, h in enumerate(b.hkl)}
    for P in maps:
        mapped = [where[tuple(int(v) for v in np.rint(h @ P.T))] for h in a.hkl]
        if np.abs(a.intensity - b.intensity[mapped]).max() <= rtol * b.intensity.max(): return True
    return False


@pytest.fixture(scope="module")
def mp_sample():
    texts = src.cif_texts("mp_mtcgcnn_36k")
    keys = sorted(texts)
    pick = np.random.default_rng(7).choice(len(keys), N_SAMPLE, replace=False)
    return [(str(keys[i]), rec.parse_cif(texts[keys[i]], str(keys[i]))) for i in sorted(pick)]


@needs_mirror
@pytest.mark.parametrize("cell", ["primitive", "conventional"])
def test_standard_cells_match_pymatgen(mp_sample, cell):
    failures, systems = [], set()
    for mid, s in mp_sample:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sga = SpacegroupAnalyzer(s)
            ref = sga.get_primitive_standard_structure() if cell == "primitive" else sga.get_conventional_standard_structure()
        ours = standard_cell(s, cell, mid)
        systems.add(sga.get_crystal_system())
        maps = basis_maps(ours, ref)
        if len(ours) != len(ref) or ours.composition != ref.composition or not maps or not same_pattern(ours, ref, maps):
            failures.append(mid)
    assert len(systems) == 7
    assert len(failures) <= MAX_DIFFERENT * len(mp_sample), f"{len(failures)} of {len(mp_sample)} differ: {failures[:20]}"
    print(f"{cell}: {len(mp_sample) - len(failures)} of {len(mp_sample)} identical to pymatgen; differ: {failures}")


@needs_mirror
def test_crystal_systems_match_pymatgen(mp_sample):
    differ = []
    for mid, s in mp_sample:
        ours = T.symmetry_info(s)
        sga = SpacegroupAnalyzer(s, symprec=T.SYMPREC, angle_tolerance=T.ANGLE_TOLERANCE)
        if (ours["spacegroup_number"], ours["crystal_system"]) != (sga.get_space_group_number(), sga.get_crystal_system()):
            differ.append(mid)
    assert differ == [], f"{len(differ)} of {len(mp_sample)} differ from pymatgen: {differ[:10]}"


def test_the_check_can_fail():
    "A wrong cell (a sheared one with the same volume) is caught by the lattice test, a wrong motif by the pattern."
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    ref = SpacegroupAnalyzer(nacl).get_primitive_standard_structure()
    ours = standard_cell(nacl)
    maps = basis_maps(ours, ref)
    assert maps and same_pattern(ours, ref, maps)
    sheared = Structure(np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]]) @ ours.lattice.matrix, ours.species, ours.frac_coords)
    assert basis_maps(sheared, ref) == []
    moved = Structure(ours.lattice, ours.species, ours.frac_coords + [[0, 0, 0], [0.02, 0, 0]])
    assert not same_pattern(moved, ref, maps)


def test_triclinic_keeps_pymatgens_cell():
    s = Structure.from_spacegroup("P-1", Lattice.from_parameters(5.0, 6.0, 7.0, 80.0, 85.0, 95.0), ["Cu", "Se"],
                                  [[.1, .2, .3], [.4, .1, .7]])
    ref = SpacegroupAnalyzer(s).get_primitive_standard_structure()
    assert np.allclose(standard_cell(s).lattice.matrix, ref.lattice.matrix)
