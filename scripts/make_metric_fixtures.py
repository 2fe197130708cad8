#!/usr/bin/env python3
"""Generate reference values for the Fréchet distance (FID formula) and KID for Haze.

Writes Tests/HazeTrainingTests/Fixtures/metrics.safetensors. CI has no Python, so the file is
committed; re-run this script only when the case changes:

    $HOME/haze-ref-venv/bin/python scripts/make_metric_fixtures.py [--out-dir DIR]

Inputs: `a` [300, 16] and `b` [250, 16] (float32), `a = z1 @ L1 + mu1`, `b = z2 @ L2 + mu2`
with z standard normal and random full L (correlated covariances), numpy RandomState seeds
below; `a2` [10, 16] is drawn like `a` (10 < d rows: rank-deficient covariance). Every
reference is computed in float64 from the stored float32 values (cast to float64 first).

FID, exactly pytorch-fid's calculate_activation_statistics + calculate_frechet_distance
(pytorch-fid's activation array is float64 too):
    mu = mean over rows; sigma = np.cov(x, rowvar=False)  (unbiased, divides by n - 1)
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2, disp=False)[0]
    if covmean not all finite:        # pytorch-fid's fallback, eps = 1e-6
        off = eps * I; covmean = sqrtm((sigma1 + off) @ (sigma2 + off))
    if complex: covmean = covmean.real  (pytorch-fid raises if |imag(diag)| > 1e-3)
    fid = diff.diff + tr(sigma1) + tr(sigma2) - 2 tr(covmean)
Cases: fid = FID(a, b); fid_same = FID(a, a) (~0, rounding only); fid_rank_deficient =
FID(a2, b). Metadata `*_path` says which branch ran. `*_eig` metadata is an independent
cross-check, tr sqrtm(s1 s2) = sum sqrt(max(eig(S1h s2 S1h), 0)) with S1h = symmetric sqrt of s1.

KID, exactly torch-fidelity's kid_features_to_metric (clean-fid's kernel_distance gives the
same per-subset value): k(x, y) = (x.y / d + 1)^3; rng = np.random.RandomState(2020) (the
torch-fidelity default rng_seed); for each of 50 subsets, ia = rng.choice(300, 100,
replace=False) then ib = rng.choice(250, 100, replace=False) (stored as kid_subsets_a/b, rows
in draw order, float32 holding integer row indices), and with m = 100:
    mmd2 = (sum(Kxx) - tr(Kxx)) / (m(m-1)) + (sum(Kyy) - tr(Kyy)) / (m(m-1)) - 2 sum(Kxy) / m^2
kid_mean = np.mean(mmds), kid_std = np.std(mmds) (ddof = 0, population std, as torch-fidelity).

Determinism: single-threaded BLAS, fixed seeds; written by make_tensor_fixtures.write_safetensors
(sorted tensor names, sorted metadata, header padded to 8 bytes) and read back.
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # before numpy/scipy/torch load BLAS

import argparse  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.linalg as linalg  # noqa: E402
import torch  # noqa: E402

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(SCRIPTS)
sys.path.insert(0, SCRIPTS)
from make_tensor_fixtures import check_roundtrip, write_safetensors  # noqa: E402

DEFAULT_OUT = os.path.join(REPO, "Tests", "HazeTrainingTests", "Fixtures")
FILE_NAME = "metrics.safetensors"
MAX_FILE_BYTES = 300 * 1000

D, N1, N2, N_RANK_DEF = 16, 300, 250, 10
SEED_A, SEED_B, SEED_A2 = 7001, 7002, 7003
FID_EPS = 1e-6                     # pytorch-fid's calculate_frechet_distance default
KID_SUBSETS, KID_SUBSET_SIZE = 50, 100
KID_DEGREE, KID_COEF0 = 3, 1.0     # gamma = 1 / d (torch-fidelity's gamma=None)
KID_RNG_SEED = 2020                # torch-fidelity's default rng_seed


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def gaussian_params(seed, mean_scale):
    rng = np.random.RandomState(seed)
    L = 0.6 * np.eye(D) + 0.3 * rng.standard_normal((D, D))  # full: correlated covariance L^T L
    mu = mean_scale * rng.standard_normal(D)
    return rng, L, mu


def draw(rng, L, mu, n):
    return (rng.standard_normal((n, D)) @ L + mu).astype(np.float32)


def make_inputs():
    rng_a, L1, mu1 = gaussian_params(SEED_A, 0.5)
    a = draw(rng_a, L1, mu1, N1)
    rng_b, L2, mu2 = gaussian_params(SEED_B, 0.5)
    b = draw(rng_b, L2, mu2 + 0.25, N2)
    # a2: same distribution as a (L1, mu1), its own draws.
    a2 = draw(np.random.RandomState(SEED_A2), L1, mu1, N_RANK_DEF)
    return a, b, a2


# ---------------------------------------------------------------------------
# FID (pytorch-fid)
# ---------------------------------------------------------------------------

def stats(x32):
    x = x32.astype(np.float64)
    return np.mean(x, axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=FID_EPS):
    """pytorch-fid's calculate_frechet_distance; also returns which branch ran."""
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # disp= is deprecated in scipy >= 1.16
        covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    path = "direct"
    if not np.isfinite(covmean).all():
        path = "eps_offset"
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    max_imag = 0.0
    if np.iscomplexobj(covmean):
        max_imag = float(np.max(np.abs(covmean.imag)))
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {max_imag}")
        covmean = covmean.real
        path += "_complex_real_part"
    else:
        path += "_real"
    tr_covmean = float(np.trace(covmean))
    fid = float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
    return fid, tr_covmean, path, max_imag


