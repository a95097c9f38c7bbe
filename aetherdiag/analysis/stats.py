"""The chi-square test of an even split the analysis uses (no SciPy: the regularized
incomplete gamma function, series and continued fraction). Latency percentiles come from an
HDR histogram: ``latency``."""

from __future__ import annotations

import math


def chi_square_sf(x: float, dof: int) -> float:
    """P(X >= x) for a chi-square distribution with ``dof`` degrees of freedom."""
    if x <= 0:
        return 1.0
    return 1.0 - _regularized_gamma_p(dof / 2.0, x / 2.0)


def _regularized_gamma_p(a: float, x: float) -> float:
    if x < a + 1:  # series expansion
        term = total = 1.0 / a
        ap = a
        for _ in range(500):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-12:
                break
        return total * math.exp(-x + a * math.log(x) - math.lgamma(a))
    # continued fraction (Lentz) for Q, then P = 1 - Q
    b = x + 1 - a
    cc = 1.0 / 1e-300
    d = 1.0 / b
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        cc = b + an / cc
        cc = 1e-300 if abs(cc) < 1e-300 else cc
        d = 1.0 / d
        delta = d * cc
        h *= delta
        if abs(delta - 1) < 1e-12:
            break
    q = math.exp(-x + a * math.log(x) - math.lgamma(a)) * h
    return 1.0 - q
