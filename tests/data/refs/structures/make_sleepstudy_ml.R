suppressMessages(library(lme4))
d <- read.csv("sleepstudy.csv  # shared/data/lme4/sleepstudy.csv = henderson.datasets lme4/sleepstudy.csv"); d$Subject <- factor(d$Subject)
m <- lmer(Reaction ~ Days + (Days|Subject), d, REML = FALSE,
          control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12)))
vc <- as.data.frame(VarCorr(m))
cat(jsonlite::toJSON(list(
  description = "lme4 ML fit of sleepstudy: lmer(Reaction ~ Days + (Days|Subject), REML = FALSE, control = lmerControl(optimizer = 'bobyqa', optCtrl = list(rhoend = 1e-12)))",
  made_by = "tests/data/refs/structures/make_sleepstudy_ml.R (run once with Debian r-cran-lme4)",
  lme4 = as.character(packageVersion("lme4")), R = R.version.string,
  logLik = as.numeric(logLik(m)), var_Intercept = vc$vcov[1], var_Days = vc$vcov[2], cov = vc$vcov[3],
  var_Residual = vc$vcov[4], fixed = unname(fixef(m))), digits = 15, auto_unbox = TRUE, pretty = TRUE))
