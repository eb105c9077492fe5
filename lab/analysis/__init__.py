"""Analysis of run records: SLO verdicts, reports, regression checks against a baseline, change points.

`lab report` = `loading.load_run` → `summary.analyse` → `report.write_report`. `slo.SLOSpec` validates a
scenario's `slos:` block (importing it pulls in pydantic only). `synthetic` writes records with planted
answers. Definitions of every figure: lab/analysis/README.md.
"""
