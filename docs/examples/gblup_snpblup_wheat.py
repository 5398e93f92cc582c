"""GBLUP and SNP-BLUP on the wheat data: the same model, the same predictions.

Run: .venv/bin/python docs/examples/gblup_snpblup_wheat.py
"""

import numpy as np

import henderson as h
from henderson.datasets import load_wheat
from henderson.models import fit_snpblup, snp_effects_from_gebv
from henderson.models.snpblup import centred_markers

wheat = load_wheat()
geno = h.Genotypes.from_frame(2 * wheat.markers.astype(int))   # inbred lines: counts 0/2
y = wheat.phenotypes["env1"]

G = h.genomic_relationship(geno, method="vanraden1")           # = rrBLUP A.mat
gblup = h.GBLUP().fit(G, y)
snp = h.SNPBLUP().fit(geno, y)   # 1,279 SNPs >= 599 genotyped lines: individual space
two_sum_pq = 2 * np.sum(geno.allele_freq * (1 - geno.allele_freq))

print("GBLUP   sigma2_g = %.7f  sigma2_e = %.7f  h2 = %.4f (se %.4f)  solver %s" % (
    gblup.variance_components_.loc["id", "variance"], gblup.variance_components_.loc["Residual", "variance"],
    gblup.h2_, gblup.h2_se_, gblup.solver_))
print("SNP-BLUP sigma2_beta = %.9f  2*sum(pq) = %.6f  sigma2_g = %.7f  sigma2_e = %.7f  h2 = %.4f  space %s" % (
    snp.sigma2_beta_, two_sum_pq, snp.sigma2_g_, snp.variance_components_.loc["Residual", "variance"],
    snp.h2_, snp.space_))
print("max |GEBV_GBLUP - W beta_SNPBLUP| (independent REML fits) = %.2e" % np.abs(
    gblup.gebv_["gebv"] - snp.gebv_.loc[gblup.gebv_.index, "gebv"]).max())

# at identical variance components the two are one model
s_b = gblup.variance_components_.loc["id", "variance"] / two_sum_pq
s_e = gblup.variance_components_.loc["Residual", "variance"]
fixed = fit_snpblup(y, geno, sigma2=[s_b, s_e], space="marker")
print("same variances: max |GEBV difference| = %.2e" % np.abs(
    gblup.gebv_["gebv"] - fixed.gebv.loc[gblup.gebv_.index]).max())
beta = snp_effects_from_gebv(gblup.gebv_["gebv"], geno)
print("beta back-solved from GBLUP GEBVs (min-norm LS on W, no G inverse): max |diff| = %.2e" % np.abs(
    beta - fixed.snp_effects["effect"].to_numpy()).max())
W, _ = centred_markers(geno)
print("GEBV = W beta: max |diff| = %.2e" % np.abs(W @ fixed.snp_effects["effect"].to_numpy() - gblup.gebv_["gebv"].to_numpy()).max())
print("rank of G: %d of %d (singular: centring removes one dimension)" % (np.linalg.matrix_rank(G.dense()), G.n))

train, new = geno.ids[:500], geno.ids[500:]
gb = h.GBLUP().fit(geno.subset(ids=train), y.loc[train])
c = 2 * np.sum(gb.allele_freq_ * (1 - gb.allele_freq_))
sb = h.SNPBLUP(sigma2=[gb.variance_components_.loc["id", "variance"] / c,
                       gb.variance_components_.loc["Residual", "variance"]]).fit(geno.subset(ids=train), y.loc[train])
ng = geno.subset(ids=new)
print("99 new lines: max |GBLUP.predict - SNPBLUP.predict| = %.2e" % np.abs(gb.predict(ng) - sb.predict(ng)).max())
print("GBLUP fitted on genotypes: max |snp_effects_ - SNP-BLUP effects| = %.2e" % np.abs(
    gb.snp_effects_["effect"] - sb.snp_effects_["effect"]).max())
print("SNP-BLUP space: %s (%d SNPs vs %d genotyped lines; reason in snp.result_.notes)" % (
    snp.space_, geno.p, geno.n))
Gd = G.dense()
d = np.mean(np.diag(Gd)) - Gd.mean()     # 2 for inbred lines coded 0/2
s_g = gblup.variance_components_.loc["id", "variance"]
print("h2 = %.4f (sigma2_g/(sigma2_g + sigma2_e), rrBLUP's); mean(diag G) - mean(G) = %.3f; "
      "h2 on the sample's scale = %.4f" % (gblup.h2_, d, d * s_g / (d * s_g + s_e)))
print("top 5 SNP effects (se = sqrt(PEV), rrBLUP's u.SE):")
print(snp.snp_effects_.reindex(snp.snp_effects_["effect"].abs().sort_values(ascending=False).index)
      [["snp", "freq", "effect", "se"]].head().to_string(index=False))
