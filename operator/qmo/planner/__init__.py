"""Pure planning: QuantizedModel spec + observed cluster -> variants, cache keys, status.

Imports neither kopf nor kubernetes (checked by import-linter); unit-tested as functions.
Modules: types (the data), capabilities (what a GPU class runs), sizing (build request,
tensor parallelism, GPUs), rollout (build -> deploy -> serve), gate (quality decisions),
revisions (the last good revision), evaluations, plan (the chain that ties them), status.
"""
