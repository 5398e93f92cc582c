"""Heat map of a trait × trait correlation matrix (matplotlib, PNG bytes)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def correlation_heatmap(R: pd.DataFrame, SE: pd.DataFrame | None = None, title: str = "Correlations") -> bytes:
    """Cells coloured by r on a diverging scale fixed to [−1, 1], annotated 'r (se)'."""
    from .plots import plt, to_png

    t = R.shape[0]
    fig, ax = plt.subplots(figsize=(1.1 * t + 2.4, 1.0 * t + 1.6))
    im = ax.imshow(R.to_numpy(dtype=float), cmap="RdBu_r", vmin=-1, vmax=1)
    for i in range(t):
        for j in range(t):
            r = R.iloc[i, j]
            se = SE.iloc[i, j] if SE is not None else np.nan
            txt = f"{r:.2f}" + (f"\n({se:.2f})" if i != j and np.isfinite(se) else "")
            ax.text(j, i, txt, ha="center", va="center", fontsize=9, color="white" if abs(r) > 0.6 else "black")
    ax.set_xticks(range(t), [str(c) for c in R.columns], rotation=30, ha="right")
    ax.set_yticks(range(t), [str(c) for c in R.index])
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return to_png(fig)
