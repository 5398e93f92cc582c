"""Multi-trait linear mixed models: Var(u) = Σ_g ⊗ K, Var(e) = Σ_e ⊗ I.

- :mod:`.spectral`: the fast path (one known K, complete records): K eigendecomposed
  once, every REML evaluation O(n t³) (GEMMA's mvLMM rotation);
- :mod:`.reml`: AI-REML with Cholesky-parametrised and EM fallbacks;
- :mod:`.fit`: checks, designs per trait, results; :mod:`.formula`: ``cbind(...)``.
"""

from .fit import fit_traits
from .formula import fit_formula, is_multitrait
from .results import MultiTraitResult

__all__ = ["fit_traits", "fit_formula", "is_multitrait", "MultiTraitResult"]