def tr_sqrt_product_eig(sigma1, sigma2):
    """Independent check: tr sqrtm(s1 s2) = sum sqrt(eig(S1h s2 S1h)), S1h = s1^(1/2) (symmetric)."""
    w, v = np.linalg.eigh(sigma1)
    s1h = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = s1h @ sigma2 @ s1h
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sum(np.sqrt(np.clip(ev, 0, None))))


def fid_case(x, y):
    mu1, s1 = stats(x)
    mu2, s2 = stats(y)
    fid, tr_cm, path, max_imag = frechet_distance(mu1, s1, mu2, s2)
    diff = mu1 - mu2
    fid_eig = float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt_product_eig(s1, s2))
    return dict(fid=fid, tr_covmean=tr_cm, path=path, max_imag=max_imag, fid_eig=fid_eig,
                mu1=mu1, s1=s1, mu2=mu2, s2=s2)


# ---------------------------------------------------------------------------
# KID (torch-fidelity)
# ---------------------------------------------------------------------------

def polynomial_kernel(x, y):
    gamma = 1.0 / x.shape[1]
    return (np.matmul(x, y.T) * gamma + KID_COEF0) ** KID_DEGREE


def mmd2_unbiased(kxx, kxy, kyy):
    m = kxx.shape[0]
    kt_xx = (kxx.sum(axis=1) - np.diagonal(kxx)).sum()
    kt_yy = (kyy.sum(axis=1) - np.diagonal(kyy)).sum()
    k_xy = kxy.sum(axis=0).sum()
    return (kt_xx + kt_yy) / (m * (m - 1)) - 2 * k_xy / (m * m)


def kid(a32, b32, dtype=np.float64):
    a, b = a32.astype(dtype), b32.astype(dtype)
    rng = np.random.RandomState(KID_RNG_SEED)
    mmds = np.zeros(KID_SUBSETS)
    ia_all, ib_all = [], []
    for i in range(KID_SUBSETS):
        ia = rng.choice(len(a), KID_SUBSET_SIZE, replace=False)
        ib = rng.choice(len(b), KID_SUBSET_SIZE, replace=False)
        f1, f2 = a[ia], b[ib]
        mmds[i] = mmd2_unbiased(polynomial_kernel(f1, f1), polynomial_kernel(f1, f2),
                                polynomial_kernel(f2, f2))
        ia_all.append(ia)
        ib_all.append(ib)
    return mmds, np.stack(ia_all), np.stack(ib_all)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def f32(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float64).astype(np.float32)))


