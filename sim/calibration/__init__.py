"""Calibration: step-time fits from operator profiles (`profiles`) and from measured runs
(`runs`), the least-squares machinery they share (`fit`), measured runs and their replay
(`measured`), and validation against published measurements (`validate`). The commands are
`sim calibrate` and `sim validate`; `scripts/fit_vidur_step_time.py` regenerates the catalog."""
