"""`lab run SCENARIO`: one fault-injection experiment, end to end, leaving a run record.

  validate -> images -> lab up -> observers + Locust (own process) -> nemesis beside the load
  -> live view -> faults lifted, Locust stopped, lab torn down -> analysis -> run dir and verdict

errors.py          BadInput (exit 2), LabFailed (exit 3), RecordFailed (the record cannot be written)
orchestrate.py     RunOptions, prepare, Run, execute: the steps above, everything started stopped
manifest.py        what manifest.json says about the run's inputs, code, images and machine
locust_process.py  LocustProcess: Locust headless in its own process group
observers.py       pollers recording provider stats, gateway metrics and gateway events
live.py            the live terminal view, read from the growing run record
cli.py             the `lab run` command
"""