def build():
    a, b, a2 = make_inputs()
    main = fid_case(a, b)
    same = fid_case(a, a)
    rdef = fid_case(a2, b)
    assert np.linalg.matrix_rank(rdef["s1"]) == N_RANK_DEF - 1

    mmds, sub_a, sub_b = kid(a, b)
    kid_mean, kid_std = float(np.mean(mmds)), float(np.std(mmds))  # ddof = 0
    mmds32, sa32, sb32 = kid(a, b, np.float32)  # torch-fidelity on float32 features: info only
    assert np.array_equal(sa32, sub_a) and np.array_equal(sb32, sub_b)
    assert sub_a.max() < 2 ** 24 and sub_b.max() < 2 ** 24  # exact as float32
    for s in list(sub_a) + list(sub_b):
        assert len(set(s.tolist())) == KID_SUBSET_SIZE

    tensors = {
        "a": torch.from_numpy(a), "b": torch.from_numpy(b), "a2": torch.from_numpy(a2),
        "mu_a": f32(main["mu1"]), "mu_b": f32(main["mu2"]),
        "sigma_a": f32(main["s1"]), "sigma_b": f32(main["s2"]),
        "fid": f32([main["fid"]]), "fid_same": f32([same["fid"]]),
        "fid_rank_deficient": f32([rdef["fid"]]),
        "kid_mean": f32([kid_mean]), "kid_std": f32([kid_std]), "kid_values": f32(mmds),
        "kid_subsets_a": f32(sub_a), "kid_subsets_b": f32(sub_b),
    }
    meta = {
        "description": "Frechet distance (pytorch-fid formula) and KID (torch-fidelity) references "
                       "on synthetic Gaussian features; made by scripts/make_metric_fixtures.py",
        "d": D, "n_a": N1, "n_b": N2, "n_a2": N_RANK_DEF,
        "seeds": f"a={SEED_A},b={SEED_B},a2={SEED_A2} (numpy RandomState)",
        "precision": "all references computed in float64 from the stored float32 a, b, a2; tensors "
                     "store them rounded to float32, the *_f64 strings are Python repr (round-trip)",
        "fid_formula": "mu=mean(rows); sigma=np.cov(rowvar=False) (unbiased, /(n-1)); diff=mu1-mu2; "
                       "covmean=scipy.linalg.sqrtm(sigma1@sigma2); if not all finite: "
                       "covmean=sqrtm((sigma1+eps*I)@(sigma2+eps*I)); if complex: covmean=covmean.real; "
                       "fid=diff.diff+tr(sigma1)+tr(sigma2)-2*tr(covmean)",
        "fid_eps": repr(FID_EPS),
        "fid_f64": repr(main["fid"]), "fid_path": main["path"],
        "fid_tr_covmean_f64": repr(main["tr_covmean"]), "fid_eig_f64": repr(main["fid_eig"]),
        "fid_same_f64": repr(same["fid"]), "fid_same_path": same["path"],
        "fid_same_eig_f64": repr(same["fid_eig"]),
        "fid_rank_deficient_f64": repr(rdef["fid"]), "rank_deficient_path": rdef["path"],
        "fid_rank_deficient_max_imag": repr(rdef["max_imag"]),
        "fid_rank_deficient_tr_covmean_f64": repr(rdef["tr_covmean"]),
        "fid_rank_deficient_eig_f64": repr(rdef["fid_eig"]),
        "fid_eig_note": "*_eig_f64: 2*tr(covmean) replaced by 2*sum(sqrt(max(eigvalsh(S1h@sigma2@S1h),0))), "
                        "S1h = symmetric sqrt of sigma1 (independent cross-check, not pytorch-fid)",
        "mu_sigma_note": "mu_a, mu_b, sigma_a, sigma_b: the statistics of a and b used for fid",
        "kid_formula": "k(x,y)=(x.y/d+1)^3; per subset (m rows of a, m rows of b): "
                       "mmd2=(sum(Kxx)-tr(Kxx))/(m(m-1))+(sum(Kyy)-tr(Kyy))/(m(m-1))-2*sum(Kxy)/m^2; "
                       "kid_mean=mean(mmd2 over subsets); kid_std=np.std(ddof=0)",
        "kid_subsets": KID_SUBSETS, "kid_subset_size": KID_SUBSET_SIZE,
        "kid_degree": KID_DEGREE, "kid_gamma": "1/d", "kid_coef0": repr(KID_COEF0),
        "kid_std_ddof": "0",
        "kid_rng": f"np.random.RandomState({KID_RNG_SEED}); per subset rng.choice(n_a,m,replace=False) "
                   "then rng.choice(n_b,m,replace=False) (torch-fidelity order)",
        "kid_subsets_note": "kid_subsets_a/b [subsets, m]: float32 holding integer row indices into a/b, "
                            "in draw order",
        "kid_mean_f64": repr(kid_mean), "kid_std_f64": repr(kid_std),
        "kid_mean_f32_features": repr(float(np.mean(mmds32))),
        "kid_f32_note": "kid_mean_f32_features: the same KID with the kernel computed in float32, as "
                        "torch-fidelity does on float32 features (info only)",
        "versions": f"numpy {np.__version__}, scipy {scipy.__version__}",
    }
    meta = {k: str(v) for k, v in meta.items()}
    info = dict(main=main, same=same, rdef=rdef, kid_mean=kid_mean, kid_std=kid_std,
                kid32=float(np.mean(mmds32)), mmds=mmds)
    return tensors, meta, info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=DEFAULT_OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out_dir, exist_ok=True)

    tensors, meta, info = build()
    path = os.path.join(args.out_dir, FILE_NAME)
    write_safetensors(path, tensors, meta)
    check_roundtrip(path, tensors, meta)
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        sys.exit(f"{FILE_NAME}: {size} bytes exceeds {MAX_FILE_BYTES}")
    print(f"{path} {size}B")
    print(" ".join(f"{k}{list(t.shape)}" for k, t in sorted(tensors.items())))
    for name in ("main", "same", "rdef"):
        c = info[name]
        print(f"{name}: fid={c['fid']!r} path={c['path']} max_imag={c['max_imag']:.3g} "
              f"tr_covmean={c['tr_covmean']!r} fid_eig={c['fid_eig']!r} "
              f"|fid-fid_eig|={abs(c['fid'] - c['fid_eig']):.3g}")
    print(f"kid_mean={info['kid_mean']!r} kid_std={info['kid_std']!r} "
          f"kid_mean_f32_features={info['kid32']!r} "
          f"rel={abs(info['kid32'] - info['kid_mean']) / abs(info['kid_mean']):.3g}")
    print(f"kid_values min={info['mmds'].min()!r} max={info['mmds'].max()!r}")


if __name__ == "__main__":
    main()
