"""Analysis of run records: SLO verdicts, reports, regression checks against a baseline, change points.

`lab report` = `loading.load_run` → `summary.analyse` → `report.write_report`. `slo.evaluate`
checks a run against the scenario's `slos:` block (`lab.scenario.slos.SLOSpec`). `synthetic` writes
records with planted answers. Definitions of every figure: lab/analysis/README.md.
"""
