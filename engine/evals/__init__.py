"""`opctl eval`: diagnosis quality, cost and latency of a provider over eval cases.

Public surface: `run_eval` and `EvalResult` (engine.evals.runner), `Settings`
(engine.evals.runs), `validate_eval_file` / `is_eval_document` (engine.evals.load, for
`opctl validate`). See docs/evals.md.
"""
