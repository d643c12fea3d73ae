"""Property tests (hypothesis) of the physics of deepknet_lit.diffraction: rotation covariance, invariance under site
permutation and origin shift, Friedel's law, and independence of the choice of unit cell."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymatgen.core import Lattice, Structure

from deepknet_lit.diffraction import miller_indices, point_cloud

ELEMENTS = ["H", "Li", "C", "O", "Na", "Mg", "Al", "Si", "S", "Cl", "K", "Ti", "Fe", "Cu", "Zn", "Sr", "Ag", "Ba", "Au"]
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def structures(draw, max_sites=6):
    "A random triclinic cell (a, b, c in 2.5-8 Å, angles 65-115°) with 1-6 random atoms."
    abc = [draw(st.floats(2.5, 8.0)) for _ in range(3)]
    angles = [draw(st.floats(65.0, 115.0)) for _ in range(3)]
    lattice = Lattice.from_parameters(*abc, *angles)
    if not lattice.volume > 1.0:  # some angle triples do not make a cell
        angles = [90.0, 90.0, 90.0]
        lattice = Lattice.from_parameters(*abc, *angles)
    n = draw(st.integers(1, max_sites))
    species = [draw(st.sampled_from(ELEMENTS)) for _ in range(n)]
    frac = [[draw(st.floats(0.0, 1.0, exclude_max=True)) for _ in range(3)] for _ in range(n)]
    return Structure(lattice, species, frac)


@st.composite
def rotations(draw):
    "A proper rotation matrix from a random unit quaternion."
    q = np.array([draw(st.floats(-1, 1)) for _ in range(4)])
    if np.linalg.norm(q) < 1e-3:
        q = np.array([1.0, 0, 0, 0])
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def close(a, b):
    return np.allclose(a, b, rtol=1e-8, atol=1e-12 * max(np.abs(a).max(), 1e-30))


probes = st.sampled_from(["xray", "neutron"])


@SETTINGS
@given(structures(), rotations(), probes)
def test_rotation_rotates_points_and_keeps_intensities(s, rot, probe):
    assert np.isclose(np.linalg.det(rot), 1.0)
    rotated = Structure(Lattice(s.lattice.matrix @ rot.T), s.species, s.frac_coords)
    a = point_cloud(s, max_index=2, probe=probe, cell="as_given")
    b = point_cloud(rotated, max_index=2, probe=probe, cell="as_given")
    assert np.allclose(b.cart, a.cart @ rot.T, atol=1e-10)
    assert close(a.intensity, b.intensity)


@SETTINGS
@given(structures(), st.randoms(use_true_random=False), st.tuples(*[st.floats(-1, 1)] * 3), probes)
def test_site_permutation_and_origin_shift_keep_intensities(s, rnd, shift, probe):
    order = list(range(len(s)))
    rnd.shuffle(order)
    moved = Structure(s.lattice, [s.species[i] for i in order], s.frac_coords[order] + np.array(shift))
    a = point_cloud(s, max_index=2, probe=probe, cell="as_given")
    b = point_cloud(moved, max_index=2, probe=probe, cell="as_given")
    assert np.array_equal(a.cart, b.cart)
    assert close(a.intensity, b.intensity)


def reference_intensity(s, hkl, probe):
    "Plain per-point complex sum, written independently of the library (pymatgen's tables, Eq. A1-A3)."
    from pymatgen.analysis.diffraction.neutron import ATOMIC_SCATTERING_LEN
    from pymatgen.analysis.diffraction.xrd import ATOMIC_SCATTERING_PARAMS
    recip = s.lattice.reciprocal_lattice_crystallographic.matrix
    out = []
    for h in hkl:
        s2 = (np.linalg.norm(h @ recip) / 2) ** 2
        F = 0j
        for site in s:
            for sp, occ in site.species.items():
                if probe == "xray":
                    c = np.array(ATOMIC_SCATTERING_PARAMS[sp.symbol])
                    f = sp.Z - 41.78214 * s2 * np.sum(c[:, 0] * np.exp(-c[:, 1] * s2))
                else:
                    f = ATOMIC_SCATTERING_LEN[sp.symbol]
                F += occ * f * np.exp(2j * np.pi * np.dot(h, site.frac_coords))
        out.append(abs(F) ** 2 / s.volume ** 2)
    return np.array(out)


@SETTINGS
@given(structures(), probes)
def test_matches_plain_reference_and_friedel_law(s, probe):
    pc = point_cloud(s, max_index=2, probe=probe, cell="as_given")
    assert close(pc.intensity, reference_intensity(s, pc.hkl, probe))
    # Friedel: I(-h) = I(h). The inverted crystal has F_inv(h) = F(-h), computed with opposite phases.
    inverted = Structure(s.lattice, s.species, -s.frac_coords)
    pi = point_cloud(inverted, max_index=2, probe=probe, cell="as_given")
    assert close(pc.intensity, pi.intensity)
    assert close(pc.intensity, pc.intensity[::-1])  # the cube lists -h at position n-1-i


SUPERCELLS = [np.diag([2, 1, 1]), np.array([[1, 1, 0], [-1, 1, 0], [0, 0, 1]]),  # det 2, a C-centred cell
              np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]])]  # det 4: the fcc conventional cell of a primitive cell


@SETTINGS
@given(structures(max_sites=3), st.sampled_from(range(len(SUPERCELLS))), probes)
def test_cell_choice_gives_same_intensity_at_same_g(s, which, probe):
    "A supercell (e.g. a conventional cell) has a denser reciprocal lattice, but I = |F|²/V² agrees at shared g."
    big = s * SUPERCELLS[which]
    small = point_cloud(s, max_index=1, probe=probe, cell="as_given")
    large = point_cloud(big, max_index=3, probe=probe, cell="as_given")
    # every g of the small cell's 27 points is some hkl of the supercell: hkl_big = hkl_small @ M^T
    hkl_big = small.hkl @ SUPERCELLS[which].T
    assert np.abs(hkl_big).max() <= 3
    k = 3
    idx = ((hkl_big[:, 0] + k) * 7 + hkl_big[:, 1] + k) * 7 + hkl_big[:, 2] + k
    assert np.allclose(large.cart[idx], small.cart, atol=1e-10)
    assert close(large.intensity[idx], small.intensity)
    assert np.isclose(large.volume, s.volume * abs(np.linalg.det(SUPERCELLS[which])))


def test_primitive_and_conventional_standard_cells_agree():
    "spglib's standard primitive and conventional cells (same orientation) of fcc, diamond, bcc, hexagonal crystals."
    cases = [Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
             Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]),  # diamond: 8a is 000 in pymatgen's origin choice 1
             Structure.from_spacegroup("Im-3m", Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]]),
             Structure.from_spacegroup("Cmcm", Lattice.orthorhombic(2.86, 5.87, 4.96), ["U"], [[0, 0.1025, 0.25]])]
    for s in cases:
        p = point_cloud(s, max_index=2, cell="primitive")
        c = point_cloud(s, max_index=3, cell="conventional")
        key = lambda g: tuple(np.round(g, 6) + 0.0)
        Ic = {key(g): i for g, i in zip(c.cart, c.intensity)}
        pairs = np.array([(Ic[key(g)], i) for g, i in zip(p.cart, p.intensity) if key(g) in Ic])
        assert c.volume > p.volume and len(pairs) >= 27
        assert close(pairs[:, 0], pairs[:, 1])
